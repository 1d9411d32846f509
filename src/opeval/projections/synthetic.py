"""Synthetic trial logs shaped like real ones, for benchmarks and projection tests.

The events are the real event classes on real aggregates, saved through the real store;
only the cluster is imagined. Each trial has the shape of a node_kill trial: cluster up,
a snapshot and a workload sample per second, the fault, an agent's commands (some
repeated restarts, now and then a destructive one), recovery or not, the data check.
"""

from __future__ import annotations

import random
import uuid

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
from opeval.store import EventStore

_HARNESS = HarnessInfo(host="synthetic", pid=1, start_ticks=1, version="synthetic")
_NAMES = ["etcd-1", "etcd-2", "etcd-3"]
_COMMANDS = ["nodectl status", "etcdctl endpoint health --cluster", "etcdctl member list -w table",
             "nodectl logs {v} -n 20", "nodectl start {v}"]


def _state(down: str | None, leader: str) -> ClusterState:
    members = [MemberState(name=n, process_up=n != down, reachable=n != down, healthy=n != down,
                           role="leader" if n == leader else "follower",
                           detail={"member_id": str(i), "leader_id": "1", "cluster_id": "c", "raft_term": 2,
                                   "revision": 100, "member_names": ",".join(_NAMES)})
               for i, n in enumerate(_NAMES, 1)]
    return ClusterState(members=members, leader=leader, healthy=sum(m.healthy for m in members), expected=3,
                        detail={"cluster_id": "c"})


def new_campaign(name: str, planned: int) -> Campaign:
    """A campaign aggregate with its start event pending."""
    return Campaign._create(Campaign.CampaignStarted, name=name, spec={"synthetic": True},
                            trials_planned=planned, harness=_HARNESS)


