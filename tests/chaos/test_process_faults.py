"""pause and quorum_loss on real etcd clusters: the fault took effect (its observed effect
is in ChaosVerified), it was reverted or repaired, and nothing was left behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from opeval.chaos import CHAOS
from opeval.errors import UsageError
from opeval.events import AgentSpec, ChaosSpec, Scalar, Trial, TrialConfig
from opeval.runner import TrialRequest, prepare, run_single
from opeval.store import EventStore
from tests.runner.helpers import assert_nothing_left, of


def run(store_path: Path, kind: str, target: str, *, agent: str = "none", timeout: float = 15.0,
        params: dict[str, Scalar] | None = None, policy: str = "never", seed: int = 5) -> tuple[Any, list[Any]]:
    req = TrialRequest(chaos=ChaosSpec(kind=kind, target=target, params=params or {}), agent=AgentSpec(name=agent),
                       seed=seed, config=TrialConfig(restart_policy=policy, timeout_s=timeout, settle_s=1.0,
                                                     warmup_s=0.5))
    with EventStore(store_path) as store:
        result = anyio.run(lambda: run_single(store, req, handle_signals=False))
        events = store.events(result.trial_id)
    assert_nothing_left(result, events)
    return result, events


@pytest.mark.integration
def test_a_paused_member_is_a_gray_failure_resumed_when_its_duration_ends(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "pause", "follower", params={"duration_s": 3.0})
    (injected,) = of(events, Trial.ChaosInjected)
    (verified,) = of(events, Trial.ChaosVerified)
    assert verified.observations["member"] == injected.target
    assert verified.observations["process_state"] == "T" and verified.observations["health_timed_out"] is True
    (reverted,) = of(events, Trial.ChaosReverted)
    # alive all along, not a crash: no member exits until the cluster is torn down
    assert [e for e in of(events, Trial.MemberProcessExited) if e.offset_s < reverted.offset_s] == []
    assert reverted.action.startswith(f"SIGCONT to {injected.target}") and "3s duration ended" in reverted.action
    assert reverted.offset_s - verified.offset_s >= 3.0
    # resumed by the harness, the member catches up by itself: recovered, after the duration
    assert result.outcome == "recovered", result.reason
    # no earlier than the SIGCONT, less one observation round (it is stamped when it began)
    assert result.time_to_recover_s >= 3.0 - 0.35


@pytest.mark.integration
def test_the_runbook_restarts_a_paused_member(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "pause", "random", agent="runbook", timeout=30.0)
    (injected,) = of(events, Trial.ChaosInjected)
    commands = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    assert f"nodectl restart {injected.target}" in commands
    status = of(events, Trial.AgentCommandExecuted)[0]
    assert "paused (stopped)" in status.stdout
    assert result.outcome == "recovered", result.reason
    assert of(events, Trial.ChaosReverted) == []  # the restart replaced the stopped process: nothing to undo


@pytest.mark.integration
def test_quorum_loss_leaves_no_leader_until_members_return(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "quorum_loss", "majority", agent="runbook", timeout=30.0)
    (injected,) = of(events, Trial.ChaosInjected)
    (verified,) = of(events, Trial.ChaosVerified)
    victims = injected.target.split(",")
    assert len(victims) == 2
    assert verified.observations["majority_down"] is True and verified.observations["members_down"] == injected.target
    exited = {e.member for e in of(events, Trial.MemberProcessExited)}
    assert set(victims) <= exited
    # the workload saw the outage: writes failed while quorum was gone
    assert sum(s.writes_failed for s in of(events, Trial.WorkloadSampled)) > 0
    restarted = {e.member for e in of(events, Trial.MemberProcessStarted) if e.reason == "nodectl start"}
    assert restarted == set(victims)
    assert result.outcome == "recovered", result.reason


def test_fault_parameters_are_validated() -> None:
    with pytest.raises(UsageError, match="pause: duration_s must be a number > 0 and <= 86400, not -1"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="pause", params={"duration_s": -1})))
    with pytest.raises(UsageError, match="choose majority"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="quorum_loss", target="leader")))
    with pytest.raises(UsageError, match="at least 3 members"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="quorum_loss", target="majority"), config=TrialConfig(members=1)))
    assert {"node_kill", "pause", "quorum_loss"} <= set(CHAOS.names())
