"""The CLI end to end on a real cluster: run, list, show, and interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opeval.events import Trial
from opeval.store import EventStore
from tests.conftest import labelled_processes
from tests.opeval_cli import opeval

pytestmark = pytest.mark.integration


def test_run_list_show(store_path: Path, no_leaks: None) -> None:
    proc = opeval("run", "--baseline", "--target", "follower", "--seed", "11", "--settle", "1",
                  "--store", str(store_path), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "recovered"
    trial_id = result["trial_id"]
    assert labelled_processes(trial_id.replace("-", "")) == []

    listed = json.loads(opeval("list", "--store", str(store_path), "--json").stdout)
    assert [r["trial_id"] for r in listed] == [trial_id]
    assert listed[0]["seed"] == 11 and listed[0]["outcome"] == "recovered"

    shown = opeval("show", trial_id[:8], "--store", str(store_path))
    assert shown.returncode == 0
    for word in ("ChaosVerified", "RecoveryDetected", "DataSafetyChecked", "RECOVERED"):
        assert word in shown.stdout
    as_json = json.loads(opeval("show", trial_id[:8], "--store", str(store_path), "--json").stdout)
    assert as_json["events"][0]["type"] == "TrialStarted"
    assert as_json["events"][-1]["type"] == "TrialFinished"

    campaign = listed[0]["campaign_id"]
    shown_campaign = json.loads(opeval("show", campaign[:8], "--store", str(store_path), "--json").stdout)
    assert shown_campaign["kind"] == "campaign"
    assert [e["type"] for e in shown_campaign["events"]] == ["CampaignStarted", "TrialScheduled", "CampaignFinished"]


def _wait_for_event(store_path: Path, topic: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store_path.exists():
            try:
                with EventStore(store_path, writable=False) as store:
                    if list(store.iter_events(topics=[topic])):
                        return
            except Exception:  # noqa: BLE001 - the store may be mid-creation
                pass
        time.sleep(0.1)
    raise AssertionError(f"{topic} never appeared")


def _start(store_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "opeval", "run", "--baseline", "--restart-policy", "never", "--timeout", "120",
         "--store", str(store_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )


def _trial(store_path: Path) -> tuple[str, list[object]]:
    with EventStore(store_path, writable=False) as store:
        (tid,) = [e.originator_id for _, e in store.iter_events(topics=["opeval.trial:TrialStarted"])]
        return tid.hex, store.events(tid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_trial_aborts_cleanly(sig: int, store_path: Path, no_leaks: None) -> None:
    proc = _start(store_path)
    try:
        _wait_for_event(store_path, "opeval.trial:ChaosVerified")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    tid, events = _trial(store_path)
    names = [type(e).__name__ for e in events]
    assert names[-3:] == ["ClusterDown", "TrialAborted", "TrialFinished"]
    assert events[-1].outcome == "aborted" and signal.Signals(sig).name in events[-1].reason
    assert labelled_processes(tid) == []


def test_kill_9_of_the_harness_then_cleanup_leaves_nothing(store_path: Path, runtime_dir: Path) -> None:
    proc = _start(store_path)
    try:
        _wait_for_event(store_path, "opeval.trial:ChaosVerified")
        proc.kill()
        proc.communicate(timeout=10)
        tid, _ = _trial(store_path)
        survivors = labelled_processes(tid)
        assert len(survivors) == 2  # the members the fault spared outlived their harness
        assert list((runtime_dir / "journal").glob("*.json"))

        cleaned = opeval("cleanup", "--store", str(store_path), "--json")
        assert cleaned.returncode == 0, cleaned.stderr
        report = json.loads(cleaned.stdout)
        assert report["aborted"] == [str(__import__("uuid").UUID(tid))]
        assert sorted(report["reaped"][0]["killed"]) == sorted(survivors)
        assert labelled_processes(tid) == []
        assert list((runtime_dir / "journal").glob("*")) == []
        assert list((runtime_dir / "trials").glob("*")) == []
        _, events = _trial(store_path)
        assert isinstance(events[-2], Trial.TrialAborted) and events[-1].outcome == "aborted"
        # a second cleanup finds nothing more
        again = json.loads(opeval("cleanup", "--store", str(store_path), "--json").stdout)
        assert again == {"reaped": [], "aborted": [], "problems": []}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in labelled_processes(_trial(store_path)[0]) if store_path.exists() else []:
            os.killpg(pid, signal.SIGKILL)
