"""The Markdown postmortem speaks of the responder there was: an agent, or none."""

from __future__ import annotations

import random
from pathlib import Path

from opeval.export import export_trial
from opeval.projections import ReadModels, RuleSet
from opeval.projections.synthetic import make_trial, new_campaign
from opeval.store import EventStore


def test_a_trial_without_an_agent_has_no_agent_figures(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign = new_campaign("pair", 2)
        es.save(campaign)
        baseline = make_trial(campaign, 0, random.Random(1), agent="none", seconds=12)
        agent = make_trial(campaign, 1, random.Random(2), agent="runbook", seconds=12)
        es.save(campaign, baseline, agent)
    models = ReadModels(store_path)
    models.update()
    with models.connect() as con:
        base_md = export_trial(con, RuleSet.default(), baseline.id.hex, "md")
        agent_md = export_trial(con, RuleSet.default(), agent.id.hex, "md")
    assert "first diagnostic" not in base_md and "first remediation" not in base_md
    assert "No agent responded: recovery, if any, was the system's own (restart policy never)." in base_md
    assert "Agent first diagnostic after " in agent_md and "No agent responded" not in agent_md


HOSTILE = "Fixed it | mostly.\n```\n</pre><script>alert(1)</script>\n```\n| a | b |\n*not bold* [link](http://x)"


def test_what_an_agent_writes_is_escaped_and_its_reasoning_shown(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign = new_campaign("hostile", 2)
        es.save(campaign)
        silent = make_trial(campaign, 0, random.Random(3), agent="anthropic", seconds=12, commands=[],
                            reasoning="I think:\n```\n<b>etcd</b> | is down\n", summary=HOSTILE)
        busy = make_trial(campaign, 1, random.Random(4), agent="openai", seconds=40,
                          commands=["echo '|' `date` ``x``"], command_output="```\n<img src=x onerror=alert(1)>\n")
        es.save(campaign, silent, busy)
    models = ReadModels(store_path)
    models.update()
    with models.connect() as con:
        md = export_trial(con, RuleSet.default(), silent.id.hex, "md")
        page = export_trial(con, RuleSet.default(), silent.id.hex, "html")
        busy_md = export_trial(con, RuleSet.default(), busy.id.hex, "md")
        busy_page = export_trial(con, RuleSet.default(), busy.id.hex, "html")
    assert "The agent ran no command." in md and "No agent: the cluster was left to heal itself." not in md
    # every table row still has its three cells: the summary's | and newlines did not split it
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert all(len([c for c in line.replace("\\|", "").split("|")]) == 5 for line in rows), rows
    assert "end\\_turn after 1 steps (no verdict): Fixed it \\| mostly." in md
    # the reasoning is there, inside a fence its own backticks cannot close
    assert "````text" in md and "   <b>etcd</b> | is down" in md
    assert "it called no tool: no tool called" in md
    assert "claude-sonnet-4-6: 1 calls, 4590 tokens (1500 input, 3000 cache read, 0 cache write, 90 output)" in md
    for doc in (page, busy_page):
        assert "<script>" not in doc and "<img" not in doc and "<b>etcd" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;etcd&lt;/b&gt; | is down" in page
    assert "<table>" in page and page.count("<tr>") == len(rows) - 1  # every row but the --- line, none broken
    assert "The agent ran no command." not in busy_md
    assert "``` echo '|' `date` ``x`` ```" in busy_md or "``` echo '\\|' `date` ``x`` ```" in busy_md
    assert "&lt;img src=x onerror=alert(1)&gt;" in busy_page
