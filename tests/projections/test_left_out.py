"""No trial is dropped silently: aborted trials are left out of the figures but counted
beside every aggregate, with errors, retries (a resumed index) and unisolated agents."""

from __future__ import annotations

import uuid
from pathlib import Path

from opeval.events import AgentSpec, Campaign, ChaosSpec, SandboxInfo, Trial, TrialConfig
from opeval.projections import ReadModels, RuleSet, campaign_rows, compare_groups, rank_variants, summary
from opeval.store import EventStore
from tests.viewer.helpers import _HARNESS, new_campaign

ISOLATED = SandboxInfo(mechanism="bubblewrap", version="bubblewrap 0.8.0")
OPEN = SandboxInfo(mechanism="none")


def _trial(es: EventStore, campaign: Campaign, index: int, outcome: str, sandbox: SandboxInfo | None,
           agent: str = "runbook") -> None:
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind="node_kill", target="follower"), agent=AgentSpec(name=agent, variant=agent), seed=index,
        config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0, sandbox=sandbox)
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=index)
    trial.record(Trial.ChaosVerified, effect="down", observations={}, offset_s=1.0)
    if outcome == "recovered":
        trial.record(Trial.RecoveryDetected, criteria_met_offset_s=3.0, held_s=2.0, offset_s=5.0)
    trial.record(Trial.TrialFinished, outcome=outcome, reason=outcome, time_to_detect_s=0.1,
                 time_to_recover_s=2.0 if outcome == "recovered" else None, offset_s=6.0)
    es.save(campaign, trial)


def test_aborted_errored_retried_and_unisolated_trials_are_counted_beside_every_aggregate(store_path: Path) -> None:
    with EventStore(store_path) as es:
        campaign = new_campaign("left-out", 4)
        es.save(campaign)
        _trial(es, campaign, 0, "recovered", ISOLATED)
        _trial(es, campaign, 1, "aborted", ISOLATED)  # the harness was killed: the index runs again
        _trial(es, campaign, 1, "not_recovered", ISOLATED)
        _trial(es, campaign, 2, "error", ISOLATED)
        _trial(es, campaign, 3, "recovered", OPEN)
        _trial(es, campaign, 4, "not_recovered", None, agent="none")
    rules = RuleSet.default()
    with ReadModels(store_path).connect() as con:
        rows = campaign_rows(con, rules, campaign.id.hex)
    assert len(rows) == 6  # every attempt is there, the aborted one too
    assert [r["unisolated"] for r in rows] == [False, False, False, False, True, False]

    (base, runbook) = summary(rows)
    # measured: the aborted attempt and the harness's error are not in any figure, nor failures
    assert runbook["trials"] == 3
    assert runbook["recovery_rate"] == 2 / 3
    assert (runbook["aborted"], runbook["errors"], runbook["retried"], runbook["unisolated"]) == (1, 1, 1, 1)
    assert (base["aborted"], base["errors"], base["retried"], base["unisolated"]) == (0, 0, 0, 0)

    ranked = {g["variant"]: g for g in rank_variants(rows) if g["scope"] == "all"}
    assert ranked["runbook"]["trials"] == 3 and ranked["runbook"]["aborted"] == 1
    assert ranked["runbook"]["retried"] == 1 and ranked["runbook"]["unisolated"] == 1

    cmp = compare_groups([r for r in rows if r["agent"] == "none"], [r for r in rows if r["agent"] == "runbook"])
    assert cmp["b_trials"] == 3 and cmp["b_left_out"]["aborted"] == 1 and cmp["b_left_out"]["errors"] == 1


def test_read_models_of_a_replaced_store_are_rebuilt(store_path: Path, tmp_path: Path) -> None:
    with EventStore(store_path) as es:
        first = new_campaign("first", 1)
        es.save(first)
        _trial(es, first, 0, "recovered", ISOLATED)
    models = tmp_path / "models.duckdb"
    with ReadModels(store_path, models).connect() as con:
        assert con.execute("SELECT count(*) FROM trials").fetchall() == [(1,)]
    store_path.unlink()
    with EventStore(store_path) as es:  # a new store at the same path
        second = new_campaign("second", 2)
        es.save(second)
        _trial(es, second, 0, "error", None)
        _trial(es, second, 1, "error", None)
    with ReadModels(store_path, models).connect() as con:
        assert con.execute("SELECT campaign_id, count(*) FROM trials GROUP BY ALL").fetchall() == [(second.id.hex, 2)]


def test_the_viewer_shows_what_each_aggregate_left_out(store_path: Path) -> None:
    from litestar.testing import TestClient

    from opeval.viewer import create_app

    with EventStore(store_path) as es:
        campaign = new_campaign("left-out-viewer", 2)
        es.save(campaign)
        _trial(es, campaign, 0, "aborted", ISOLATED)
        _trial(es, campaign, 0, "recovered", OPEN)
        _trial(es, campaign, 1, "recovered", ISOLATED, agent="none")
    with TestClient(app=create_app(store_path)) as client:
        page = client.get(f"/campaigns/{campaign.id.hex[:8]}")
        api = client.get(f"/api/campaigns/{campaign.id.hex[:8]}").json()
    assert page.status_code == 200
    assert "unisolated</span>" in page.text  # the unisolated trial is marked in the trials table
    assert "aborted, error (the harness failed) or still running trials are left out of every figure" in page.text
    runbook = next(g for g in api["summary"] if g["agent"] == "runbook")
    assert runbook["trials"] == 1
    assert runbook["left_out"] == {"aborted": 1, "running": 0, "errors": 0, "retried": 1, "unisolated": 1}
    ranked = next(g for g in api["ranking"] if g["agent"] == "runbook" and g["scope"] == "all")
    assert (ranked["aborted"], ranked["retried"], ranked["unisolated"]) == (1, 1, 1)
