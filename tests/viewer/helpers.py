"""Helpers of the viewer's tests: hand-made trials whose agent output is hostile HTML, and
`opeval view` as a child process."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from opeval.events import (
    AgentSpec,
    Campaign,
    ChaosSpec,
    ClusterState,
    HarnessInfo,
    MemberEndpoint,
    MemberState,
    TimeWindow,
    Trial,
    TrialConfig,
)
from opeval.projections import RuleSet
from opeval.projections.synthetic import new_campaign
from opeval.store import EventStore

#: Agent output that would run if it were not escaped.
HOSTILE_OUTPUT = "<script>alert(1)</script>\n"
HOSTILE_COMMAND = "echo '<script>alert(3)</script>'"
HOSTILE_REASONING = "I will look at <img src=x onerror=alert(2)> first"
HOSTILE_CONTEXT = "ALERT: <b>etcd-1</b> unreachable"
HOSTILE_VARIANT = "<i>v2</i>"
_NAMES = ["etcd-1", "etcd-2", "etcd-3"]
_HARNESS = HarnessInfo(host="test", pid=1, start_ticks=1, version="test")


def _state(down: str | None) -> ClusterState:
    members = [MemberState(name=n, process_up=n != down, reachable=n != down, healthy=n != down,
                           role="leader" if n == "etcd-2" else "follower",
                           detail={"member_id": str(i), "cluster_id": "c", "member_names": ",".join(_NAMES)})
               for i, n in enumerate(_NAMES, 1)]
    return ClusterState(members=members, leader="etcd-2", healthy=sum(m.healthy for m in members), expected=3,
                        detail={"cluster_id": "c"})


def start_trial(es: EventStore, name: str) -> tuple[Campaign, Trial]:
    """A one-trial campaign whose trial is under way: the fault is in, the agent has
    said something hostile and run a hostile command."""
    campaign = new_campaign(name, 1)
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=0, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind="node_kill", target="follower"), agent=AgentSpec(name="runbook", variant=HOSTILE_VARIANT),
        seed=7,
        config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0)
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=0)
    rec = trial.record
    rec(Trial.ClusterUp, members=[MemberEndpoint(name=n, client_url="u", peer_url="p") for n in _NAMES],
        cluster_id="c", time_to_healthy_s=0.5, offset_s=0.5)
    rec(Trial.StateSnapshot, phase="before", state=_state(None), offset_s=0.6)
    rec(Trial.WorkloadSampled, window=TimeWindow(0.6, 1.6), writes_ok=25, writes_failed=0, reads_ok=25,
        reads_failed=0, latency_p50_ms=3.0, latency_p99_ms=9.0, offset_s=1.6)
    rec(Trial.ChaosInjected, kind="node_kill", target="etcd-1", params={}, detail={"pid": 1}, offset_s=2.0)
    rec(Trial.ChaosVerified, effect="etcd-1 is down", observations={"member": "etcd-1"}, offset_s=2.01)
    rec(Trial.FaultDetected, symptoms=["etcd-1 unreachable"], offset_s=2.1)
    rec(Trial.StateSnapshot, phase="periodic", state=_state("etcd-1"), offset_s=2.2)
    rec(Trial.AgentStarted, agent=AgentSpec(name="runbook"), context=HOSTILE_CONTEXT, tools=["nodectl"], offset_s=2.2)
    rec(Trial.AgentReasoning, step=0, text=HOSTILE_REASONING, offset_s=2.3)
    _command(trial, 1, HOSTILE_COMMAND, 2.4, stdout=HOSTILE_OUTPUT)
    es.save(campaign, trial)
    return campaign, trial


def _command(trial: Trial, step: int, command: str, at: float, *, stdout: str = "ok\n", exit_code: int = 0) -> None:
    trial.record(Trial.AgentCommandExecuted, step=step, command=command, exit_code=exit_code, timed_out=False,
                 stdout=stdout, stderr="", stdout_bytes=len(stdout), stderr_bytes=0, stdout_truncated=False,
                 stderr_truncated=False, started_offset_s=at, duration_s=0.05, offset_s=at + 0.05)


def finish_trial(es: EventStore, trial: Trial, campaign: Campaign | None = None) -> None:
    """The rest of a trial from :func:`start_trial`: three restarts in a row with no
    change between them (thrashing), a destructive command, recovery, the data check."""
    for i, at in enumerate((3.0, 4.0, 5.0)):
        _command(trial, 2 + i, "nodectl restart etcd-1", at, exit_code=1)
    _command(trial, 5, "etcdctl member remove etcd-1", 6.0)
    rec = trial.record
    rec(Trial.StateSnapshot, phase="periodic", state=_state(None), offset_s=7.0)
    rec(Trial.AgentFinished, reason="done", summary="restarted <i>etcd-1</i>", steps=5, declared_resolved=True,
        offset_s=7.1)
    rec(Trial.RecoveryDetected, criteria_met_offset_s=7.0, held_s=2.0, offset_s=9.0)
    rec(Trial.WorkloadStopped, writes_ok=400, writes_failed=3, reads_ok=400, reads_failed=0, acknowledged=400,
        unavailable=[], longest_unavailable_s=0.4, offset_s=9.1)
    rec(Trial.StateSnapshot, phase="after", state=_state(None), offset_s=9.2)
    rec(Trial.DataSafetyChecked, acknowledged=400, present=400, missing=0, wrong=0, unreadable=0, sample_missing=[],
        error=None, offset_s=9.3)
    rec(Trial.ClusterDown, graceful=True, detail="down", offset_s=9.5)
    rec(Trial.TrialFinished, outcome="recovered", reason="recovery criteria held for the settle window",
        time_to_detect_s=0.09, time_to_recover_s=4.99, offset_s=9.6)
    if campaign is not None:
        campaign.trigger_event(Campaign.CampaignFinished, outcomes={"recovered": 1})
        es.save(campaign, trial)
    else:
        es.save(trial)


def strict_rules() -> RuleSet:
    """The default rules with a settle window no synthetic recovery meets."""
    text = RuleSet.default().source.replace("min_settle_s: 2.0", "min_settle_s: 9.0")
    return RuleSet.parse(text, "strict")


def read_url(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The URL the viewer prints when it is ready."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        chunk = os.read(fd, 4096).decode() if ready else ""
        seen += chunk
        if match := re.search(r"http://[\d.]+:\d+/", seen):
            return match.group(0)
        if ready and not chunk:  # end of output: the viewer exited
            break
    raise AssertionError(f"the viewer never said where it listens: {seen!r}")


def stop_viewer(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[str, str]:
    """Signal the viewer, wait for it, and return what it printed."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out, err


def start_viewer(store: Path, *args: str) -> subprocess.Popen[str]:
    """``opeval view --store STORE ARGS`` as a child process."""
    return subprocess.Popen([sys.executable, "-m", "opeval", "view", "--store", str(store), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