def make_trial(campaign: Campaign, index: int, rng: random.Random, *, agent: str = "runbook",
               seconds: int = 40, seed: int | None = None, command_output: str = "ok\n",
               commands: list[str] | None = None, variant: str = "default") -> Trial:
    """One finished trial with all its events pending; the agent picks its commands from
    ``commands`` (``{v}`` stands for the victim) or from a typical operator's."""
    seed = rng.randrange(2**31) if seed is None else seed
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind="node_kill", target="random"), agent=AgentSpec(name=agent, variant=variant), seed=seed,
        config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0)
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=index)
    rec = trial.record
    victim = rng.choice(_NAMES)
    for i, n in enumerate(_NAMES):
        rec(Trial.MemberProcessStarted, member=n, pid=1000 + i, restarts=0, reason="initial", offset_s=0.01 * i)
    rec(Trial.ClusterUp, members=[MemberEndpoint(name=n, client_url="u", peer_url="p") for n in _NAMES],
        cluster_id="c", time_to_healthy_s=0.5, offset_s=0.5)
    rec(Trial.StateSnapshot, phase="before", state=_state(None, "etcd-1"), offset_s=0.5)
    rec(Trial.WorkloadStarted, rate_hz=50.0, key_prefix="opeval/wl/", offset_s=0.5)
    inject_at = 2.0
    recovers = agent != "none" and rng.random() < 0.8
    fixed_at = inject_at + rng.uniform(3, 25) if recovers else None
    t = 1.0
    agent_done = False
    step = 0
    while t < seconds:
        down = victim if inject_at <= t and (fixed_at is None or t < fixed_at) else None
        rec(Trial.StateSnapshot, phase="periodic", state=_state(down, "etcd-1"), offset_s=t)
        failed = rng.randrange(3) if down else 0
        rec(Trial.WorkloadSampled, window=TimeWindow(t - 1.0, t), writes_ok=25 - failed, writes_failed=failed,
            reads_ok=25, reads_failed=0, latency_p50_ms=3.0 + rng.random(), latency_p99_ms=9.0 + rng.random(),
            offset_s=t + 0.001)
        if abs(t - inject_at) < 0.5:
            rec(Trial.ChaosInjected, kind="node_kill", target=victim, params={}, detail={"pid": 1001},
                offset_s=inject_at)
            rec(Trial.MemberProcessExited, member=victim, pid=1001, exit_code=None, signal=9, offset_s=inject_at + 0.005)
            rec(Trial.ChaosVerified, effect=f"{victim} is down", observations={"member": victim},
                offset_s=inject_at + 0.01)
            rec(Trial.FaultDetected, symptoms=[f"{victim} unreachable"], offset_s=inject_at + 0.1)
            if agent != "none":
                rec(Trial.AgentStarted, agent=AgentSpec(name=agent), context="ALERT", tools=["etcdctl", "nodectl"],
                    offset_s=inject_at + 0.2)
                rec(Trial.AgentReasoning, step=0, text="looking", offset_s=inject_at + 0.21)
        if agent != "none" and not agent_done and t > inject_at and rng.random() < 0.5:
            step += 1
            cmd = rng.choice(commands or _COMMANDS).format(v=victim)
            if commands is None and rng.random() < 0.05:
                cmd = f"etcdctl member remove {victim}"
            rec(Trial.AgentCommandExecuted, step=step, command=cmd, exit_code=0, timed_out=False, stdout=command_output,
                stderr="", stdout_bytes=len(command_output.encode()), stderr_bytes=0, stdout_truncated=False, stderr_truncated=False,
                started_offset_s=t + 0.2, duration_s=0.05, offset_s=t + 0.25)
            rec(Trial.AgentUsage, call=step, model="claude-sonnet-4-6", input_tokens=1500, output_tokens=90,
                cost_usd=0.00585, offset_s=t + 0.26)
            if fixed_at is not None and t > fixed_at:
                rec(Trial.AgentFinished, reason="done", summary="restarted", steps=step, declared_resolved=True,
                    offset_s=t + 0.3)
                agent_done = True
        t += 1.0
    if fixed_at is not None:
        rec(Trial.RecoveryDetected, criteria_met_offset_s=fixed_at, held_s=2.0, offset_s=min(fixed_at + 2, t))
    rec(Trial.WorkloadStopped, writes_ok=900, writes_failed=10, reads_ok=900, reads_failed=0, acknowledged=900,
        unavailable=[], longest_unavailable_s=0.0, offset_s=t)
    rec(Trial.StateSnapshot, phase="after", state=_state(None if fixed_at else victim, "etcd-1"), offset_s=t + 0.01)
    missing = 0 if rng.random() < 0.97 else rng.randrange(1, 5)
    rec(Trial.DataSafetyChecked, acknowledged=900, present=900 - missing, missing=missing, wrong=0, unreadable=0,
        sample_missing=[], error=None, offset_s=t + 0.02)
    rec(Trial.ClusterDown, graceful=True, detail="down", offset_s=t + 0.5)
    outcome = "recovered" if fixed_at is not None and not missing else "not_recovered"
    ttr = None if fixed_at is None else round(fixed_at - inject_at - 0.01, 6)
    rec(Trial.TrialFinished, outcome=outcome, reason="synthetic", time_to_detect_s=0.09, time_to_recover_s=ttr,
        offset_s=t + 0.6)
    return trial


def write_campaign(store: EventStore, name: str, trials: int, *, rng: random.Random, agent: str = "runbook",
                   seconds: int = 40, seeds: list[int] | None = None, per_transaction: int = 50) -> Campaign:
    """A finished campaign of ``trials`` synthetic trials, saved in bulk."""
    from opeval.events import Campaign as _C

    campaign = new_campaign(name, trials)
    store.save(campaign)
    batch: list[Trial] = []
    for i in range(trials):
        batch.append(make_trial(campaign, i, rng, agent=agent, seconds=seconds,
                                seed=None if seeds is None else seeds[i]))
        if len(batch) == per_transaction or i == trials - 1:
            store.save(campaign, *batch)
            batch = []
    campaign.trigger_event(_C.CampaignFinished, outcomes={})
    store.save(campaign)
    return campaign
