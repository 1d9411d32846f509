"""The monitor: polls the subject, records snapshots, detects the fault and recovery.

Detection and recovery are judged from the subject's own health signals (its
``symptoms``, ``recovery_unmet`` and ``write_read_probe``), never from an agent's claim. Recovery is the subject's criteria (plus a write+read probe) holding
without a break for the whole settle window; its time is when they first held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx

from opeval.events import ClusterState, Trial
from opeval.subjects import Subject


class Monitor:
    """Polls every ``poll_interval_s``; snapshots every ``snapshot_interval_s``."""

    def __init__(
        self,
        *,
        subject: Subject,
        http: httpx.AsyncClient,
        running: Callable[[], dict[str, bool]],
        record: Callable[..., Any],
        clock: Callable[[], float],
        baseline: ClusterState,
        poll_interval_s: float,
        snapshot_interval_s: float,
        settle_s: float,
        on_state: Callable[[ClusterState], Any] = lambda s: None,
    ) -> None:
        self.subject = subject
        self.http = http
        self.running = running
        self.record = record
        self.clock = clock
        self.baseline = baseline
        self.poll_interval_s = poll_interval_s
        self.snapshot_interval_s = snapshot_interval_s
        self.settle_s = settle_s
        self.on_state = on_state
        self.armed = False  # set when the fault is injected: symptoms count from then
        self.verified = False  # set when the fault is verified: recovery counts from then
        self.verified_at = 0.0  # the trial offset of ChaosVerified (set with ``verified``)
        self.judging = False  # recovery is judged while set: from verification (a control: from the agent's end)
        self.judging_since = 0.0  # observations made before this offset are not judged (see judge_from)
        self._early_symptoms: list[str] = []
        self.fault_detected_at: float | None = None
        self.symptoms: list[str] = []
        self.met_since: float | None = None
        self.recovered = anyio.Event()
        self.latest: ClusterState = baseline
        self.unmet: list[str] = []

    async def run(self) -> None:
        """Poll until cancelled."""
        last_snapshot = -1e9
        next_at = time.monotonic()
        while True:
            observed_at = self.clock()
            state = await self.subject.observe(self.http, self.running())
            self.latest = state
            self.on_state(state)
            if observed_at - last_snapshot >= self.snapshot_interval_s:
                self.record(Trial.StateSnapshot, phase="periodic", state=state)
                last_snapshot = observed_at
            if self.armed and self.fault_detected_at is None:
                found = self.subject.symptoms(self.baseline, state) or (self._early_symptoms if self.verified else [])
                if found and not self.verified:
                    # Seen before the fault's own verification finished: held back, so the log
                    # keeps ChaosVerified -> FaultDetected and detection never predates the clock.
                    self._early_symptoms = found
                elif found:
                    # Detection is timed by the alert's own offset in the log, never before
                    # the clock starts, so every view reads the same instant.
                    detected_at = max(self.clock(), self.verified_at)
                    self.record(Trial.FaultDetected, symptoms=found, offset_s=detected_at)
                    self.fault_detected_at, self.symptoms = detected_at, found
            if self.judging and not self.recovered.is_set() and observed_at >= self.judging_since:
                await self._judge_recovery(state, observed_at)
            next_at = max(next_at + self.poll_interval_s, time.monotonic())
            await anyio.sleep(max(0.0, next_at - time.monotonic()))

    def judge_from(self, offset_s: float) -> None:
        """Judge recovery from observations made at ``offset_s`` or later (one already in
        flight began earlier, so it cannot speak for the time after)."""
        self.judging_since, self.judging = offset_s, True

    async def _judge_recovery(self, state: ClusterState, observed_at: float) -> None:
        unmet = self.subject.recovery_unmet(self.baseline, state)
        if not unmet:
            problem = await self.subject.write_read_probe(self.http)
            if problem:
                unmet = [problem]
        self.unmet = unmet
        if unmet:
            self.met_since = None
            return
        if self.met_since is None:
            self.met_since = observed_at
        held = self.clock() - self.met_since
        if held >= self.settle_s:
            self.record(Trial.RecoveryDetected, criteria_met_offset_s=self.met_since, held_s=round(held, 6))
            self.recovered.set()
