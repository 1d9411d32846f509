"""The key-value workload: puts and gets at a steady rate, a ledger of acknowledged
writes, and the windows of time in which no write was acknowledged.

Any subject with a :class:`KeyValueClient` can use it (etcd does); a subject with other
traffic brings its own :class:`~opeval.workload.Workload`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from opeval.events import TimeWindow


class KeyValueClient(Protocol):
    """The client a key-value workload drives: acknowledged writes and reads by key."""

    async def put(self, key: str, value: str) -> None:
        """Write; returning means the subject acknowledged it."""
        ...

    async def get(self, key: str) -> str | None:
        """Linearizable read; None if the key does not exist."""
        ...

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` with its value."""
        ...


@dataclass
class WorkloadWindow:
    """Counts for one sampling window."""

    start_s: float
    writes_ok: int = 0
    writes_failed: int = 0
    reads_ok: int = 0
    reads_failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float | None:
        """Latency percentile of successful operations, in ms."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


@dataclass
class DataSafety:
    """Acknowledged writes checked against what the subject returns now."""

    acknowledged: int
    present: int
    missing: int
    wrong: int
    unreadable: int
    sample_missing: list[str]
    error: str | None
    #: How a broken promise reads in a trial's reason (a workload of another kind says its own).
    broken: str = "acknowledged writes lost"
    missing_word: str = "missing"
    wrong_word: str = "wrong"
    #: Whether a broken promise turns a repaired trial into ``not_recovered`` (lost writes do;
    #: a rate limiter's over-admission is the fault's damage, shown beside availability).
    fails_recovery: bool = True

    def violation(self) -> str:
        """The broken promises in words, e.g. ``acknowledged writes lost: 2 missing, 0 wrong``."""
        return (f"{self.broken}: {self.missing} {self.missing_word}, {self.wrong} {self.wrong_word}"
                + (f" ({self.error})" if self.error else ""))


class KeyValueWorkload:
    """Writes ``<prefix><n>`` keys and reads back acknowledged ones at ``rate_hz``."""

    def __init__(
        self,
        client: KeyValueClient,
        *,
        rate_hz: float,
        clock: Callable[[], float],
        seed: int,
        key_prefix: str = "opeval/wl/",
        on_sample: Callable[[WorkloadWindow, float], Any] = lambda w, end: None,
        sample_every_s: float = 1.0,
    ) -> None:
        self.client = client
        self.rate_hz = rate_hz
        self.clock = clock
        self.key_prefix = key_prefix
        self.on_sample = on_sample
        self.sample_every_s = sample_every_s
        self._rng = random.Random(seed)
        self.ledger: dict[str, str] = {}
        self._acked: list[str] = []
        self.totals = WorkloadWindow(start_s=0.0)
        self.unavailable: list[TimeWindow] = []
        self._outage_start: float | None = None
        self._window = WorkloadWindow(start_s=0.0)
        self._seq = 0

    async def run(self) -> None:
        """Run until cancelled: alternate a write and a read of an acknowledged key."""
        interval = 1.0 / self.rate_hz
        self._window = WorkloadWindow(start_s=self.clock())
        next_at = time.monotonic()
        try:
            while True:
                await self._one_op()
                now_s = self.clock()
                if now_s - self._window.start_s >= self.sample_every_s:
                    self._flush(now_s)
                next_at = max(next_at + interval, time.monotonic())
                await anyio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            self._flush(self.clock())
            if self._outage_start is not None:
                self.unavailable.append(TimeWindow(self._outage_start, self.clock()))
                self._outage_start = None

    def _flush(self, end_s: float) -> None:
        w = self._window
        if w.writes_ok + w.writes_failed + w.reads_ok + w.reads_failed:
            self.on_sample(w, end_s)
        self._window = WorkloadWindow(start_s=end_s)

    async def _one_op(self) -> None:
        write = self._seq % 2 == 0 or not self.ledger
        started = time.monotonic()
        start_s = self.clock()
        w, t = self._window, self.totals
        if write:
            n = self._seq
            key, value = f"{self.key_prefix}{n:08d}", f"v{n}-{self._rng.getrandbits(32):08x}"
            try:
                await self.client.put(key, value)
            except Exception:  # noqa: BLE001 - any failure is an unacknowledged write
                w.writes_failed += 1
                t.writes_failed += 1
                if self._outage_start is None:
                    self._outage_start = start_s
            else:
                self.ledger[key] = value
                self._acked.append(key)
                w.writes_ok += 1
                t.writes_ok += 1
                w.latencies_ms.append((time.monotonic() - started) * 1000)
                if self._outage_start is not None:
                    self.unavailable.append(TimeWindow(self._outage_start, self.clock()))
                    self._outage_start = None
        else:
            key = self._rng.choice(self._acked)
            try:
                await self.client.get(key)
            except Exception:  # noqa: BLE001
                w.reads_failed += 1
                t.reads_failed += 1
            else:
                w.reads_ok += 1
                t.reads_ok += 1
                w.latencies_ms.append((time.monotonic() - started) * 1000)
        self._seq += 1

    @property
    def acknowledged(self) -> int:
        """How many writes the subject acknowledged."""
        return len(self.ledger)

    @property
    def longest_unavailable_s(self) -> float:
        """The longest span with no acknowledged write."""
        return round(max((u.end_s - u.start_s for u in self.unavailable), default=0.0), 6)

    async def check_data(self) -> DataSafety:
        """Read every acknowledged write back in one range and compare."""
        acked = len(self.ledger)
        try:
            stored = await self.client.get_prefix(self.key_prefix)
        except Exception as e:  # noqa: BLE001
            return DataSafety(acked, 0, 0, 0, acked, [], f"read-back failed: {e}")
        missing = [k for k in self.ledger if k not in stored]
        wrong = sum(1 for k, v in self.ledger.items() if k in stored and stored[k] != v)
        return DataSafety(acked, acked - len(missing) - wrong, len(missing), wrong, 0, missing[:10], None)
