"""Campaigns on the command line: listed, counted by index, found by any id."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from opeval.events import Campaign
from opeval.projections.synthetic import make_trial, new_campaign
from opeval.store import EventStore
from tests.opeval_cli import opeval
from tests.projections.helpers import aborted_control


@pytest.fixture
def store(store_path: Path) -> tuple[Path, str, str]:
    """A resumed campaign: index 0 aborted once, then recovered or not; index 1 measured;
    index 2 never run; and a finished one-trial campaign."""
    with EventStore(store_path) as es:
        resumed = new_campaign("resumed", 3)
        es.save(resumed)
        es.save(resumed, aborted_control(resumed, 0))
        es.save(resumed, make_trial(resumed, 0, random.Random(1), seconds=12, seed=1),
                make_trial(resumed, 1, random.Random(2), seconds=12, seed=2))
        single = new_campaign("etcd/node_kill/none seed 9", 1)
        es.save(single)
        es.save(single, make_trial(single, 0, random.Random(3), seconds=12, seed=9, agent="none"))
        single.trigger_event(Campaign.CampaignFinished, outcomes={"not_recovered": 1})
        es.save(single)
    return store_path, resumed.id.hex, single.id.hex


def test_campaigns_count_trials_by_index_and_attempts_apart(store: tuple[Path, str, str]) -> None:
    path, resumed, single = store
    rows = {r["campaign_id"]: r for r in json.loads(opeval("campaigns", "--store", str(path), "--json").stdout)}
    assert rows[resumed]["done"] == 2 and rows[resumed]["trials_planned"] == 3 and rows[resumed]["aborted"] == 1
    assert rows[resumed]["status"] == "interrupted" and rows[single]["status"] == "finished"
    assert rows[single]["title"] == "etcd/node_kill/none seed 9" and rows[single]["file"] is None
    text = opeval("campaigns", "--store", str(path)).stdout
    line = next(line for line in text.splitlines() if line.startswith(resumed[:8]))
    assert line.split()[:5] == [resumed[:8], "resumed", "interrupted", "2/3", "1"], line


def test_list_has_a_campaign_column_and_filters_by_campaign(store: tuple[Path, str, str]) -> None:
    path, resumed, single = store
    everything = json.loads(opeval("list", "--store", str(path), "--json").stdout)
    assert len(everything) == 4
    mine = json.loads(opeval("list", "--campaign", resumed[:9], "--store", str(path), "--json").stdout)
    assert {r["campaign_id"].replace("-", "") for r in mine} == {resumed} and len(mine) == 3
    text = opeval("list", "--campaign", single[:8], "--store", str(path)).stdout.splitlines()
    assert text[0].split()[:2] == ["trial", "campaign"] and text[1].split()[1] == single[:8]
    # A trial's id names its campaign.
    by_trial = opeval("list", "--campaign", mine[0]["trial_id"][:8], "--store", str(path), "--json")
    assert len(json.loads(by_trial.stdout)) == 3 and "is a trial: using its campaign" in by_trial.stderr


def test_an_unknown_campaign_is_exit_code_4(store: tuple[Path, str, str]) -> None:
    path, _, _ = store
    proc = opeval("list", "--campaign", "0000000000", "--store", str(path))
    assert proc.returncode == 4 and proc.stderr.startswith("opeval: error: no campaign or trial id starts with")
