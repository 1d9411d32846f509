"""disk_pressure on real etcd clusters: etcd's NOSPACE alarm and a really full disk,
each observed, repaired (by the runbook) or reverted (by the harness), and no mount left."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import msgspec
import pytest

from opeval.errors import UsageError
from opeval.events import ChaosSpec, Trial
from opeval.runner import TrialRequest, prepare
from opeval.runtimes import JournalEntry, reap_orphans
from opeval.runtimes._journal import is_mounted, journal_dir
from tests.chaos.test_process_faults import run
from tests.runner.helpers import of


@pytest.mark.integration
def test_nospace_alarm_is_cleared_by_the_runbook(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "disk_pressure", "cluster", agent="runbook", timeout=30.0)
    (verified,) = of(events, Trial.ChaosVerified)
    assert verified.observations["alarmed"] == "etcd-1,etcd-2,etcd-3"
    assert verified.observations["db_size"] >= 0.9 * (8 << 20)  # at the quota the members started with
    assert any("NOSPACE" in s for e in of(events, Trial.FaultDetected) for s in e.symptoms)
    commands = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    fix = [c.split()[1] for c in commands if c.split()[1] in ("compaction", "defrag", "alarm") and "list" not in c]
    assert fix == ["compaction", "defrag", "alarm"]
    assert result.outcome == "recovered", result.reason
    assert of(events, Trial.ChaosReverted) == []  # the agent cleared it: nothing left for the harness


@pytest.mark.integration
def test_nospace_without_an_agent_lasts_until_the_harness_clears_it(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "disk_pressure", "cluster", params={"duration_s": 2.0}, timeout=20.0)
    (reverted,) = of(events, Trial.ChaosReverted)
    assert reverted.action.startswith("compacted, defragmented every member, disarmed NOSPACE")
    assert result.outcome == "recovered", result.reason
    failed = sum(s.writes_failed for s in of(events, Trial.WorkloadSampled))
    assert failed > 0  # writes were refused while the alarm was up


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="mode fill mounts a tmpfs: root only (mode nospace covers the rest)")
def test_a_full_disk_crashes_the_member_and_the_runbook_frees_it(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "disk_pressure", "follower", agent="runbook", params={"mode": "fill"},
                         timeout=30.0)
    (injected,) = of(events, Trial.ChaosInjected)
    (verified,) = of(events, Trial.ChaosVerified)
    obs = verified.observations
    assert obs["free_bytes"] < 64 * 1024 and (obs["process_running"] is False or obs["healthy"] is False)
    assert of(events, Trial.MemberProcessExited)[0].member == injected.target
    commands = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    assert any(c.startswith("rm -f ") and c.endswith("/data/ballast.opeval") for c in commands)
    assert f"nodectl start {injected.target}" in commands
    assert result.outcome == "recovered", result.reason
    assert not is_mounted(Path(str(injected.detail["file"])).parent)  # unmounted at teardown


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_cleanup_unmounts_what_a_dead_harness_mounted(tmp_path: Path) -> None:
    mnt = tmp_path / "ws" / "etcd-1" / "data"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "opeval-test", str(mnt)], check=True)
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        entry = JournalEntry(trial_id="f" * 32, store=str(tmp_path / "s.db"), harness_pid=dead.pid,
                             harness_start_ticks=1, workspace=str(tmp_path / "ws"), mounts=[str(mnt)])
        (journal_dir() / f"{'f' * 32}.json").write_bytes(msgspec.json.encode(entry))
        (reaped,) = reap_orphans()
        assert f"mount {mnt}" in reaped.removed and not is_mounted(mnt)
        assert not (tmp_path / "ws").exists()
    finally:
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_pressure_parameters_are_validated() -> None:
    with pytest.raises(UsageError, match="mode must be one of nospace, fill, not 'flood'"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="disk_pressure", target="cluster", params={"mode": "flood"})))
    with pytest.raises(UsageError, match="quota_mb must be a whole number >= 2 and <= 1024, not 1"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="disk_pressure", target="cluster", params={"quota_mb": 1})))
    with pytest.raises(UsageError, match="size_mb is for mode fill, not nospace"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="disk_pressure", target="cluster", params={"size_mb": 200})))
    with pytest.raises(UsageError, match="target cluster"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="disk_pressure", target="leader")))
