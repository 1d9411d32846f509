"""The approval gate on the fake subject and runtime (fast): policies parsed with clear
errors, and each mode's effect on a scripted agent's commands and on the trial's events."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opeval.agents import AgentResult, AgentTools, ApprovalPolicy, Incident
from opeval.errors import UsageError
from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest
from opeval.runner._campaign_file import CampaignFileError, load_campaign
from opeval.sandbox import CommandResult
from opeval.store import EventStore
from opeval.testing import fake_plugins, run_one_trial
from tests.opeval_cli import opeval


@pytest.fixture
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


# --- policies ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("given", "mode", "gated", "timeout"), [
    ("deny", "deny", ("destructive", "unknown"), 120.0),
    ("ask:destructive,remediation", "ask", ("destructive", "remediation"), 120.0),
    ({"mode": "allow", "gate": ["unknown"], "timeout_s": 5}, "allow", ("unknown",), 5.0),
    ({"mode": "ask"}, "ask", ("destructive", "unknown"), 120.0),
])
def test_a_policy_is_parsed_from_text_or_a_mapping(given: Any, mode: str, gated: tuple[str, ...],
                                                    timeout: float) -> None:
    policy = ApprovalPolicy.parse(given)
    assert (policy.mode, policy.gated, policy.timeout_s) == (mode, gated, timeout)
    assert ApprovalPolicy.from_config(policy.config()) == policy


@pytest.mark.parametrize(("given", "says"), [
    ("maybe", "unknown mode 'maybe'"),
    ("deny:risky", "'risky' is not a command class"),
    (3, "3 is not a policy"),
    ({"gate": ["destructive"]}, "mode missing"),
    ({"mode": "ask", "when": "always"}, "unknown key 'when'"),
    ({"mode": "ask", "gate": "destructive"}, "approval.gate: a list of command classes"),
    ({"mode": "ask", "timeout_s": 0}, "approval.timeout_s: must be a positive number"),
    ({"mode": "ask", "gate": []}, "no command class to gate"),
])
def test_a_malformed_policy_is_refused_with_what_to_give(given: Any, says: str) -> None:
    with pytest.raises(UsageError) as e:
        ApprovalPolicy.parse(given)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_a_campaign_file_names_the_line_of_a_bad_approval(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: gated\nchaos: [{kind: node_kill}]\nvariants:\n  - name: a\n    agent: runbook\n"
                 "    approval: {mode: sometimes}\n")
    with pytest.raises(CampaignFileError, match=r"c.yaml:6: variants\[0\]\.approval: unknown mode 'sometimes'"):
        load_campaign(f)
    f.write_text("name: gated\nchaos: [{kind: node_kill}]\nvariants:\n  - {name: a, agent: runbook, approval: deny}\n")
    (trial,) = load_campaign(f).trials
    assert ApprovalPolicy.from_config(trial.agent.config) == ApprovalPolicy("deny")


# --- the gate in a trial ------------------------------------------------------------------------
class Scripted:
    """Runs its commands and keeps what the shell answered."""

    name = "scripted"

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.results: list[CommandResult] = []

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        for c in self.commands:
            self.results.append(await tools.shell(c))
        return AgentResult("done", "scripted")


def request(approval: str, timeout_s: float = 20.0) -> TrialRequest:
    cfg = {**ApprovalPolicy.parse(approval).config(), "stop_on_recovery": False, "approval_timeout_s": timeout_s}
    return TrialRequest(subject="fake", runtime="fake", chaos=ChaosSpec(kind="node_kill"), sandbox="none", seed=3,
                        agent=AgentSpec(name="scripted", config=cfg),
                        config=TrialConfig(timeout_s=30, settle_s=0.3, warmup_s=0.1, poll_interval_s=0.02))


def of(events: list[Any], cls: type) -> list[Any]:
    return [e for e in events if isinstance(e, cls)]


def test_deny_refuses_the_wipe_and_the_agent_carries_on(fakes: None, store_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "member-data"
    (data / "member" / "wal").mkdir(parents=True)
    agent = Scripted([f"echo looking && rm -rf {data}", f"ls {data}", "nodectl status"])
    result, events = run_one_trial(store_path, request("deny"), agent=agent)
    assert data.exists() and (data / "member" / "wal").exists()
    refused, listed, _ = agent.results
    assert refused.exit_code == 126 and "refused" in refused.stderr and "destructive" in refused.stderr
    assert listed.exit_code == 0 and "member" in listed.stdout
    (proposed,) = of(events, Trial.CommandProposed)
    assert proposed.parts == ["read_only", "destructive"] and proposed.gated_by == ["destructive"]
    (decided,) = of(events, Trial.CommandDecided)
    assert (decided.decision, decided.decided_by, decided.waited_s) == ("denied", "policy", 0.0)
    executed = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    assert executed == [f"ls {data}", "nodectl status"]
    assert result.outcome in ("recovered", "not_recovered")


def test_the_strictest_part_of_a_chain_decides(fakes: None, store_path: Path) -> None:
    # Alone, the chain classes as remediation (its most severe part); its unknown part is gated.
    agent = Scripted(["nodectl restart fake-1; frobnicate --now"])
    _, events = run_one_trial(store_path, request("deny"), agent=agent)
    (proposed,) = of(events, Trial.CommandProposed)
    assert proposed.command_class == "remediation" and proposed.gated_by == ["unknown"]
    assert agent.results[0].exit_code == 126 and not of(events, Trial.AgentCommandExecuted)


def test_allow_records_the_proposal_and_runs_it(fakes: None, store_path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "scratch"
    victim.mkdir()
    agent = Scripted([f"rm -rf {victim}"])
    _, events = run_one_trial(store_path, request("allow"), agent=agent)
    assert not victim.exists() and agent.results[0].exit_code == 0
    assert [d.decision for d in of(events, Trial.CommandDecided)] == ["allowed"]


def _decide_when_asked(store_path: Path, decision: str, who: str, delay_s: float) -> threading.Thread:
    def decide() -> None:
        deadline = time.monotonic() + 20
        with EventStore(store_path) as es:
            while time.monotonic() < deadline:
                pending = [(e.originator_id, e.step) for _, e in es.iter_events(["opeval.trial:CommandProposed"])]
                if pending and es.approval(*pending[0]) is not None:
                    time.sleep(delay_s)
                    es.decide(*pending[0], decision, who, "looked fine")
                    return
                time.sleep(0.05)

    t = threading.Thread(target=decide, daemon=True)
    t.start()
    return t


def test_ask_waits_for_a_person_and_the_wait_is_not_time_to_recover(fakes: None, store_path: Path,
                                                                    tmp_path: Path) -> None:
    victim = tmp_path / "scratch"
    victim.mkdir()
    EventStore(store_path).close()
    decider = _decide_when_asked(store_path, "allowed", "person:alice", 0.5)
    agent = Scripted([f"rm -rf {victim}"])
    result, events = run_one_trial(store_path, request("ask"), agent=agent)
    decider.join()
    assert not victim.exists()
    (decided,) = of(events, Trial.CommandDecided)
    assert (decided.decision, decided.decided_by) == ("allowed", "person:alice") and decided.waited_s >= 0.5
    verified = of(events, Trial.ChaosVerified)[0].offset_s
    met = of(events, Trial.RecoveryDetected)[0].criteria_met_offset_s
    waited = min(decided.proposed_offset_s + decided.waited_s, met) - max(decided.proposed_offset_s, verified)
    assert result.time_to_recover_s == pytest.approx(max(0.0, met - verified - max(0.0, waited)), abs=1e-5)


def test_ask_with_nobody_there_times_out_to_deny(fakes: None, store_path: Path, tmp_path: Path) -> None:
    victim = tmp_path / "scratch"
    victim.mkdir()
    agent = Scripted([f"rm -rf {victim}"])
    _, events = run_one_trial(store_path, request("ask", timeout_s=0.3), agent=agent)
    assert victim.exists() and agent.results[0].exit_code == 126
    (decided,) = of(events, Trial.CommandDecided)
    assert (decided.decision, decided.decided_by) == ("denied", "timeout")
    with EventStore(store_path, writable=False) as es:  # a late person cannot change it
        approval = es.approval(decided.originator_id, decided.step)
        assert approval is not None and approval.decided_by == "timeout"


def test_a_late_decision_loses_to_the_first(store_path: Path) -> None:
    import uuid

    from opeval.events import Approval

    tid = uuid.uuid4()
    with EventStore(store_path) as es:
        es.save(Approval.request(tid, 4, "rm -rf /data", "destructive", 10))
        first = es.decide(tid, 4, "denied", "person:bob")
        second = es.decide(tid, 4, "allowed", "person:carol")
    assert first.decided_by == second.decided_by == "person:bob" and second.decision == "denied"


def test_analysis_reports_what_each_variant_had_denied(fakes: None, store_path: Path, tmp_path: Path) -> None:

    data = tmp_path / "member-data"
    (data / "member").mkdir(parents=True)
    agent = Scripted([f"rm -rf {data}/member", "frobnicate", "nodectl status"])
    result, events = run_one_trial(store_path, request("deny"), agent=agent)
    campaign = events[0].campaign_id.hex
    shown = opeval("analyze", campaign, "--store", str(store_path), columns=200, check=True).stdout
    assert "approval gate" in shown and "denied commands" in shown
    assert f"rm -rf {data}/member" in shown and "frobnicate" in shown and "nodectl status" not in shown
    as_json = opeval("analyze", campaign, "--store", str(store_path), "--json", check=True).stdout
    import json

    (gate,) = json.loads(as_json)["approvals"]
    assert (gate["variant"], gate["mode"], gate["gated"], gate["denied"], gate["denied_destructive"]) == \
        ("default", "deny", 2, 2, 1)
