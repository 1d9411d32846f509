"""The terminal view on the fake subject (fast): its fold of events, replay pacing, and
a person's decision given with a key reaching a waiting agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from textual.widgets import DataTable, Static

from opeval.agents import AgentResult, AgentTools, ApprovalPolicy, Incident
from opeval.cli import main
from opeval.events import AgentSpec, ChaosSpec, TrialConfig
from opeval.projections import RuleSet
from opeval.runner import TrialRequest
from opeval.sandbox import CommandResult
from opeval.store import EventStore, parse_store
from opeval.testing import fake_plugins, run_one_trial
from opeval.watch import TrialView, WatchApp, sparkline
from tests.opeval_cli import opeval

DEFAULT_RULES = Path(__file__).parents[2] / "projections/rules/default.yaml"


@pytest.fixture
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


class Scripted:
    name = "scripted"

    def __init__(self, commands: list[str]) -> None:
        self.commands = commands
        self.results: list[CommandResult] = []

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        tools.note("looking around")
        for c in self.commands:
            self.results.append(await tools.shell(c))
        return AgentResult("done", "scripted")


def request(approval: str | None = None) -> TrialRequest:
    cfg: dict[str, Any] = {"stop_on_recovery": False}
    if approval:
        cfg.update(ApprovalPolicy.parse(approval).config())
    return TrialRequest(subject="fake", runtime="fake", chaos=ChaosSpec(kind="node_kill"), sandbox="none", seed=3,
                        agent=AgentSpec(name="scripted", config=cfg),
                        config=TrialConfig(timeout_s=30, settle_s=0.3, warmup_s=0.1, poll_interval_s=0.02))


def test_the_view_folds_a_trial_and_badges_thrashing(fakes: None, store_path: Path) -> None:
    agent = Scripted(["nodectl status", "nodectl restart fake-1", "nodectl restart fake-1", "frobnicate"])
    result, events = run_one_trial(store_path, request(), agent=agent)
    view = TrialView(result.trial_id.hex)
    for e in events:
        view.apply(e)
    assert view.outcome == result.outcome and view.version == events[-1].originator_version
    assert view.ttr_s() == pytest.approx(result.time_to_recover_s, abs=1e-6)
    (injected,) = [e for e in events if type(e).__name__ == "ChaosInjected"]
    assert [m.name for m in view.members.values() if m.target] == [injected.target]
    kinds = [(s.kind, s.badge, s.thrashing) for s in view.steps]
    assert kinds[0] == ("note", "", False)
    assert kinds[1:] == [("command", "read_only", False), ("command", "remediation", False),
                         ("command", "remediation", True), ("command", "unknown", False)]
    assert all(m.healthy for m in view.members.values())  # the after-state, not the teardown
    assert sparkline([0.0, 0.5, 1.0], 10) == "▁▅█"


def test_the_view_marks_thrashing_under_the_rule_set_given(fakes: None, store_path: Path, tmp_path: Path) -> None:
    agent = Scripted(["nodectl restart fake-1", "nodectl restart fake-1"])
    result, _ = run_one_trial(store_path, request(), agent=agent)
    tight = tmp_path / "tight.yaml"  # repeats count as thrashing only within a microsecond
    tight.write_text(DEFAULT_RULES.read_text().replace("thrashing_window_s: 30.0", "thrashing_window_s: 0.000001"))

    async def marks(window: float | None) -> list[bool]:
        app = WatchApp(store_path, trial_id=result.trial_id, speed=0, poll_s=0.05, thrashing_window_s=window)
        async with app.run_test() as pilot:
            deadline = time.monotonic() + 10
            while (app.view is None or app.view.outcome is None) and time.monotonic() < deadline:
                await pilot.pause(0.1)
            assert app.view is not None
            return [s.thrashing for s in app.view.steps if s.kind == "command"]

    assert anyio.run(marks, None) == [False, True]  # the default rule set's 30 s window
    assert anyio.run(marks, RuleSet.load(tight).thresholds["thrashing_window_s"]) == [False, False]
    missing = opeval("watch", result.trial_id.hex, "--rules", str(tmp_path / "nope.yaml"), "--store", str(store_path))
    assert missing.returncode != 0 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr


@pytest.mark.integration
def test_run_tui_hands_the_rule_set_to_the_view_and_not_to_the_run(store_path: Path, tmp_path: Path,
                                                                     runtime_dir: Path, no_leaks: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``run --tui --rules FILE``: the view marks thrashing by FILE's window, and the trial
    itself runs (in its child process) without ``--tui`` and ``--rules``."""
    tight = tmp_path / "tight.yaml"
    tight.write_text(DEFAULT_RULES.read_text().replace("thrashing_window_s: 30.0", "thrashing_window_s: 0.25"))
    seen: list[float | None] = []

    def run(app: WatchApp) -> None:  # the screen itself is tested on a real terminal (test_watch_live.py)
        seen.append(app.thrashing_window_s)
        assert app.child is not None
        app.child.wait(timeout=120)  # the run has ended, so closing the view interrupts nothing

    monkeypatch.setattr(WatchApp, "run", run)
    with pytest.raises(SystemExit) as exited:
        main(["run", "--baseline", "--target", "follower", "--timeout", "20", "--store", str(store_path),
              "--tui", "--rules", str(tight)])
    assert exited.value.code == 0 and seen == [0.25]
    with EventStore(store_path, writable=False) as es:
        (finished,) = [e for _, e in es.iter_events(["opeval.trial:TrialFinished"])]
    assert finished.outcome == "recovered", finished.reason


