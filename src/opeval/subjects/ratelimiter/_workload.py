"""The rate limiter's workload: clients at known rates on known keys, and its safety check.

One client per key, each sending ``/check`` at its own steady rate (open loop: a slow
answer does not delay the next request) to the nodes in turn (the next node if one does
not answer). The ``over`` key gets 60% of the rate (1.5 times the limit at the defaults),
so a third is rejected; each ``under`` key 20% (half the limit), so nothing should be. Every
decision is kept with the Redis time the node's script read, and the check judges them
against the limit, exactly as the script should have:

* **over-admission**: an admitted request that makes more than ``limit`` admitted in the
  window ending at it (the promise a limiter makes; counters lost to a failover or an
  eviction, or a node with a wrong limit, break it);
* **wrongful rejection**: a rejection while fewer than ``limit`` were admitted in its
  window (a request whose reply was lost may have been admitted unseen: rejections in
  a window with such a request are not judged, and a stated share is tolerated).

In the log (:class:`~opeval.events.Trial.WorkloadSampled`): ``writes_ok`` counts decisions
(admitted or rejected), ``writes_failed`` requests with no decision, ``reads_ok`` the
admitted and ``reads_failed`` the rejected. :class:`~opeval.workload.DataSafety`:
``acknowledged`` decisions checked, ``missing`` over-admitted, ``wrong`` wrongful
rejections beyond the tolerance.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from opeval.events import TimeWindow
from opeval.workload import DataSafety, WorkloadWindow, Words


#: The log's counts in the rate limiter's words (see the module's docstring for the mapping).
LIMITER_WORDS = Words(first="decisions", second="requests", second_ok="admitted", second_failed="rejected",
                      promises="decisions", kept="within the limit", missing="over-admitted",
                      wrong="wrongly rejected beyond tolerance", lost="against the limit (over-admitted or wrongly rejected)",
                      unsafe="LIMIT BROKEN", samples="violations",
                      leader="Redis primary")


@dataclass
class KeyLedger:
    """Every decision on one key: Redis times (µs) of admissions and rejections, and the
    client-side spans (µs) of requests whose outcome is unknown."""

    rate_hz: float
    admitted: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    unknown: list[tuple[int, int]] = field(default_factory=list)


def over_admitted(admitted: list[int], limit: int, window_us: int) -> list[int]:
    """Admissions that make more than ``limit`` in the window ``(t - window, t]`` ending at them."""
    ts = sorted(admitted)
    return [t for t in ts if bisect.bisect_right(ts, t) - bisect.bisect_right(ts, t - window_us) > limit]


def wrongly_rejected(ledger: KeyLedger, limit: int, window_us: int) -> list[int]:
    """Rejections with fewer than ``limit`` admitted in their window and no request of unknown
    outcome that could have filled it."""
    ts = sorted(ledger.admitted)
    out = []
    for t in ledger.rejected:
        n = bisect.bisect_right(ts, t) - bisect.bisect_right(ts, t - window_us)
        unknown = any(start <= t and end > t - window_us for start, end in ledger.unknown)
        if n < limit and not unknown:
            out.append(t)
    return out


class LimiterWorkload:
    """Clients on known keys at known rates (see the module's docstring)."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str], *, rate_hz: float, limit: int, window_s: float,
                 tolerance: float, clock: Callable[[], float], seed: int, timeout_s: float,
                 on_sample: Callable[[WorkloadWindow, float], Any], sample_every_s: float = 1.0) -> None:
        self.http, self.urls = http, urls
        self.limit, self.window_us = limit, int(window_s * 1_000_000)
        self.tolerance, self.clock, self.timeout_s = tolerance, clock, timeout_s
        self.on_sample, self.sample_every_s = on_sample, sample_every_s
        self.key_prefix = f"opeval/wl/{seed}-{time.time_ns() % 1_000_000_000:09d}/"
        # known rates on known keys: at the default 50/s and limit 20/s, 1.5x and 0.5x the limit
        self.keys = {f"{self.key_prefix}over": rate_hz * 0.6, f"{self.key_prefix}under-1": rate_hz * 0.2,
                     f"{self.key_prefix}under-2": rate_hz * 0.2}
        self.ledgers = {k: KeyLedger(rate) for k, rate in self.keys.items()}
        self.totals = WorkloadWindow(start_s=0.0)
        self.unavailable: list[TimeWindow] = []
        self._window = WorkloadWindow(start_s=0.0)
        self._outage_start: float | None = None
        self._next_node = dict.fromkeys(self.keys, 0)  # each key's client goes round every node
        self.max_in_flight = 4  # per key: a slow cluster is not buried under retries

    async def run(self) -> None:
        """Every key's client at once, until cancelled."""
        self._window = WorkloadWindow(start_s=self.clock())
        try:
            async with anyio.create_task_group() as tg:
                for key in self.keys:
                    tg.start_soon(self._client, key)
                tg.start_soon(self._sampler)
        finally:
            self._flush(self.clock())
            if self._outage_start is not None:
                self.unavailable.append(TimeWindow(self._outage_start, self.clock()))
                self._outage_start = None

    async def _sampler(self) -> None:
        while True:
            await anyio.sleep(self.sample_every_s)
            self._flush(self.clock())

    def _flush(self, end_s: float) -> None:
        w = self._window
        if w.writes_ok + w.writes_failed:
            self.on_sample(w, end_s)
        self._window = WorkloadWindow(start_s=end_s)

    async def _client(self, key: str) -> None:
        """Open loop: each request leaves on its schedule, whatever the ones before it are
        waiting for (at most :attr:`max_in_flight` per key), as independent clients would."""
        interval = 1.0 / self.keys[key]
        next_at = time.monotonic()
        limiter = anyio.CapacityLimiter(self.max_in_flight)

        async def one() -> None:
            async with limiter:
                await self._one(key)

        async with anyio.create_task_group() as tg:
            while True:
                if limiter.borrowed_tokens < self.max_in_flight:
                    tg.start_soon(one)
                else:  # saturated: the request is not sent, and counts as one without a decision
                    self._window.writes_failed += 1
                    self.totals.writes_failed += 1
                next_at = max(next_at + interval, time.monotonic() - 1.0)
                await anyio.sleep(max(0.0, next_at - time.monotonic()))

    async def _one(self, key: str) -> None:
        ledger = self.ledgers[key]
        started, start_s, sent_us = time.monotonic(), self.clock(), time.time_ns() // 1000
        answer: dict[str, Any] | None = None
        lost = False  # a request sent that may have reached Redis without its reply reaching us
        for attempt in range(len(self.urls)):
            url = self.urls[(self._next_node[key] + attempt) % len(self.urls)]
            try:
                r = await self.http.get(f"{url}/check", params={"key": key}, timeout=self.timeout_s)
            except httpx.ConnectError:
                continue  # never sent
            except httpx.HTTPError:  # sent: it may have been decided without the reply reaching us
                lost = True
                continue
            if r.status_code in (200, 429):
                answer = r.json()
                break
            lost = lost or r.status_code >= 500
        self._next_node[key] = (self._next_node[key] + 1) % len(self.urls)
        w, t = self._window, self.totals  # the window open now (the sampler may have moved on)
        if lost:
            ledger.unknown.append((sent_us, time.time_ns() // 1000 + self.window_us))
        if answer is None:
            w.writes_failed += 1
            t.writes_failed += 1
            if self._outage_start is None:
                self._outage_start = start_s
            return
        w.writes_ok += 1
        t.writes_ok += 1
        w.latencies_ms.append((time.monotonic() - started) * 1000)
        if answer["allowed"]:
            ledger.admitted.append(int(answer["time_us"]))
            w.reads_ok += 1
            t.reads_ok += 1
        else:
            if not answer.get("blocked"):
                ledger.rejected.append(int(answer["time_us"]))
            w.reads_failed += 1
            t.reads_failed += 1
        if self._outage_start is not None:
            self.unavailable.append(TimeWindow(self._outage_start, self.clock()))
            self._outage_start = None

    @property
    def acknowledged(self) -> int:
        """Decisions the limiter made (each one a promise about its window)."""
        return sum(len(lg.admitted) + len(lg.rejected) for lg in self.ledgers.values())

    @property
    def longest_unavailable_s(self) -> float:
        """The longest span in which no request got a decision."""
        return round(max((u.end_s - u.start_s for u in self.unavailable), default=0.0), 6)

    def judge(self) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        """Over-admissions and wrongful rejections, by key."""
        over = {k: over_admitted(lg.admitted, self.limit, self.window_us) for k, lg in self.ledgers.items()}
        wrong = {k: wrongly_rejected(lg, self.limit, self.window_us) for k, lg in self.ledgers.items()}
        return over, wrong

    async def check_data(self) -> DataSafety:
        """Judge every decision against the limit (nothing is read back: the ledger is the truth)."""
        decisions = self.acknowledged
        over, wrong = self.judge()
        n_over = sum(map(len, over.values()))
        n_wrong = sum(map(len, wrong.values()))
        beyond = n_wrong if n_wrong > self.tolerance * decisions else 0
        samples = [f"{k.removeprefix(self.key_prefix)}: {len(v)} admitted beyond {self.limit} per "
                   f"{self.window_us / 1e6:g}s" for k, v in over.items() if v]
        samples += [f"{k.removeprefix(self.key_prefix)}: {len(v)} wrongly rejected"
                    + ("" if beyond else " (within tolerance)") for k, v in wrong.items() if v]
        return DataSafety(acknowledged=decisions, present=decisions - n_over - beyond, missing=n_over, wrong=beyond,
                          unreadable=0, sample_missing=samples[:10], error=None, broken="rate limit broken",
                          missing_word="over-admitted", wrong_word="wrongly rejected beyond tolerance",
                          fails_recovery=False)
