"""Campaign files run for real: in parallel, interrupted with SIGINT, resumed without
running any trial twice; every shipped campaign file runs as it is."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opeval.events import Campaign
from opeval.store import EventStore
from tests.conftest import labelled_processes
from tests.opeval_cli import opeval

pytestmark = pytest.mark.integration
CAMPAIGNS = Path(__file__).parents[2] / "campaigns"


def _opeval(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "opeval", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _finished(store_path: Path) -> int:
    try:
        with EventStore(store_path, writable=False) as store:
            return sum(1 for _ in store.iter_events(topics=["opeval.trial:TrialFinished"]))
    except Exception:  # noqa: BLE001 - the store may not exist yet
        return 0


def _campaign_trials(store_path: Path) -> tuple[Campaign, list[tuple[int, str, str]]]:
    with EventStore(store_path, writable=False) as store:
        (cid,) = [e.originator_id for _, e in store.iter_events(topics=["opeval.campaign:CampaignStarted"])]
        campaign = store.campaign(cid)
        rows = [(campaign.trial_index[t], t.hex, store.trial(t).outcome) for t in campaign.trial_ids]
    return campaign, rows


def test_parallel_campaign_interrupted_then_resumed_runs_each_trial_once(store_path: Path, no_leaks: None) -> None:
    file = str(CAMPAIGNS / "process-faults.yaml")
    proc = _opeval("run", "campaign", file, "--parallel", "2", "--store", str(store_path))
    try:
        deadline = time.monotonic() + 120
        while _finished(store_path) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "--resume" in stderr
    campaign, first = _campaign_trials(store_path)
    assert not campaign.finished and campaign.trials_planned == 12
    assert all(outcome is not None for _, _, outcome in first)  # nothing left running
    assert "aborted" in {o for _, _, o in first}  # the trials running at the signal
    assert all(labelled_processes(tid) == [] for _, tid, _ in first)
    done_first = {i: tid for i, tid, o in first if o != "aborted"}
    assert 3 <= len(done_first) < 12

    resumed = _opeval("run", "campaign", file, "--resume", "--parallel", "2", "--store", str(store_path), "--json")
    out, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err
    summary = json.loads(out)
    assert summary["finished"] is True and summary["skipped_as_done"] == len(done_first)
    campaign, rows = _campaign_trials(store_path)
    assert campaign.finished
    real = [(i, tid) for i, tid, o in rows if o != "aborted"]
    assert sorted(i for i, _ in real) == list(range(12))  # every index exactly once: no duplicate trial
    assert {i: tid for i, tid in real if i in done_first} == done_first  # finished trials were not re-run
    with EventStore(store_path, writable=False) as store:
        kinds = {(store.trial(t).chaos.kind, store.trial(t).agent.variant)
                 for t in campaign.trial_ids}
    assert kinds == {(k, v) for k in ("node_kill", "pause", "quorum_loss") for v in ("runbook", "baseline")}

    again = _opeval("run", "campaign", file, "--resume", "--store", str(store_path))
    _, err = again.communicate(timeout=60)
    assert again.returncode == 2 and "no unfinished campaign 'process-faults'" in err


def test_the_quickstart_campaign_runs_as_it_is(store_path: Path, no_leaks: None) -> None:
    proc = _opeval("run", "campaign", str(CAMPAIGNS / "quickstart.yaml"), "--store", str(store_path), "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["finished"] is True and sum(summary["outcomes"].values()) == 4
    analyzed = opeval("analyze", summary["campaign_id"][:8], "--json", "--store", str(store_path), check=True)
    groups = {g["variant"]: g for g in json.loads(analyzed.stdout)["summary"]}
    assert set(groups) == {"runbook", "baseline"}
    assert groups["runbook"]["recovery_rate"] == 1.0 and groups["baseline"]["recovery_rate"] == 0.0
    ranking = json.loads(analyzed.stdout)["ranking"]
    best = {(g["scope"], g["rank"]): g["variant"] for g in ranking}
    assert best[("all", 1)] == "runbook" and best[("node_kill", 1)] == "runbook" and best[("all", 2)] == "baseline"
    top = next(g for g in ranking if g["scope"] == "all" and g["rank"] == 1)
    assert top["trials"] == 2 and top["ci_low"] <= top["mean_composite"] <= top["ci_high"]


def test_the_network_and_disk_campaign_runs_as_it_is(store_path: Path, no_leaks: None) -> None:
    proc = _opeval("run", "campaign", str(CAMPAIGNS / "network-and-disk.yaml"), "--store", str(store_path), "--json")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["finished"] is True and summary["outcomes"] == {"recovered": 6}, err
    _, rows = _campaign_trials(store_path)
    with EventStore(store_path, writable=False) as store:
        verified = [e for _, e in store.iter_events(topics=["opeval.trial:ChaosVerified"])]
    assert len(verified) == 6 and len(rows) == 6
