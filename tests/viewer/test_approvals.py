"""A person decides a held command in the web viewer, in headless Chromium, and the
decision reaches the agent of a real etcd trial; the form is refused without the
viewer's page token or from another machine."""

from __future__ import annotations

import threading
import uuid
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from litestar.testing import TestClient

from opeval.agents import AgentResult, AgentTools, ApprovalPolicy, Incident
from opeval.events import AgentSpec, Approval, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, TrialResult, run_single
from opeval.sandbox import CommandResult
from opeval.projections import ReadModels, RuleSet, trial_scores
from opeval.store import EventStore
from opeval.viewer import create_app
from tests.runner.helpers import assert_nothing_left, of
from tests.viewer.cdp import Browser
from tests.viewer.helpers import read_url, start_viewer, stop_viewer
from tests.viewer.test_e2e import chromium_binary


class Asking:
    """Proposes a wipe (a person should deny it) and the repair (a person should approve it)."""

    name = "asking"

    def __init__(self) -> None:
        self.wipe: CommandResult | None = None
        self.repair: CommandResult | None = None

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        status = await tools.shell("nodectl status")
        victim = next(line.split()[0] for line in status.stdout.splitlines()[1:] if "running" not in line)
        self.wipe = await tools.shell(f"rm -rf {incident.member_dirs[victim]}/data")
        self.repair = await tools.shell(f"nodectl start {victim}")
        return AgentResult("done", "asked twice", declared_resolved=True)


@pytest.mark.integration
def test_a_person_decides_in_the_browser_and_the_agent_gets_it(store_path: Path, tmp_path: Path,
                                                                no_leaks: None) -> None:
    EventStore(store_path).close()
    viewer = start_viewer(store_path, "--port", "0")
    agent = Asking()
    policy = ApprovalPolicy.parse({"mode": "ask", "gate": ["remediation", "destructive"], "timeout_s": 90})
    req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), seed=9,
                       agent=AgentSpec(name="asking", config={**policy.config(), "stop_on_recovery": False}),
                       config=TrialConfig(restart_policy="never", timeout_s=120, settle_s=1.0, warmup_s=0.5))
    outcome: list[TrialResult | BaseException] = []

    def trial() -> None:
        try:
            with EventStore(store_path) as store:
                outcome.append(anyio.run(lambda: run_single(store, req, handle_signals=False, agent=agent)))
        except BaseException as e:  # noqa: BLE001 - surfaced by the test below
            outcome.append(e)

    runner = threading.Thread(target=trial)
    try:
        url = read_url(viewer)
        runner.start()
        clicked: list[str] = []
        with Browser(chromium_binary(), tmp_path / "profile") as browser:
            trial_id = _wait(lambda: _started(store_path), "the trial to start")
            deadline = time.monotonic() + 90
            while len(clicked) < 2 and time.monotonic() < deadline:
                # The live page reloads itself whenever a command is held or decided, so a question
                # asked of it may land mid-navigation: then it is asked again of the reloaded page.
                try:
                    browser.open(f"{url}trials/{trial_id}", 1200)
                    held = browser.evaluate("Array.from(document.querySelectorAll('#approvals .approval'))"
                                            ".map(a => [a.dataset.step, a.querySelector('pre').textContent])")
                except RuntimeError as e:
                    if not _navigated(e):
                        raise
                    continue
                # A page drawn just before a decision was stored may still show that command as held.
                held = [h for h in held if not _decided(store_path, trial_id, int(h[0]))]
                if not held:
                    time.sleep(0.3)
                    continue
                step, command = held[0]
                if not clicked:  # a form without this viewer's page token is refused, even from loopback
                    forged = httpx.post(f"{url}trials/{trial_id}/approvals/{step}", trust_env=False,
                                        data={"token": "x" * 32, "decision": "allowed"})
                    assert forged.status_code == 403 and "is not from this viewer" in forged.text
                button = "button.deny" if "rm -rf" in command else "button.approve"
                # The page may reload between the question and the click: the reloaded document, still
                # loading, may not have the button yet. Then nothing is clicked and the next turn tries again.
                try:
                    pressed = browser.evaluate(f"(b => b ? (b.click(), true) : false)(document.querySelector("
                                               f"'#approvals [data-step=\"{step}\"] {button}'))")
                except RuntimeError as e:  # the click's own form post may navigate before the answer
                    if not _navigated(e):
                        raise
                    pressed = True
                if not pressed:
                    continue
                # The click is done once the store holds the decision it posted.
                if _wait(lambda: _decided(store_path, trial_id, int(step)), "the decision", 10, fail=False):
                    clicked.append(f"{button} {command}")
        runner.join(timeout=120)
    finally:
        runner.join(timeout=180)
        stop_viewer(viewer)
    (result,) = outcome
    assert isinstance(result, TrialResult), result
    with EventStore(store_path, writable=False) as es:
        events = es.events(result.trial_id)
    assert_nothing_left(result, events)
    assert [c.split()[0] for c in clicked] == ["button.deny", "button.approve"]
    assert agent.wipe is not None and agent.wipe.exit_code == 126 and "person:viewer@127.0.0.1" in agent.wipe.stderr
    assert agent.repair is not None and agent.repair.exit_code == 0
    decided = {d.command.split()[0]: d for d in of(events, Trial.CommandDecided)}
    assert (decided["rm"].decision, decided["nodectl"].decision) == ("denied", "allowed")
    assert all(d.decided_by == "person:viewer@127.0.0.1" and d.waited_s > 0 for d in decided.values())
    assert result.outcome == "recovered", result.reason
    waited = decided["nodectl"].waited_s + decided["rm"].waited_s
    (recovered,) = of(events, Trial.RecoveryDetected)
    verified = of(events, Trial.ChaosVerified)[0].offset_s
    # Both waits lie between the fault's verification and recovery: neither counts in time to recover.
    assert result.time_to_recover_s == pytest.approx(recovered.criteria_met_offset_s - verified - waited, abs=1e-5)
    # ... and the read models leave out the very same waits: one time to recover everywhere
    # (under rules that count the trial's 1 s settle window as a recovery).
    rules_file = tmp_path / "settle-1s.yaml"
    rules_file.write_text((Path(__file__).parents[2] / "projections/rules/default.yaml").read_text()
                          .replace("min_settle_s: 2.0", "min_settle_s: 1.0"))
    rules = RuleSet.load(rules_file)
    models = ReadModels(store_path)
    models.score(rules)
    with models.connect() as con:
        (row,) = trial_scores(con, rules, trial_id=result.trial_id.hex)
    assert row["ttr_s"] == result.time_to_recover_s and row["ttd_s"] == result.time_to_detect_s


