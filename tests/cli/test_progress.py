"""Progress of long work: a campaign's display on a terminal, plain lines when piped."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from opeval.cli import main
from opeval.cli._progress import CampaignProgress, TrialStatusLine
from opeval.events import AgentSpec, ChaosSpec
from opeval.runner import PlannedTrial, TrialResult, TrialStatus
from opeval.testing import fake_plugins
from tests.runner.test_campaign_on_fakes import CAMPAIGN


def _trial(index: int, variant: str) -> PlannedTrial:
    return PlannedTrial(index=index, chaos=ChaosSpec(kind="node_kill", target="follower"),
                        agent=AgentSpec(name="runbook", variant=variant), seed=100 + index, repetition=0)


def _status(phase: str) -> TrialStatus:
    return TrialStatus(trial_id=uuid.uuid4(), phase=phase, elapsed_s=1.0)


def test_on_a_terminal_the_bar_counts_and_each_running_trial_names_its_phase() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    progress = CampaignProgress("quickstart", planned=4, parallel=2, console=console)
    progress.begin("0123456789abcdef", skipped=1)
    a, b = _trial(1, "runbook"), _trial(2, "baseline")
    progress.start(a)
    progress.start(b)
    progress.status(a, _status("agent at work"))
    progress.status(b, _status("waiting for recovery"))
    progress.done(a, TrialResult(uuid.uuid4(), "recovered", "ok", 0.1, 2.5))
    console.print(progress)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "recovered      #1 node_kill → follower runbook seed 101, TTR 2.5s" in text
    assert re.search(r"campaign quickstart .*2/4 done, 1 recovered, 1 running, 0:\d\d elapsed, ~\d+:\d\d left", text)
    assert re.search(r"#2 node_kill → follower baseline seed 102\s+waiting for recovery", text)
    assert "#1 node_kill → follower runbook seed 101  agent at work" not in text  # it has ended


def test_piped_every_change_is_a_plain_line() -> None:
    console = Console(file=io.StringIO(), width=80)
    progress = CampaignProgress("quickstart", planned=2, parallel=1, console=console)
    with progress:
        progress.begin("0123456789abcdef", skipped=0)
        t = _trial(0, "runbook")
        progress.start(t)
        for phase in ("warming up", "agent at work", "agent at work", "finished: recovered"):
            progress.status(t, _status(phase))
        progress.done(t, TrialResult(uuid.uuid4(), "recovered", "ok", 0.1, 2.5))
    lines = [re.sub(r"^\[\s*\d+:\d\d\] ", "", line) for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    last, summary = lines[-1].split("  (", 1)
    assert lines[:-1] + [last] == [
        "campaign quickstart (01234567): 2 trials, 1 at a time",
        "start   #0 node_kill → follower runbook seed 100",
        "        #0 phase: warming up",
        "        #0 phase: agent at work",
        "recovered      #0 node_kill → follower runbook seed 100, TTR 2.5s",
    ]
    assert re.fullmatch(r"1/2 done, 1 recovered, 0:\d\d elapsed, ~\d+:\d\d left\)", summary), summary


def test_a_trials_status_line_names_its_phase() -> None:
    console = Console(file=io.StringIO(), width=80)
    line = TrialStatusLine(quiet=False, console=console)
    for phase in ("starting cluster", "warming up", "warming up", "waiting for recovery"):
        line.update(_status(phase))
    assert [s.split("] ", 1)[1] for s in console.file.getvalue().splitlines()] == [  # type: ignore[attr-defined]
        "phase: starting cluster", "phase: warming up", "phase: waiting for recovery"]


@pytest.fixture
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


def test_a_piped_campaign_run_prints_its_progress_line_by_line(fakes: None, tmp_path: Path, store_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    with pytest.raises(SystemExit) as exited:
        main(["run", "campaign", str(tmp_path / "c.yaml"), "--store", str(store_path)])
    assert exited.value.code == 0
    err = capsys.readouterr().err
    assert re.search(r"campaign fakes \([0-9a-f]{8}\): 8 trials, 2 at a time", err)
    assert len(re.findall(r"\] start   #\d ", err)) == 8
    assert re.search(r"#\d phase: agent at work", err) and re.search(r"#\d phase: waiting for recovery", err)
    assert re.search(r"\] recovered +#\d .*\(\d/8 done, \d recovered", err)
    assert "(8/8 done, 6 recovered, 2 not_recovered, " in err
    assert re.search(r"see `.* analyze [0-9a-f]{8} --store ", err)
