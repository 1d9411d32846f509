"""The runner's own logic on the fake subject and runtime: no cluster, about a second a trial.

Verification and detection order, settle windows, timeouts, errors, aborts, control
trials, agents that fail or overstay, and cleanup after each.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

from opeval.agents import AgentResult, AgentTools, Incident
from opeval.chaos import CHAOS, ChaosContext, ChaosVerificationError, FaultBase, Injection, Verification
from opeval.errors import UsageError
from opeval.events import AgentSpec, Campaign, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, TrialStatus, harness_info, prepare, run_trial
from opeval.store import EventStore
from opeval.subjects import SUBJECTS
from opeval.testing import FakeSubject, fake_plugins, run_one_trial


@pytest.fixture(autouse=True)
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


def request(kind: str = "node_kill", *, target: str = "random", agent: str = "none", policy: str = "on-failure",
            timeout: float = 10.0, **params: Any) -> TrialRequest:
    return TrialRequest(subject="fake", runtime="fake", chaos=ChaosSpec(kind=kind, target=target, params=params),
                        agent=AgentSpec(name=agent), sandbox="none", seed=11,
                        config=TrialConfig(restart_policy=policy, timeout_s=timeout, settle_s=0.3, warmup_s=0.1,
                                           poll_interval_s=0.02))


def names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def one(events: list[Any], cls: type) -> Any:
    found = [e for e in events if isinstance(e, cls)]
    assert len(found) == 1, (cls.__name__, len(found))
    return found[0]


class ScriptedAgent:
    """An agent that runs the given commands, then returns (or raises, or waits)."""

    name = "scripted"

    def __init__(self, commands: list[str], *, then: str = "done") -> None:
        self.commands, self.then = commands, then

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        for c in self.commands:
            await tools.shell(c)
        if self.then == "raise":
            raise ValueError("the agent's own bug")
        if self.then == "wait":
            await anyio.sleep_forever()
        return AgentResult("done", "scripted", declared_resolved=True)


def test_the_supervisor_heals_a_killed_member_and_every_step_is_in_order(store_path: Path) -> None:
    result, events = run_one_trial(store_path, request())
    assert result.outcome == "recovered", result.reason
    order = ["TrialStarted", "ClusterUp", "StateSnapshot", "WorkloadStarted", "ChaosInjected", "ChaosVerified",
             "FaultDetected", "RecoveryDetected", "WorkloadStopped", "DataSafetyChecked", "ClusterDown",
             "TrialFinished"]
    got = [n for n in names(events) if n in order]
    firsts = sorted(order, key=got.index)
    assert firsts == order
    verified = one(events, Trial.ChaosVerified)
    detected = one(events, Trial.FaultDetected)
    recovered = one(events, Trial.RecoveryDetected)
    assert verified.offset_s <= detected.offset_s <= recovered.offset_s
    assert recovered.held_s >= 0.3  # the settle window
    assert 0 <= result.time_to_detect_s <= result.time_to_recover_s
    assert result.time_to_recover_s == pytest.approx(recovered.criteria_met_offset_s - verified.offset_s, abs=1e-6)
    safety = one(events, Trial.DataSafetyChecked)
    assert safety.acknowledged > 0 and safety.missing == safety.wrong == 0


def test_with_no_restart_the_trial_times_out_not_recovered(store_path: Path) -> None:
    result, events = run_one_trial(store_path, request(policy="never", timeout=0.5))
    assert result.outcome == "not_recovered"
    assert result.reason.startswith("not recovered within 0.5s") and "unhealthy" in result.reason
    assert result.time_to_recover_s is None and "RecoveryDetected" not in names(events)
    assert one(events, Trial.TrialFinished).time_to_detect_s is not None


def test_a_lost_quorum_stops_the_workload_and_its_outage_is_recorded(store_path: Path) -> None:
    result, events = run_one_trial(store_path, request("quorum_loss", target="majority"))
    assert result.outcome == "recovered", result.reason
    stopped = one(events, Trial.WorkloadStopped)
    assert stopped.writes_failed > 0 and stopped.unavailable and stopped.longest_unavailable_s > 0


class _NeverSeen(FaultBase):
    kind = "never_seen"
    reverted: ClassVar[list[str]] = []

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        self.reverted.append(injection.target)
        return "undone"

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        pass

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        return Injection(target="fake-1", detail={})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        raise ChaosVerificationError("nothing happened")


class _Exploding(_NeverSeen):
    kind = "exploding"

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        raise RuntimeError("injector broke")


@contextlib.contextmanager
def supporting(kind: str, cls: type) -> Iterator[None]:
    """A chaos kind registered for this test only, and supported by the fake subject."""
    with CHAOS.registered(kind, cls), SUBJECTS.registered("fake", type("Fake", (FakeSubject,), {
            "chaos_kinds": (*FakeSubject.chaos_kinds, kind)})):
        yield


def test_a_fault_never_verified_is_an_error_and_the_cluster_still_goes_down(store_path: Path) -> None:
    with supporting("never_seen", _NeverSeen):
        result, events = run_one_trial(store_path, request("never_seen"))
    assert result.outcome == "error" and result.reason == "fault not verified: nothing happened"
    assert "ChaosVerified" not in names(events) and "ClusterDown" in names(events)
    assert _NeverSeen.reverted == ["fake-1"]  # an unverified fault is still undone, and that is recorded
    assert one(events, Trial.ChaosReverted).action == "undone"


def test_a_harness_failure_is_recorded_then_raised(store_path: Path) -> None:
    seen: list[uuid.UUID] = []

    async def main() -> None:
        with EventStore(store_path) as store:
            campaign = Campaign._create(Campaign.CampaignStarted, id=uuid.uuid4(), name="t", spec={},
                                        trials_planned=1, harness=harness_info())
            await run_trial(store, campaign, 0, request("exploding"), on_status=lambda s: seen.append(s.trial_id))

    with supporting("exploding", _Exploding), pytest.raises(RuntimeError, match="injector broke"):
        anyio.run(main)
    with EventStore(store_path) as store:
        events = store.events(seen[0])
    finished = events[-1]
    assert isinstance(finished, Trial.TrialFinished)
    assert finished.outcome == "error" and finished.reason == "RuntimeError: injector broke"
    assert "ClusterDown" in names(events)


def test_an_interrupted_trial_is_aborted_and_cleaned_up(store_path: Path) -> None:
    async def main() -> Any:
        scope = anyio.CancelScope()

        def on_status(s: TrialStatus) -> None:
            if s.phase == "waiting for recovery":
                scope.cancel()

        with EventStore(store_path) as store:
            campaign = Campaign._create(Campaign.CampaignStarted, id=uuid.uuid4(), name="t", spec={},
                                        trials_planned=1, harness=harness_info())
            result = await run_trial(store, campaign, 0, request(policy="never", timeout=30), cancel_scope=scope,
                                     interrupted=lambda: "SIGINT", on_status=on_status)
            return result, store.events(result.trial_id)

    result, events = anyio.run(main)
    assert result.outcome == "aborted" and result.reason == "interrupted by SIGINT"
    assert names(events)[-3:] == ["ClusterDown", "TrialAborted", "TrialFinished"]


def test_a_control_without_an_agent_is_healthy_and_has_no_times(store_path: Path) -> None:
    result, events = run_one_trial(store_path, request("none", target="none"))
    assert result.outcome == "recovered" and result.reason.startswith("control:")
    assert result.time_to_detect_s is None and result.time_to_recover_s is None
    assert "FaultDetected" not in names(events) and "ChaosReverted" not in names(events)
    assert one(events, Trial.ChaosInjected).detail == {"control": True}


def test_a_control_agent_that_breaks_the_system_leaves_it_not_recovered(store_path: Path) -> None:
    agent = ScriptedAgent(["nodectl stop fake-1", "nodectl stop fake-2"])
    req = request("none", target="none", agent="scripted", policy="never", alert="p99 latency above 2 s")
    result, events = run_one_trial(store_path, req, agent=agent)
    assert result.outcome == "not_recovered" and result.reason.startswith("control: left unhealthy")
    assert "p99 latency above 2 s" in one(events, Trial.AgentStarted).context
    commands = [e.command for e in events if isinstance(e, Trial.AgentCommandExecuted)]
    assert commands == ["nodectl stop fake-1", "nodectl stop fake-2"]
    assert "FaultDetected" in names(events)  # the harm the agent did shows as symptoms


def test_a_control_is_judged_after_the_agent_not_during_it(store_path: Path) -> None:
    # The agent stops a member and starts it again: healthy at the end, so recovered;
    # the outage it caused is in the workload's record, not hidden by an early verdict.
    agent = ScriptedAgent(["nodectl stop fake-1", "nodectl stop fake-2", "sleep 0.3", "nodectl start fake-1",
                           "nodectl start fake-2"])
    result, events = run_one_trial(store_path, request("none", target="none", agent="scripted"), agent=agent)
    assert result.outcome == "recovered", result.reason
    finished = one(events, Trial.AgentFinished)
    recovered = one(events, Trial.RecoveryDetected)
    assert recovered.criteria_met_offset_s >= finished.offset_s
    assert one(events, Trial.WorkloadStopped).writes_failed > 0


def test_an_agent_that_raises_is_its_own_failure_not_the_harness(store_path: Path) -> None:
    agent = ScriptedAgent(["nodectl status"], then="raise")
    result, events = run_one_trial(store_path, request(agent="scripted"), agent=agent)
    finished = one(events, Trial.AgentFinished)
    assert finished.reason == "error" and "ValueError: the agent's own bug" in finished.summary
    assert result.outcome == "recovered"  # the supervisor healed it regardless


def test_an_agent_still_working_is_stopped_once_recovery_is_detected(store_path: Path) -> None:
    result, events = run_one_trial(store_path, request(agent="scripted"), agent=ScriptedAgent([], then="wait"))
    assert result.outcome == "recovered"
    assert one(events, Trial.AgentFinished).reason == "recovered"


def test_an_agent_out_of_steps_is_stopped_with_that_reason(store_path: Path) -> None:
    req = request(agent="scripted", policy="never")
    req = TrialRequest(**{**req.__dict__, "agent": AgentSpec(name="scripted", config={"max_steps": 2})})
    result, events = run_one_trial(store_path, req, agent=ScriptedAgent(["true", "true", "true"]))
    finished = one(events, Trial.AgentFinished)
    assert finished.reason == "max_steps" and finished.steps == 2
    assert result.outcome == "not_recovered"


def test_a_kind_the_subject_does_not_support_is_refused_with_the_ones_it_does() -> None:
    with pytest.raises(UsageError, match="choose one of node_kill, none, pause, quorum_loss$"):
        prepare(request("partition"))