def _started(store_path: Path) -> str | None:
    with EventStore(store_path, writable=False) as es:
        ids = es.unfinished_trials()
    return ids[0].hex if ids else None


def _decided(store_path: Path, trial_id: str, step: int) -> str | None:
    with EventStore(store_path, writable=False) as es:
        approval = es.approval(uuid.UUID(trial_id), step)
    return approval.decision if approval is not None else None


def _navigated(e: RuntimeError) -> bool:
    """Whether DevTools refused a question because the page navigated while it was asked."""
    return any(m in str(e) for m in ("navigated or closed", "context was destroyed", "Cannot find context"))


def _wait(check: Any, what: str, timeout_s: float = 60, *, fail: bool = True) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    if fail:
        raise AssertionError(f"waited for {what}")
    return None


def test_the_form_is_refused_from_another_machine(store_path: Path) -> None:
    tid = uuid.uuid4()
    with EventStore(store_path) as es:
        es.save(Approval.request(tid, 3, "rm -rf /data", "destructive", 60))
    app = create_app(store_path)
    with TestClient(app) as client:  # the test client's address is not loopback
        answer = client.post(f"/trials/{tid.hex}/approvals/3", data={"token": app.state.approval_token,
                                                                     "decision": "allowed"})
    assert answer.status_code == 403 and "only from this machine" in answer.text
    with EventStore(store_path, writable=False) as es:
        approval = es.approval(tid, 3)
    assert approval is not None and approval.decision is None
