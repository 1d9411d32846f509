"""The monitor's judgement on scripted states and a scripted clock (no cluster, no waiting):
detection never before verification, the settle window, a break restarting it, the probe."""

from __future__ import annotations

from typing import Any

import anyio
import httpx

from opeval.events import ClusterState, MemberState, Trial
from opeval.monitor import Monitor
from opeval.testing import FakeSubject

OK = ClusterState(members=[MemberState(name=n, process_up=True, reachable=True, healthy=True) for n in "abc"],
                  leader="a", healthy=3, expected=3)
DOWN = ClusterState(members=[*OK.members[:2], MemberState(name="c", process_up=False)], leader="a", healthy=2,
                    expected=3)


class Scripted(FakeSubject):
    """Plays ``states`` one observation at a time (then holds the last); each observation
    takes half a second of the scripted clock, so the n-th is made at (n - 1) * 0.5 s."""

    def __init__(self, states: list[ClusterState], probe: list[str | None] | None = None) -> None:
        super().__init__()
        self.states, self.probes, self.t = list(states), list(probe or []), 0.0
        self.observations = 0

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        self.observations += 1
        self.t += 0.5
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        return self.probes.pop(0) if self.probes else None


def watch(subject: Scripted, *, settle_s: float = 1.0, verified_at: float | None = 0.0,
          observations: int = 12) -> tuple[Monitor, list[tuple[type, dict[str, Any]]]]:
    """Run the monitor (armed, verified at ``verified_at``) for ``observations`` rounds."""
    recorded: list[tuple[type, dict[str, Any]]] = []
    monitor = Monitor(subject=subject, http=None, running=lambda: {}, clock=lambda: subject.t,  # type: ignore[arg-type]
                      record=lambda cls, **f: recorded.append((cls, f)), baseline=OK, poll_interval_s=0.0,
                      snapshot_interval_s=1.0, settle_s=settle_s)
    monitor.armed = True
    if verified_at is not None:
        monitor.verified = monitor.judging = True
        monitor.verified_at = verified_at

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            while subject.observations < observations and not monitor.recovered.is_set():
                await anyio.sleep(0)
            tg.cancel_scope.cancel()

    anyio.run(main)
    return monitor, recorded


def of(recorded: list[tuple[type, dict[str, Any]]], cls: type) -> list[dict[str, Any]]:
    return [f for c, f in recorded if c is cls]


def test_recovery_is_stamped_when_the_criteria_first_held_after_a_full_settle_window() -> None:
    subject = Scripted([DOWN, DOWN, OK, OK, OK, OK])
    monitor, recorded = watch(subject, settle_s=1.0)
    (rec,) = of(recorded, Trial.RecoveryDetected)
    assert rec["criteria_met_offset_s"] == 1.0  # the third observation
    assert rec["held_s"] >= 1.0
    assert monitor.recovered.is_set()


def test_a_break_inside_the_settle_window_restarts_it() -> None:
    subject = Scripted([DOWN, OK, OK, DOWN, OK, OK, OK, OK, OK])
    _, recorded = watch(subject, settle_s=1.5)
    (rec,) = of(recorded, Trial.RecoveryDetected)
    assert rec["criteria_met_offset_s"] == 2.0  # after the second DOWN (1.5 s), not the first OK


def test_a_failing_probe_counts_as_not_recovered() -> None:
    subject = Scripted([OK], probe=["probe failed", "probe failed", None])
    monitor, recorded = watch(subject, settle_s=0.5)
    (rec,) = of(recorded, Trial.RecoveryDetected)
    assert rec["criteria_met_offset_s"] == 1.0  # the first observation whose probe passed


def test_symptoms_seen_before_verification_are_recorded_at_verification() -> None:
    subject = Scripted([DOWN, DOWN, DOWN])
    monitor, recorded = watch(subject, verified_at=None, observations=2)
    assert of(recorded, Trial.FaultDetected) == [] and monitor.fault_detected_at is None

    async def verify_now() -> None:
        monitor.verified, monitor.verified_at = True, subject.t + 10.0
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            while monitor.fault_detected_at is None:
                await anyio.sleep(0)
            tg.cancel_scope.cancel()

    anyio.run(verify_now)
    (detected,) = of(recorded, Trial.FaultDetected)
    assert detected["symptoms"] == ["c unreachable"]
    assert monitor.fault_detected_at == monitor.verified_at  # never before the clock starts


def test_no_judgement_while_not_judging() -> None:
    subject = Scripted([OK])
    monitor, recorded = watch(subject, verified_at=None, observations=8)
    assert of(recorded, Trial.RecoveryDetected) == [] and not monitor.recovered.is_set()


def test_snapshots_are_taken_at_their_interval() -> None:
    subject = Scripted([OK])
    _, recorded = watch(subject, verified_at=None, observations=9)
    snaps = of(recorded, Trial.StateSnapshot)
    assert [s["phase"] for s in snaps] == ["periodic"] * len(snaps)
    assert 4 <= len(snaps) <= 5  # one a second of scripted time, over 4.5 s
