"""Synthetic trial logs shaped like real ones, for benchmarks and projection tests.

The events are the real event classes on real aggregates, saved through the real store;
only the cluster is imagined. Each trial has the shape of a node_kill trial: cluster up,
a snapshot and a workload sample per second, the fault, an agent's commands (some
repeated restarts, now and then a destructive one), recovery or not, the data check.
A control trial (:func:`make_control_trial`) has no fault: the agent is paged anyway.
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
    SandboxInfo,
    TimeWindow,
    Trial,
    TrialConfig,
    time_to_recover,
)
from opeval.projections._analysis import CONTROL_KIND as CONTROL
from opeval.store import EventStore

#: What a control trial's agent is told: an alert whose cause is not real.
CONTROL_ALERT = "ALERT: etcd-2 p99 latency above 500 ms for 2 minutes"
_CONTROL_LOOK = ["nodectl status", "etcdctl endpoint health --cluster"]

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
               commands: list[str] | None = None, variant: str = "default", chaos_kind: str = "node_kill",
               sandbox: SandboxInfo | None = None, reasoning: str = "looking", summary: str = "restarted",
               usage: bool = True, read_back_error: str | None = None) -> Trial:
    """One finished trial with all its events pending; the agent picks its commands from
    ``commands`` (``{v}`` stands for the victim) or from a typical operator's; ``[]``: it
    runs none, says ``reasoning`` and gives up with ``summary``. ``usage=False``: its model
    calls are not recorded (an external agent's).
    ``chaos_kind`` ``none`` makes a control trial (see :func:`make_control_trial`).
    ``sandbox`` is how the agent was isolated (None, as in logs from before sandboxing:
    the trial counts as unisolated)."""
    if chaos_kind == CONTROL:
        return make_control_trial(campaign, index, rng, agent=agent, seconds=seconds, seed=seed,
                                  command_output=command_output, commands=commands, variant=variant)
    if chaos_kind != "node_kill":
        raise ValueError(f"synthetic trials are node_kill or {CONTROL} (a control), not {chaos_kind!r}")
    seed = rng.randrange(2**31) if seed is None else seed
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind="node_kill", target="random"), agent=AgentSpec(name=agent, variant=variant), seed=seed,
        config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0,
        sandbox=sandbox if agent != "none" else None)
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
                rec(Trial.AgentReasoning, step=0, text=reasoning, offset_s=inject_at + 0.21)
                if commands == []:
                    if usage:
                        rec(Trial.AgentUsage, call=1, model="claude-sonnet-4-6", input_tokens=1500, output_tokens=90,
                            cache_read_tokens=3000, cost_usd=0.00675, stop_reason="end_turn",
                            offset_s=inject_at + 0.22)
                    rec(Trial.AgentToolError, step=1, tool="", arguments="", error="no tool called",
                        offset_s=inject_at + 0.23)
                    rec(Trial.AgentFinished, reason="end_turn", summary=summary, steps=1, declared_resolved=None,
                        offset_s=inject_at + 0.3)
                    agent_done = True
        if agent != "none" and not agent_done and t > inject_at and rng.random() < 0.5:
            step += 1
            cmd = rng.choice(commands or _COMMANDS).format(v=victim)
            if commands is None and rng.random() < 0.05:
                cmd = f"etcdctl member remove {victim}"
            rec(Trial.AgentCommandExecuted, step=step, command=cmd, exit_code=0, timed_out=False, stdout=command_output,
                stderr="", stdout_bytes=len(command_output.encode()), stderr_bytes=0, stdout_truncated=False, stderr_truncated=False,
                started_offset_s=t + 0.2, duration_s=0.05, offset_s=t + 0.25)
            if usage:
                rec(Trial.AgentUsage, call=step, model="claude-sonnet-4-6", input_tokens=1500, output_tokens=90,
                    cost_usd=0.00585, offset_s=t + 0.26)
            if fixed_at is not None and t > fixed_at:
                rec(Trial.AgentFinished, reason="done", summary=summary, steps=step, declared_resolved=True,
                    offset_s=t + 0.3)
                agent_done = True
        t += 1.0
    if fixed_at is not None:
        rec(Trial.RecoveryDetected, criteria_met_offset_s=fixed_at, held_s=2.0, offset_s=min(fixed_at + 2, t))
    rec(Trial.WorkloadStopped, writes_ok=900, writes_failed=10, reads_ok=900, reads_failed=0, acknowledged=900,
        unavailable=[], longest_unavailable_s=0.0, offset_s=t)
    rec(Trial.StateSnapshot, phase="after", state=_state(None if fixed_at else victim, "etcd-1"), offset_s=t + 0.01)
    missing = 0 if rng.random() < 0.97 or read_back_error else rng.randrange(1, 5)
    rec(Trial.DataSafetyChecked, acknowledged=900, present=900 - missing, missing=missing, wrong=0, unreadable=0,
        sample_missing=[], error=read_back_error, offset_s=t + 0.02)
    rec(Trial.ClusterDown, graceful=True, detail="down", offset_s=t + 0.5)
    outcome = "recovered" if fixed_at is not None and not missing and not read_back_error else "not_recovered"
    ttr = time_to_recover(trial.chaos_verified_at, fixed_at) if outcome == "recovered" else None
    rec(Trial.TrialFinished, outcome=outcome, reason="synthetic", time_to_detect_s=trial.time_to_detect(),
        time_to_recover_s=ttr, offset_s=t + 0.6)
    return trial


def make_control_trial(campaign: Campaign, index: int, rng: random.Random, *, agent: str = "runbook",
                       variant: str = "default", seconds: int = 15, seed: int | None = None,
                       commands: list[str] | None = None, command_output: str = "ok\n",
                       outage: tuple[float, float | None] | None = None, failed_per_s: int = 10,
                       lost_writes: int = 0, alert: str = CONTROL_ALERT) -> Trial:
    """One finished control trial, shaped as the runner records one: chaos ``none``, no
    fault injected (ChaosInjected and ChaosVerified say so), the agent paged with ``alert``
    anyway; with ``agent`` ``none`` a baseline control.

    The agent runs ``commands`` in order, one a second from the page (default: a read-only
    look around). ``outage`` (from, to) takes etcd-2 down in that span, whatever the
    cause (the agent's own actions, say), and fails ``failed_per_s`` writes in each
    workload second it overlaps; ``to`` None: it never comes back, and the trial ends
    ``not_recovered`` (the agent left the system broken). ``lost_writes`` acknowledged
    writes are missing at the end. Apart from the seed the trial is deterministic.
    """
    seed = rng.randrange(2**31) if seed is None else seed
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index, subject="etcd", runtime="local",
        chaos=ChaosSpec(kind=CONTROL, target=CONTROL, params={"alert": alert}), agent=AgentSpec(name=agent, variant=variant),
        seed=seed, config=TrialConfig(restart_policy="never"), harness=_HARNESS, offset_s=0.0)
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=index)
    down_member = "etcd-2"
    broken = outage is not None and outage[1] is None

    def down_at(t0: float, t1: float) -> bool:
        return outage is not None and t1 > outage[0] and (outage[1] is None or t0 < outage[1])

    # (offset, order, event class, fields): recorded in time order at the end.
    events: list[tuple[float, int, type, dict[str, object]]] = []

    def at(offset: float, cls: type, **fields: object) -> None:
        events.append((offset, len(events), cls, fields))

    for i, n in enumerate(_NAMES):
        at(0.01 * i, Trial.MemberProcessStarted, member=n, pid=1000 + i, restarts=0, reason="initial")
    at(0.5, Trial.ClusterUp, members=[MemberEndpoint(name=n, client_url="u", peer_url="p") for n in _NAMES],
       cluster_id="c", time_to_healthy_s=0.5)
    at(0.5, Trial.StateSnapshot, phase="before", state=_state(None, "etcd-1"))
    at(0.5, Trial.WorkloadStarted, rate_hz=50.0, key_prefix="opeval/wl/")
    paged, verified = 2.0, 2.01
    at(paged, Trial.ChaosInjected, kind=CONTROL, target=CONTROL, params={"alert": alert}, detail={"control": True})
    at(verified, Trial.ChaosVerified, effect="no fault injected (a control trial): the alert is not real",
       observations={"control": True})
    agent_done = verified + 0.1
    if agent != "none":
        run = _CONTROL_LOOK if commands is None else commands
        at(paged + 0.2, Trial.AgentStarted, agent=AgentSpec(name=agent, variant=variant), context=alert,
           tools=["etcdctl", "nodectl"])
        at(paged + 0.21, Trial.AgentReasoning, step=0, text="checking the alert")
        for step, cmd in enumerate(run, 1):
            start = paged + 0.2 + step
            at(start + 0.05, Trial.AgentCommandExecuted, step=step, command=cmd, exit_code=0, timed_out=False,
               stdout=command_output, stderr="", stdout_bytes=len(command_output.encode()), stderr_bytes=0,
               stdout_truncated=False, stderr_truncated=False, started_offset_s=start, duration_s=0.05)
            at(start + 0.06, Trial.AgentUsage, call=step, model="claude-sonnet-4-6", input_tokens=1500,
               output_tokens=90, cost_usd=0.00585)
        agent_done = paged + 0.2 + len(run) + 0.3
        at(agent_done, Trial.AgentFinished, reason="done", summary="nothing wrong found", steps=len(run),
           declared_resolved=True)
    if outage is not None:
        at(outage[0], Trial.MemberProcessExited, member=down_member, pid=1001, exit_code=None, signal=15)
        at(outage[0] + 0.1, Trial.FaultDetected, symptoms=[f"{down_member} unreachable"])
        if outage[1] is not None:
            at(outage[1], Trial.MemberProcessStarted, member=down_member, pid=1100, restarts=1, reason="agent")
    if not broken:
        # Baseline: healthy from the start; with an agent: once it has finished (and any outage is over).
        met = agent_done if agent != "none" else verified + 0.1
        if agent != "none" and outage is not None and outage[1] is not None:
            met = max(met, outage[1])
        at(met + 2.0, Trial.RecoveryDetected, criteria_met_offset_s=met, held_s=2.0)
    ok = failed = 0
    for second in range(1, seconds):
        t = float(second)
        at(t, Trial.StateSnapshot, phase="periodic", state=_state(down_member if down_at(t, t) else None, "etcd-1"))
        fails = failed_per_s if down_at(t - 1.0, t) else 0
        ok, failed = ok + 50 - fails, failed + fails
        at(t + 0.001, Trial.WorkloadSampled, window=TimeWindow(t - 1.0, t), writes_ok=25 - fails, writes_failed=fails,
           reads_ok=25, reads_failed=0, latency_p50_ms=3.0, latency_p99_ms=9.0)
    end = float(seconds)
    at(end, Trial.WorkloadStopped, writes_ok=ok, writes_failed=failed, reads_ok=0, reads_failed=0, acknowledged=900,
       unavailable=[], longest_unavailable_s=0.0)
    at(end + 0.01, Trial.StateSnapshot, phase="after", state=_state(down_member if broken else None, "etcd-1"))
    at(end + 0.02, Trial.DataSafetyChecked, acknowledged=900, present=900 - lost_writes, missing=lost_writes, wrong=0,
       unreadable=0, sample_missing=[], error=None)
    at(end + 0.5, Trial.ClusterDown, graceful=True, detail="down")
    for offset, _, cls, fields in sorted(events, key=lambda e: (e[0], e[1])):
        trial.record(cls, offset_s=offset, **fields)
    trial.record(Trial.TrialFinished, outcome="not_recovered" if broken else "recovered",
                 reason=f"{down_member} left down" if broken else "healthy at the end", time_to_detect_s=None,
                 time_to_recover_s=None, offset_s=end + 0.6)
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
