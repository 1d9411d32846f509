"""The Markdown postmortem speaks of the responder there was: an agent, or none."""

from __future__ import annotations

import random
from pathlib import Path

from opeval.projections import ReadModels, RuleSet, export_trial
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
