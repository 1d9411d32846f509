"""`opeval analyze`, `compare-baseline` and `export` on a campaign of fault and control trials."""

from __future__ import annotations

import json
import random
from functools import partial
from pathlib import Path

import pytest

from opeval.projections import file_digest
from opeval.projections.synthetic import make_control_trial, new_campaign
from opeval.store import EventStore
from tests.opeval_cli import opeval as run_opeval
from tests.projections.helpers import ControlStore, write_control_store

opeval = partial(run_opeval, columns=250)  # wide enough for every column of the tables


@pytest.fixture
def store(store_path: Path) -> ControlStore:
    return write_control_store(store_path)


def test_analyze_reports_controls_apart_from_fault_trials(store: ControlStore) -> None:
    s = ["--store", str(store.path)]
    before = file_digest(store.path)
    data = json.loads(opeval("analyze", store.mixed[:8], *s, "--json").stdout)
    assert len(data["trials"]) == 7
    assert sorted(r["trial_id"] for r in data["trials"] if r["control"]) == sorted(
        [store.harmful, store.quiet, store.v2, store.aborted])
    (runbook,) = data["summary"]
    assert runbook["trials"] == 3 and runbook["aborted"] == 0
    controls = {g["variant"]: g for g in data["controls"]}
    d = controls["default"]
    assert (d["trials"], d["mean_commands"], d["mean_remediations"], d["destructive"], d["lost_writes"],
            d["left_broken"], d["aborted"]) == (2, 2.5, 1.0, 1, 2, 1, 1)
    assert d["min_availability"] == pytest.approx(0.85) and d["mean_availability"] == pytest.approx(0.925)
    assert controls["v2"]["trials"] == 1 and controls["v2"]["left_broken"] == 0
    assert {g["scope"] for g in data["ranking"]} == {"all", "node_kill"}
    ranked = {g["variant"]: g for g in data["ranking"] if g["scope"] == "all"}
    assert ranked["default"]["control_left_broken"] == 1 and ranked["v2"]["control_trials"] == 1

    text = opeval("analyze", store.mixed[:8], *s).stdout
    assert "controls (no fault): what a false alarm cost" in text
    assert "control (no fault)" in text and "(left broken)" in text
    assert "fault trials" in text and "ctl broken" in text
    assert file_digest(store.path) == before


def test_compare_baseline_shows_the_harm_each_did_on_controls(store: ControlStore) -> None:
    s = ["--store", str(store.path)]
    data = json.loads(opeval("compare-baseline", store.mixed[:8], *s, "--json").stdout)
    assert data["baseline_trials"] == 3 and data["a_trials"] == 3
    controls = data["controls"]
    assert (controls["baseline_trials"], controls["a_trials"], controls["b_trials"]) == (1, 1, 3)
    by = {m["metric"]: m for m in controls["metrics"]}
    assert by["left_broken"]["b_mean"] == pytest.approx(1 / 3) and by["left_broken"]["a_mean"] == 0
    assert by["remediations"]["b_mean"] == pytest.approx(2 / 3)

    text = opeval("compare-baseline", store.mixed[:8], *s).stdout
    assert "controls (no fault injected): the harm each did" in text
    assert "left_broken" in text and "remediations" in text and "composite" in text


def test_a_controls_only_campaign_against_a_store_without_baseline_controls(store_path: Path) -> None:
    with EventStore(store_path) as es:
        c = new_campaign("controls only", 1)
        es.save(c)
        es.save(c, make_control_trial(c, 0, random.Random(1)))
    r = opeval("compare-baseline", c.id.hex[:8], "--store", str(store_path))
    assert r.returncode != 0 and "no baseline trials for none --target none" in r.stderr
    text = opeval("analyze", c.id.hex[:8], "--store", str(store_path)).stdout
    assert "controls (no fault)" in text and "recovery rate" not in text


def test_export_of_a_control_trial(store: ControlStore, tmp_path: Path) -> None:
    s = ["--store", str(store.path)]
    md = opeval("export", store.harmful[:8], *s).stdout
    assert md.startswith("# Postmortem: etcd control trial, no fault injected")
    assert "3 commands run, 2 remediations" in md and "**Time to detect:**" not in md
    data = json.loads(opeval("export", store.quiet[:8], "--format", "json", *s).stdout)
    assert data["false_alarms"]["lost_writes"] == 2 and data["false_alarms"]["left_broken"] is False


def test_list_gives_control_trials_no_time_to_recover(store: ControlStore) -> None:
    rows = {r["trial_id"].replace("-", ""): r for r in json.loads(opeval("list", "--store", str(store.path),
                                                                          "--json").stdout)}
    assert rows[store.quiet]["outcome"] == "recovered" and rows[store.quiet]["time_to_recover_s"] is None
    assert rows[store.baseline_control]["time_to_recover_s"] is None
    recovered_faults = [rows[t] for t in store.faults if rows[t]["outcome"] == "recovered"]
    assert all(r["time_to_recover_s"] is not None for r in recovered_faults)


def test_rescore_leaves_control_trials_unscored(store: ControlStore, tmp_path: Path) -> None:
    rules = tmp_path / "strict.yaml"
    text = (Path(__file__).parents[2] / "projections/rules/default.yaml").read_text()
    rules.write_text(text.replace("min_settle_s: 2.0", "min_settle_s: 9.0"))
    r = opeval("rescore", store.mixed[:8], "--rules", str(rules), "--store", str(store.path), "--json")
    assert r.returncode == 0, r.stderr
    rows = {t["trial_id"]: t for t in json.loads(r.stdout)["trials"]}
    assert len(rows) == 7
    control = rows[store.harmful]
    assert (control["old_score"], control["new_score"], control["delta"], control["new_recovered"]) == (
        None, None, None, None)
    assert all(rows[t]["delta"] is not None for t in store.faults)
