"""The analysis commands end to end on a store of (synthetic) trials."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from opeval.projections import file_digest
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore
from tests.opeval_cli import opeval


@pytest.fixture
def store(store_path: Path) -> tuple[Path, str, str, str]:
    seeds = list(range(10))
    with EventStore(store_path) as es:
        agent = write_campaign(es, "agent", 10, rng=random.Random(1), seconds=15, seeds=seeds)
        base = write_campaign(es, "base", 10, rng=random.Random(2), seconds=15, seeds=seeds, agent="none")
        campaign = new_campaign("hostile", 1)
        es.save(campaign)
        trial = make_trial(campaign, 0, random.Random(3), seconds=15,
                           command_output="<script>alert('owned')</script>\n")
        es.save(campaign, trial)
    return store_path, agent.id.hex, base.id.hex, trial.id.hex


def test_analyze_compare_rescore_export(store: tuple[Path, str, str, str], tmp_path: Path) -> None:
    path, agent, base, hostile = store
    s = ["--store", str(path)]
    before = file_digest(path)

    analyzed = json.loads(opeval("analyze", agent[:8], *s, "--json").stdout)
    assert len(analyzed["trials"]) == 10 and analyzed["summary"][0]["agent"] == "runbook"
    assert "TTR" in opeval("analyze", agent[:8], *s).stdout

    compared = json.loads(opeval("compare", base[:8], agent[:8], *s, "--json").stdout)
    assert compared["paired"] is True
    assert {m["metric"] for m in compared["metrics"]} >= {"recovered", "ttr_s", "composite"}

    vs_base = json.loads(opeval("compare-baseline", agent[:8], *s, "--json").stdout)
    assert vs_base["baseline_trials"] == 10 and vs_base["a_trials"] == 10

    rules = tmp_path / "strict.yaml"
    text = (Path(__file__).parents[2] / "projections/rules/default.yaml").read_text()
    rules.write_text(text.replace("min_settle_s: 2.0", "min_settle_s: 9.0"))
    rescored = json.loads(opeval("rescore", "--all", "--rules", str(rules), *s, "--json").stdout)
    assert rescored["old_rule_set"] != rescored["new_rule_set"]
    assert len(rescored["trials"]) == 21
    assert not any(r["new_recovered"] for r in rescored["trials"])
    assert any(r["old_recovered"] for r in rescored["trials"])

    md = opeval("export", hostile[:8], *s).stdout
    assert md.startswith("# Postmortem: etcd node_kill") and "## Timeline" in md and "## Root cause" in md
    page = tmp_path / "pm.html"
    assert opeval("export", hostile[:8], "--format", "html", "--output", str(page), *s).returncode == 0
    html = page.read_text()
    assert "<script>" not in html and "&lt;script&gt;alert('owned')&lt;/script&gt;" in html
    data = json.loads(opeval("export", hostile[:8], "--format", "json", *s).stdout)
    assert data["trial"]["trial_id"] == hostile and data["events"][0]["type"] == "TrialStarted"
    trace = json.loads(opeval("export", hostile[:8], "--format", "trace", *s).stdout)
    assert any(e["ph"] == "X" and e["cat"] == "command" for e in trace["traceEvents"])

    assert file_digest(path) == before  # analysis never wrote to the event store


def test_analysis_input_errors(store: tuple[Path, str, str, str], tmp_path: Path) -> None:
    path, agent, _, hostile = store
    s = ["--store", str(path)]
    for args, code, fragment in [
        (["export", agent[:8]], 4, f"{agent[:8]!r} is campaign 'agent' of 10 trials, not a trial"),
        (["analyze", "f" * 33], 4, "no campaign or trial id starts with"),
        (["rescore", "--rules", str(tmp_path / "none.yaml"), "--all"], 2, "cannot read rule set"),
        (["rescore", agent[:8], "--all", "--rules", "x"], 2, "give a campaign or --all"),
    ]:
        proc = opeval(*args, *s)
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
        assert fragment in proc.stderr, proc.stderr


def test_any_id_works_where_the_other_kind_is_asked_for(store: tuple[Path, str, str, str]) -> None:
    """A campaign command given a trial works on its campaign; a trial command given a
    one-trial campaign works on its trial; both say so on standard error."""
    path, _, _, hostile = store
    s = ["--store", str(path)]
    listed = json.loads(opeval("list", *s, "--json").stdout)
    hostile_campaign = next(r["campaign_id"] for r in listed if r["trial_id"].replace("-", "") == hostile)
    by_trial = opeval("analyze", hostile[:8], *s, "--json")
    assert by_trial.returncode == 0, by_trial.stderr
    assert json.loads(by_trial.stdout)["campaign_id"] == hostile_campaign.replace("-", "")
    assert f"{hostile[:8]} is a trial: using its campaign {hostile_campaign[:8]}" in by_trial.stderr
    by_campaign = opeval("export", hostile_campaign[:10], *s, "--format", "json")
    assert by_campaign.returncode == 0, by_campaign.stderr
    assert json.loads(by_campaign.stdout)["trial"]["trial_id"] == hostile
    assert "is a one-trial campaign: using its trial" in by_campaign.stderr
