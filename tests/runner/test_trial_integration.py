"""Real node_kill trials on a real 3-member etcd cluster."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from opeval.events import Trial
from opeval.store import EventStore
from tests.runner.helpers import is_subsequence, of, run_trial

pytestmark = pytest.mark.integration

CONTRACT_ORDER = [
    "TrialStarted", "ClusterUp", "StateSnapshot", "WorkloadStarted", "ChaosInjected", "ChaosVerified",
    "FaultDetected", "RecoveryDetected", "WorkloadStopped", "StateSnapshot", "DataSafetyChecked",
    "ClusterDown", "TrialFinished",
]


def test_follower_kill_with_restart_policy_recovers(store_path: Path, no_leaks: None) -> None:
    result, events = run_trial(store_path, target="follower", policy="on-failure")
    assert result.outcome == "recovered", result.reason
    names = [type(e).__name__ for e in events]
    assert is_subsequence(CONTRACT_ORDER, names), " ".join(n for n in names if n != "WorkloadSampled")
    assert names[-1] == "TrialFinished"
    (injected,) = of(events, Trial.ChaosInjected)
    (verified,) = of(events, Trial.ChaosVerified)
    (recovery,) = of(events, Trial.RecoveryDetected)
    before = of(events, Trial.StateSnapshot)[0]
    assert before.phase == "before" and injected.target != before.state.leader
    assert verified.observations["member"] == injected.target
    assert verified.observations["exit_code"] == -signal.SIGKILL
    # the supervisor brought the victim back, and recovery counts from verification
    restarts = [e for e in of(events, Trial.MemberProcessStarted) if e.member == injected.target and e.restarts]
    assert restarts and restarts[0].offset_s > verified.offset_s
    assert verified.offset_s <= recovery.criteria_met_offset_s < recovery.offset_s
    assert result.time_to_recover_s == pytest.approx(recovery.criteria_met_offset_s - verified.offset_s, abs=1e-5)
    (safety,) = of(events, Trial.DataSafetyChecked)
    assert safety.acknowledged > 0 and safety.missing == 0 and safety.wrong == 0 and safety.error is None
    offsets = [e.offset_s for e in events]
    assert offsets == sorted(offsets)
    # the log holds these events in this order
    with EventStore(store_path, writable=False) as store:
        logged = [e for _, e in store.iter_events() if e.originator_id == result.trial_id]
    assert [vars(e) for e in logged] == [vars(e) for e in events]


def test_leader_kill_without_restarts_is_not_recovered_but_stays_available(store_path: Path, no_leaks: None) -> None:
    # 6 s: room after the election (1-2 s, longer on a loaded machine) for samples that prove service is back
    result, events = run_trial(store_path, target="leader", policy="never", timeout=6.0)
    assert result.outcome == "not_recovered"
    assert "unreachable" in result.reason
    (injected,) = of(events, Trial.ChaosInjected)
    assert injected.detail["was_leader"] is True
    assert of(events, Trial.RecoveryDetected) == []
    assert not [e for e in of(events, Trial.MemberProcessStarted) if e.restarts]
    (verified,) = of(events, Trial.ChaosVerified)
    (finished,) = of(events, Trial.TrialFinished)
    assert finished.offset_s - verified.offset_s >= 6.0
    # the survivors elected a new leader and kept serving: the outage is a window, recorded
    (stopped,) = of(events, Trial.WorkloadStopped)
    assert stopped.unavailable and 0 < stopped.longest_unavailable_s < 6.0
    late = [s for s in of(events, Trial.WorkloadSampled) if s.window.start_s > stopped.unavailable[-1].end_s]
    assert late and all(s.writes_ok > 0 for s in late)
    after = [s for s in of(events, Trial.StateSnapshot) if s.phase == "after"][0]
    assert after.state.leader not in (None, injected.target)
    (safety,) = of(events, Trial.DataSafetyChecked)
    assert safety.missing == 0 and safety.error is None


def test_leader_kill_with_restart_policy_recovers(store_path: Path, no_leaks: None) -> None:
    result, events = run_trial(store_path, target="leader", policy="on-failure")
    assert result.outcome == "recovered", result.reason
    (verified,) = of(events, Trial.ChaosVerified)
    assert verified.observations["was_leader"] is True
    assert result.time_to_detect_s is not None and result.time_to_recover_s is not None


def test_follower_kill_without_restarts_times_out_with_the_cluster_serving(store_path: Path, no_leaks: None) -> None:
    result, events = run_trial(store_path, target="follower", policy="never", timeout=3.0)
    assert result.outcome == "not_recovered"
    (stopped,) = of(events, Trial.WorkloadStopped)
    assert stopped.longest_unavailable_s < 1.0  # a client fails over to a live member
    assert stopped.writes_ok > 0
    (detected,) = of(events, Trial.FaultDetected)
    (injected,) = of(events, Trial.ChaosInjected)
    assert f"{injected.target} unreachable" in detected.symptoms
