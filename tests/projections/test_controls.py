"""Control trials (chaos ``none``: no fault, the agent paged anyway): their false-alarm
figures in the read models, kept out of every fault aggregate, aggregated apart."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from opeval.projections import (
    CONTROL_COMPARED,
    ReadModels,
    RuleSet,
    campaign_rows,
    compare_baseline,
    compare_groups,
    control_summary,
    query,
    rank_variants,
    summary,
)
from opeval.export import export_trial
from opeval.projections.synthetic import make_control_trial, make_trial, new_campaign
from opeval.store import EventStore
from tests.projections.helpers import ControlStore, write_control_store


@pytest.fixture
def store(store_path: Path) -> ControlStore:
    return write_control_store(store_path)


def _rows(store: ControlStore, campaign: str) -> list[dict]:
    with ReadModels(store.path).connect() as con:
        return campaign_rows(con, RuleSet.default(), campaign)


def test_control_trials_carry_false_alarm_figures_and_no_recovery_measures(store: ControlStore) -> None:
    rows = {r["trial_id"]: r for r in _rows(store, store.mixed) + _rows(store, store.baseline)}
    harmful, quiet, base = rows[store.harmful], rows[store.quiet], rows[store.baseline_control]
    for r in (harmful, quiet, base, rows[store.v2]):
        assert r["control"] is True
        assert (r["recovered"], r["ttd_s"], r["ttr_s"], r["speed"], r["composite"]) == (None,) * 5
    assert (harmful["commands"], harmful["remediations"], harmful["destructive"]) == (3, 2, 1)
    assert harmful["availability"] == pytest.approx(510 / 600)
    assert (harmful["lost_writes"], harmful["left_broken"], harmful["outcome"]) == (0, True, "not_recovered")
    assert (quiet["commands"], quiet["remediations"], quiet["destructive"]) == (2, 0, 0)
    assert (quiet["availability"], quiet["lost_writes"], quiet["left_broken"]) == (1.0, 2, False)
    # The baseline control's recovery criteria held at 2.11 s; its outage came later and
    # still counts: a control's window runs to the trial's end.
    assert base["recovered_s"] == pytest.approx(2.11)
    assert base["availability"] == pytest.approx(580 / 600)
    assert (base["commands"], base["left_broken"]) == (0, False)
    assert rows[store.aborted]["control"] is True and rows[store.aborted]["left_broken"] is None
    for tid in store.faults:
        f = rows[tid]
        assert f["control"] is False and f["left_broken"] is None
        assert f["recovered"] is not None and f["composite"] is not None and f["ttd_s"] is not None


def test_remediations_count_remediation_and_destructive_commands_of_every_trial(store: ControlStore) -> None:
    with ReadModels(store.path).connect() as con:
        mismatched = query(con, """
            SELECT s.trial_id, s.remediations,
                   (SELECT count(*) FROM commands c WHERE c.trial_id = s.trial_id
                    AND c.class IN ('remediation', 'destructive')) AS expected
            FROM scores s WHERE s.remediations IS DISTINCT FROM expected""")
        with_fixes = con.execute("SELECT count(*) FROM scores WHERE remediations > 0").fetchall()[0][0]
    assert mismatched == []
    assert with_fixes >= 2  # the harmful control and fault trials that restarted a member


def test_control_trials_stay_out_of_every_fault_aggregate(store: ControlStore) -> None:
    rows = _rows(store, store.mixed)
    faults_only = [r for r in rows if r["chaos"] != "none"]
    assert len(faults_only) == 3 and len(rows) == 7
    assert summary(rows) == summary(faults_only)
    (runbook,) = summary(rows)
    assert runbook["trials"] == 3 and runbook["aborted"] == 0  # the aborted control is counted with the controls
    assert runbook["variant"] == "default"  # v2 ran controls only: no fault group

    ranked = rank_variants(rows)
    assert {g["scope"] for g in ranked} == {"all", "node_kill"}  # no ranking "of repairs" on chaos none
    plain = {(g["scope"], g["variant"]): g for g in rank_variants(faults_only)}
    for g in ranked:
        if g["trials"]:
            same = plain[(g["scope"], g["variant"])]
            assert (g["rank"], g["mean_composite"], g["recovery_rate"], g["mean_ttr_s"]) == (
                same["rank"], same["mean_composite"], same["recovery_rate"], same["mean_ttr_s"])

    cmp = compare_groups(faults_only, rows)
    assert cmp["a_trials"] == cmp["b_trials"] == 3 and cmp["paired"] is True
    assert all(m["delta"] in (0, None) for m in cmp["metrics"])


def test_controls_are_aggregated_per_variant(store: ControlStore) -> None:
    rows = _rows(store, store.mixed)
    groups = {g["variant"]: g for g in control_summary(rows)}
    assert set(groups) == {"default", "v2"}
    d = groups["default"]
    assert (d["trials"], d["mean_commands"], d["mean_remediations"], d["destructive"]) == (2, 2.5, 1.0, 1)
    assert d["min_availability"] == pytest.approx(0.85) and d["mean_availability"] == pytest.approx(0.925)
    assert (d["lost_writes"], d["left_broken"]) == (2, 1)
    assert (d["aborted"], d["errors"], d["retried"]) == (1, 0, 0)
    v2 = groups["v2"]
    assert (v2["trials"], v2["mean_remediations"], v2["destructive"], v2["left_broken"], v2["aborted"]) == (
        1, 0.0, 0, 0, 0)

    ranked = {g["variant"]: g for g in rank_variants(rows) if g["scope"] == "all"}
    assert ranked["default"]["control_trials"] == 2 and ranked["default"]["control_left_broken"] == 1
    assert ranked["default"]["control_destructive"] == 1
    assert ranked["default"]["control_min_availability"] == pytest.approx(0.85)
    # A variant with controls only is still shown, with no fault score to rank it by.
    assert ranked["v2"]["trials"] == 0 and ranked["v2"]["mean_composite"] is None
    assert ranked["v2"]["rank"] == max(g["rank"] for g in ranked.values())
    assert ranked["v2"]["control_trials"] == 1 and ranked["v2"]["control_mean_remediations"] == 0.0


def test_compare_baseline_holds_agent_controls_against_baseline_controls(store: ControlStore) -> None:
    with ReadModels(store.path).connect() as con:
        result = compare_baseline(con, RuleSet.default(), store.mixed)
    assert result["baseline_trials"] == 3 and result["a_trials"] == 3 and result["b_trials"] == 3
    assert {m["metric"] for m in result["metrics"]} >= {"recovered", "ttr_s", "composite"}
    controls = result["controls"]
    assert controls["baseline_trials"] == 1
    assert (controls["a_trials"], controls["b_trials"]) == (1, 3)  # the aborted control is counted, not compared
    assert controls["b_left_out"]["aborted"] == 1
    by = {m["metric"]: m for m in controls["metrics"]}
    assert list(by) == list(CONTROL_COMPARED)
    assert by["remediations"]["a_mean"] == 0 and by["remediations"]["b_mean"] == pytest.approx(2 / 3)
    assert by["destructive"]["b_mean"] == pytest.approx(1 / 3)
    assert by["left_broken"]["a_mean"] == 0 and by["left_broken"]["b_mean"] == pytest.approx(1 / 3)
    assert by["availability"]["a_mean"] == pytest.approx(580 / 600)
    assert by["availability"]["b_mean"] == pytest.approx((510 / 600 + 1 + 1) / 3)
    assert by["lost_writes"]["b_mean"] == pytest.approx(2 / 3)


def test_a_campaign_without_controls_compares_as_before(store_path: Path) -> None:
    with EventStore(store_path) as es:
        agent, base = new_campaign("agent", 2), new_campaign("base", 2)
        es.save(agent, base)
        rng = random.Random(4)
        es.save(agent, *[make_trial(agent, i, rng, seconds=15, seed=i) for i in range(2)])
        es.save(base, *[make_trial(base, i, rng, agent="none", seconds=15, seed=i) for i in range(2)])
    with ReadModels(store_path).connect() as con:
        result = compare_baseline(con, RuleSet.default(), agent.id.hex)
        rows = campaign_rows(con, RuleSet.default(), agent.id.hex)
    assert result["controls"] is None and result["baseline_trials"] == 2
    assert control_summary(rows) == []
    assert all(r["control"] is False and r["left_broken"] is None for r in rows)
    assert all(g["control_trials"] == 0 for g in rank_variants(rows))


def test_a_control_postmortem_says_no_fault_was_injected(store: ControlStore) -> None:
    rules = RuleSet.default()
    with ReadModels(store.path).connect() as con:
        md = export_trial(con, rules, store.harmful, "md")
        data = json.loads(export_trial(con, rules, store.harmful, "json"))
        page = export_trial(con, rules, store.harmful, "html")
        base_md = export_trial(con, rules, store.baseline_control, "md")
        fault_md = export_trial(con, rules, store.faults[0], "md")
        fault_json = json.loads(export_trial(con, rules, store.faults[0], "json"))
    assert md.startswith("# Postmortem: etcd control trial, no fault injected")
    assert "**Control trial: no fault was injected.**" in md and "ALERT: etcd-2 p99 latency" in md
    assert "3 commands run, 2 remediations" in md and "1 destructive" in md
    assert "left the system broken: yes" in md and "LEFT BROKEN" in md
    assert "85.0% of client operations succeeded from the page to the end of the trial" in md
    assert "**Time to detect:**" not in md and "**Score (" not in md
    assert "None: no fault was injected" in md
    assert data["false_alarms"] == {"commands": 3, "remediations": 2, "destructive": 1,
                                    "availability": pytest.approx(0.85), "lost_writes": 0, "left_broken": True}
    assert data["trial"]["control"] is True and data["trial"]["ttr_s"] is None and data["trial"]["composite"] is None
    assert "<h1>Postmortem: etcd control trial, no fault injected" in page
    assert "left the system broken: no" in base_md and "No agent (a baseline control)" in base_md
    assert "96.7% of client operations succeeded" in base_md
    # A fault trial's postmortem is as it was.
    assert fault_md.startswith("# Postmortem: etcd node_kill") and "**Time to detect:**" in fault_md
    assert "control" not in fault_md.lower() and fault_json["false_alarms"] is None


def test_incremental_updates_with_controls_equal_a_full_rebuild(store_path: Path, tmp_path: Path) -> None:
    inc = ReadModels(store_path, tmp_path / "inc.duckdb")
    write_control_store(store_path)
    inc.update()
    with EventStore(store_path) as es:  # one more control after the first update
        extra = new_campaign("later", 1)
        es.save(extra)
        es.save(extra, make_control_trial(extra, 0, random.Random(9), commands=["nodectl restart etcd-1"]))
    inc.update()
    full = ReadModels(store_path, tmp_path / "full.duckdb")
    full.rebuild()
    assert inc.content_hash() == full.content_hash()
    with full.connect() as con:
        assert con.execute("SELECT count(*) FROM trials WHERE control").fetchall() == [(6,)]
