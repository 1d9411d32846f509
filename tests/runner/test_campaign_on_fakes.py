"""Campaigns on the fake subject and runtime: every index ends with one real outcome, faults
and controls mix, Ctrl-C aborts the running trials and --resume runs only what is left."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from opeval.runner import PlannedTrial, TrialResult, load_campaign, run_campaign
from opeval.store import EventStore
from opeval.testing import fake_plugins

CAMPAIGN = """\
name: fakes
subject: fake
runtime: fake
sandbox: none
repetitions: 2
parallel: 2
trial: {timeout_s: 5, settle_s: 0.2, warmup_s: 0.1, restart_policy: never}
chaos:
  - {kind: node_kill, target: follower}
  - {kind: none, params: {alert: "queue depth above 10k"}}
variants:
  - {name: rb, agent: runbook}
  - {name: base, agent: none}
"""


@pytest.fixture(autouse=True)
def fakes(no_leaks: None) -> Iterator[None]:
    with fake_plugins():
        yield


def test_every_index_ends_with_one_real_outcome(tmp_path: Path, store_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    plan = load_campaign(tmp_path / "c.yaml")
    with EventStore(store_path) as store:
        run = anyio.run(lambda: run_campaign(store, plan, handle_signals=False))
        campaign = store.campaign(run.campaign_id)
    assert run.finished and run.interrupted is None and len(run.ran) == 8
    outcomes = {(t.chaos.kind, t.agent.variant): r.outcome for t, r in run.ran}
    assert outcomes == {("node_kill", "rb"): "recovered", ("node_kill", "base"): "not_recovered",
                        ("none", "rb"): "recovered", ("none", "base"): "recovered"}
    assert sorted(campaign.trial_index.values()) == list(range(8))


def test_ctrl_c_aborts_the_running_trials_and_resume_runs_only_the_rest(tmp_path: Path, store_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(CAMPAIGN.replace("parallel: 2", "parallel: 1"))
    plan = load_campaign(tmp_path / "c.yaml")

    def interrupt_after_the_first(t: PlannedTrial, r: TrialResult) -> None:
        if t.index == 0:
            os.kill(os.getpid(), signal.SIGINT)

    with EventStore(store_path) as store:
        first = anyio.run(lambda: run_campaign(store, plan, on_trial_done=interrupt_after_the_first))
        assert first.interrupted == "SIGINT" and not first.finished
        done_first = {t.index for t, r in first.ran if r.outcome != "aborted"}
        assert 0 in done_first and len(done_first) < 8
        second = anyio.run(lambda: run_campaign(store, plan, resume=True, handle_signals=False))
        campaign = store.campaign(first.campaign_id)
        outcomes = [store.trial(tid).outcome for tid in campaign.trial_ids]
    assert second.campaign_id == first.campaign_id and second.finished
    assert sorted(second.skipped) == sorted(done_first)
    assert {t.index for t, _ in second.ran} == set(range(8)) - done_first
    real = [o for o in outcomes if o != "aborted"]
    assert len(real) == 8  # one real outcome per index; the aborted attempts stay in the log beside them
