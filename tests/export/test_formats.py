"""The export formats of one synthetic trial: the Markdown timeline is the CLI's
``describe``, the HTML page a document with a timeline ``<table>`` and nothing an agent
wrote as markup, the trace valid Chrome trace-event JSON with a slice per command."""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from opeval.events import Trial, describe
from opeval.export import FORMATS, export_trial, load_postmortem, md_cell, md_text, timeline
from opeval.projections import ReadModels, RuleSet
from opeval.projections.synthetic import make_control_trial, make_trial, new_campaign
from opeval.store import EventStore

HOSTILE = "Done | maybe.\n```\n</pre><script>alert(1)</script>\n```\n| a | b |\n# not a heading *not bold*"


class Page(HTMLParser):
    """The parts of an HTML document the tests look at: tags seen, tables' rows of cells, text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def assert_nested(events: list[dict[str, Any]]) -> None:
    """The slices of each track nest or follow each other, as trace viewers require."""
    for tid in {e["tid"] for e in events if e["ph"] == "X"}:
        spans = sorted(((e["ts"], e["ts"] + e["dur"]) for e in events if e["ph"] == "X" and e["tid"] == tid),
                       key=lambda sp: (sp[0], -sp[1]))
        open_spans: list[tuple[int, int]] = []
        for start, end in spans:
            while open_spans and open_spans[-1][1] <= start:
                open_spans.pop()
            assert not open_spans or end <= open_spans[-1][1], (tid, start, end, open_spans)
            open_spans.append((start, end))


@pytest.fixture
def trials(store_path: Path) -> dict[str, Any]:
    with EventStore(store_path) as es:
        campaign = new_campaign("export", 4)
        es.save(campaign)
        busy = make_trial(campaign, 0, random.Random(5), agent="runbook", seconds=20, reasoning=HOSTILE,
                          command_output="<script>alert(2)</script>\n```\n")
        silent = make_trial(campaign, 1, random.Random(3), agent="anthropic", seconds=12, commands=[],
                            reasoning="I think:\n```\n<b>etcd</b> | is down\n", summary=HOSTILE)
        baseline = make_trial(campaign, 2, random.Random(1), agent="none", seconds=12)
        control = make_control_trial(campaign, 3, random.Random(7))
        es.save(campaign, busy, silent, baseline, control)
    models = ReadModels(store_path)
    models.update()
    with models.connect() as con:
        rules = RuleSet.default()
        out: dict[str, Any] = {}
        for name, trial in (("busy", busy), ("silent", silent), ("baseline", baseline), ("control", control)):
            out[name] = {fmt: export_trial(con, rules, trial.id.hex, fmt) for fmt in FORMATS}
            out[name]["pm"] = load_postmortem(con, rules, trial.id.hex)
    return out


def test_the_markdown_timeline_is_the_cli_s_describe(trials: dict[str, Any]) -> None:
    pm = trials["busy"]["pm"]
    md = trials["busy"]["md"]
    rows = timeline(pm)
    described = {(float(e.offset_s), type(e).__name__, describe(e, pm.words)) for e in pm.events}
    assert rows and all(row in described for row in rows)
    for offset, name, text in rows:
        assert f"| {offset:8.3f} s | {name} | {md_cell(md_text(text))} |" in md
    assert any(name == "AgentCommandExecuted" for _, name, _ in rows)
    assert not any(name in ("WorkloadSampled", "AgentUsage") for _, name, _ in rows)
    # every table row keeps its three cells, whatever the agent wrote
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(len(line.replace("\\|", "").split("|")) == 5 for line in table), table


def test_what_the_agent_wrote_is_text_in_markdown_and_html(trials: dict[str, Any]) -> None:
    for name in ("busy", "silent"):
        page = parse(trials[name]["html"])
        assert "script" not in page.tags and "img" not in page.tags and "b" not in page.tags
        text = "".join(page.text)
        assert "<script>alert(1)</script>" in text or name == "silent" and "<b>etcd</b> | is down" in text
    md = trials["silent"]["md"]
    # the reasoning is shown, in a fence its own backticks cannot close
    assert "````text" in md and "   <b>etcd</b> | is down" in md
    assert "The agent ran no command." in md and "The agent ran no command." not in trials["busy"]["md"]
    page = parse(trials["silent"]["html"])
    assert "The agent ran no command." in "".join(page.text)
    assert "# not a heading *not bold*" in "".join(page.text)  # the summary's Markdown stays literal
    assert "No agent: the cluster was left to heal itself." in trials["baseline"]["md"]


def test_the_html_page_is_a_document_with_a_timeline_table(trials: dict[str, Any]) -> None:
    for name in ("busy", "silent", "baseline", "control"):
        html, pm = trials[name]["html"], trials[name]["pm"]
        assert html.startswith("<!doctype html>")
        page = parse(html)
        assert page.tags[:3] == ["html", "head", "meta"] and "h1" in page.tags
        (table,) = page.tables
        assert table[0] == ["time", "event", "what happened"]
        assert [row[1] for row in table[1:]] == [n for _, n, _ in timeline(pm)]
        assert all(len(row) == 3 for row in table)
    control = parse(trials["control"]["html"])
    assert any("no fault injected (a control trial)" in row[2] for row in control.tables[0][1:])


def test_the_trace_has_every_command_as_a_slice_and_every_member_as_a_track(trials: dict[str, Any]) -> None:
    for name in ("busy", "silent", "baseline", "control"):
        trace = json.loads(trials[name]["trace"])
        pm = trials[name]["pm"]
        events = trace["traceEvents"]
        assert events and {e["ph"] for e in events} <= {"X", "i", "M"}
        assert all(isinstance(e["ts"], int) and e["ts"] >= 0 for e in events if e["ph"] != "M")
        assert all(e["dur"] >= 0 for e in events if e["ph"] == "X")
        tracks = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
        members = {m.name for e in pm.events if isinstance(e, Trial.ClusterUp) for m in e.members}
        assert {f"member {m}" for m in members} <= set(tracks.values())
        assert {"phases", "faults"} <= set(tracks.values())
        member_tid = {v: k for k, v in tracks.items()}
        for m in members:
            states = [e for e in events if e["ph"] == "X" and e["tid"] == member_tid[f"member {m}"]]
            assert states and {s["name"] for s in states} <= {"up", "unhealthy", "down"}
        assert_nested(events)
        executed = [e for e in pm.events if isinstance(e, Trial.AgentCommandExecuted)]
        slices = [e for e in events if e["ph"] == "X" and e["cat"] == "command"]
        assert len(slices) == len(executed)
        for e, s in zip(executed, slices, strict=True):
            assert s["name"] == e.command and s["args"]["exit_code"] == e.exit_code
            assert s["ts"] == round(e.started_offset_s * 1e6)
            assert s["dur"] == round((e.started_offset_s + e.duration_s) * 1e6) - round(e.started_offset_s * 1e6)
            assert tracks[s["tid"]] == "agent commands"
    busy = json.loads(trials["busy"]["trace"])["traceEvents"]
    victim = trials["busy"]["pm"].trial["victim"]
    tid = next(e["tid"] for e in busy if e["ph"] == "M" and e["args"].get("name") == f"member {victim}")
    assert "down" in [e["name"] for e in busy if e["ph"] == "X" and e["tid"] == tid]
    assert any(e["ph"] == "X" and e["cat"] == "fault" and e["name"].startswith("node_kill on ") for e in busy)
    assert [e["name"] for e in busy if e["ph"] == "X" and e["cat"] == "phase"][:2] == ["start-up", "steady state"]