def test_a_finished_trial_replays_at_the_chosen_speed(fakes: None, store_path: Path) -> None:
    result, events = run_one_trial(store_path, request(), agent=Scripted(["nodectl status"]))
    end = events[-1].offset_s

    async def drive() -> tuple[bool, bool, bool]:
        app = WatchApp(store_path, trial_id=result.trial_id, speed=end / 2.0, poll_s=0.05)  # the whole trial in 2s
        async with app.run_test() as pilot:
            await pilot.pause(0.3)
            early = app.view is not None and app.view.outcome is None and "replay" in str(
                app.query_one("#title", Static).content)
            await pilot.press("space")  # paused: nothing moves
            at = app.view.version if app.view else 0
            await pilot.pause(1.0)
            held = app.view is not None and app.view.version == at
            await pilot.press("space")
            deadline = time.monotonic() + 10
            while app.view is not None and app.view.outcome is None and time.monotonic() < deadline:
                await pilot.pause(0.1)
            return early, held, app.view is not None and app.view.outcome == result.outcome

    assert anyio.run(drive) == (True, True, True)


def test_y_in_the_view_approves_the_command_the_agent_waits_on(fakes: None, store_path: Path,
                                                                tmp_path: Path) -> None:
    victim = tmp_path / "scratch"
    victim.mkdir()
    EventStore(store_path).close()
    agent = Scripted([f"rm -rf {victim}"])
    ran: list[Any] = []
    runner = threading.Thread(target=lambda: ran.append(run_one_trial(store_path, request("ask"), agent=agent)))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with EventStore(store_path, writable=False) as es:
                proposed = [e for _, e in es.iter_events(["opeval.trial:CommandProposed"])]
            if proposed:
                break
            time.sleep(0.05)
        (p,) = proposed

        async def drive() -> str:
            app = WatchApp(store_path, trial_id=p.originator_id, poll_s=0.05, decider="person:test@terminal")
            async with app.run_test() as pilot:
                while app.view is None or not app.view.pending():
                    await pilot.pause(0.05)
                badges = [str(r[2]).strip() for r in (app.query_one("#steps", DataTable).get_row_at(i)
                                                      for i in range(app.query_one("#steps", DataTable).row_count))]
                assert "waiting" in badges
                await pilot.press("y")
                await pilot.pause(0.2)
                return app.message

        said = anyio.run(drive)
    finally:
        runner.join(timeout=60)
    assert "allowed by person:test@terminal" in said
    assert not victim.exists() and agent.results[0].exit_code == 0
    (_, events) = ran[0]
    (decided,) = [e for e in events if type(e).__name__ == "CommandDecided"]
    assert decided.decided_by == "person:test@terminal" and decided.waited_s > 0


@pytest.mark.integration
def test_the_view_follows_a_trial_recorded_in_postgresql(fakes: None, postgres_url: str) -> None:
    """A shared PostgreSQL log: the view, started first, finds the trial another process
    records there and follows it to its outcome."""
    location = parse_store(postgres_url)
    EventStore(location).close()
    ran: list[Any] = []

    async def drive() -> tuple[str | None, str]:
        app = WatchApp(location, follow_after=0, poll_s=0.05)
        async with app.run_test() as pilot:
            await pilot.pause(0.2)
            waiting = str(app.query_one("#title", Static).content)
            runner = threading.Thread(target=lambda: ran.append(
                run_one_trial(location, request(), agent=Scripted(["nodectl status"]))))  # type: ignore[arg-type]
            runner.start()
            deadline = time.monotonic() + 30
            while (app.view is None or app.view.outcome is None) and time.monotonic() < deadline:
                await pilot.pause(0.1)
            runner.join(timeout=60)
            return (app.view.outcome if app.view else None), waiting

    outcome, waiting = anyio.run(drive)
    assert "waiting for a trial to start in postgresql://" in waiting
    (result, events) = ran[0]
    assert outcome == result.outcome and outcome is not None
