"""A real trial's HTML postmortem, written by ``opeval export``, rendered by headless
Chromium: what the browser builds is a document with a title, a timeline table whose
rows are the trial's events, and the agent's commands; the trace of the same trial opens
as JSON with a slice per command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opeval.events import Trial
from opeval.store import EventStore
from tests.export.test_formats import assert_nested, parse
from tests.opeval_cli import opeval
from tests.viewer.test_e2e import Chromium, chromium_binary

pytestmark = pytest.mark.integration


def test_the_html_export_of_a_real_trial_renders_in_chromium(store_path: Path, tmp_path: Path,
                                                              no_leaks: None) -> None:
    run = json.loads(opeval("run", "--agent", "runbook", "--restart-policy", "never", "--seed", "5",
                            "--timeout", "30", "--store", str(store_path), "--json", check=True).stdout)
    trial = run["trial_id"].replace("-", "")
    html, trace = tmp_path / "postmortem.html", tmp_path / "trace.json"
    opeval("export", trial, "--format", "html", "--output", str(html), "--store", str(store_path), check=True)
    opeval("export", trial, "--format", "trace", "--output", str(trace), "--store", str(store_path), check=True)
    with EventStore(store_path, writable=False) as es:
        events = es.events(next(e.originator_id for _, e in es.iter_events()
                                if isinstance(e, Trial.TrialStarted)))
    commands = [e for e in events if isinstance(e, Trial.AgentCommandExecuted)]
    assert commands, "the runbook ran no command"

    dom = Chromium(chromium_binary(), tmp_path / "profile").dom(html.as_uri())
    page = parse(dom)
    assert page.tags[:2] == ["html", "head"] and "body" in page.tags and "h1" in page.tags
    (timeline,) = page.tables
    assert timeline[0] == ["time", "event", "what happened"]
    kinds = [row[1] for row in timeline[1:]]
    assert kinds[0] == "TrialStarted" and kinds[-1] == "TrialFinished"
    assert kinds.count("AgentCommandExecuted") == len(commands)
    assert all(row[2] for row in timeline[1:]) and all(len(row) == 3 for row in timeline)
    text = "".join(page.text)
    assert f"trial {trial[:8]}" in text and "What the agent saw and did" in text
    assert all(c.command in text for c in commands)

    traced = json.loads(trace.read_text())["traceEvents"]
    assert_nested(traced)
    slices = [e for e in traced if e["ph"] == "X" and e["cat"] == "command"]
    assert [s["name"] for s in slices] == [c.command for c in commands]
