"""Turning events into the lines and rows a person reads."""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.utils import get_topic

from opeval.events._clock import clock_text
from opeval.events._verdicts import data_safe
from opeval.events._trial import Trial
from opeval.events._types import ClusterState


def member_summary(state: ClusterState | None) -> str:
    """``etcd-1 ok* etcd-2 DOWN etcd-3 ok`` (``*`` marks the leader)."""
    if state is None:
        return ""
    parts = []
    for m in state.members:
        word = "ok" if m.healthy else ("unhealthy" if m.reachable else "DOWN")
        parts.append(f"{m.name} {word}{'*' if m.name == state.leader else ''}")
    return "  ".join(parts)


def _sandbox_note(e: Trial.TrialStarted) -> str:
    if e.agent.name == "none":
        return ""
    if e.sandbox is None or not e.sandbox.isolated:
        return "; UNISOLATED (the agent could reach the harness)"
    return f"; sandbox {e.sandbox.version or e.sandbox.mechanism}"


class Words(msgspec.Struct, frozen=True, kw_only=True):
    """How a workload's counts read on screens (timelines, the trial page, reports): the
    events keep one shape for every subject, the words are the subject's. The defaults are
    the key-value workload's."""

    first: str = "writes"  # WorkloadSampled.writes_*: the operations that count for availability
    second: str = "reads"  # WorkloadSampled.reads_*
    second_ok: str = "ok"
    second_failed: str = "failed"
    promises: str = "acknowledged writes"  # what DataSafetyChecked.acknowledged counts
    kept: str = "present"  # DataSafetyChecked.present
    missing: str = "missing"
    wrong: str = "wrong"
    lost: str = "lost"  # promises broken, in a report's summary line
    unsafe: str = "DATA LOSS"  # the verdict when a promise was broken
    samples: str = "missing keys"
    leader: str = "leader"  # ClusterState.leader


def describe(event: Any, words: Words | None = None) -> str:  # noqa: PLR0911, PLR0912 - one branch per event type
    """A one-line description of an event for a timeline, in the subject's ``words``."""
    e, w = event, words or Words()
    if isinstance(e, Trial.TrialStarted):
        return (f"{e.subject} x{e.config.members} on {e.runtime}; chaos {e.chaos.kind} target={e.chaos.target}; "
                f"agent {e.agent.name}; seed {e.seed}; restart {e.config.restart_policy}"
                + _sandbox_note(e))
    if isinstance(e, Trial.ClusterUp):
        return f"{len(e.members)} members healthy in {e.time_to_healthy_s:.3f}s (cluster {e.cluster_id})"
    if isinstance(e, Trial.StateSnapshot):
        return f"[{e.phase}] {w.leader.replace(' ', '_')}={e.state.leader or '-'} healthy={e.state.healthy}/{e.state.expected}  {member_summary(e.state)}"
    if isinstance(e, Trial.WorkloadStarted):
        return f"{e.rate_hz:g} ops/s under {e.key_prefix}"
    if isinstance(e, Trial.WorkloadSampled):
        return (f"{w.first} {e.writes_ok} ok/{e.writes_failed} failed, {w.second} {e.reads_ok} {w.second_ok}/"
                f"{e.reads_failed} {w.second_failed}, p50 {e.latency_p50_ms} ms")
    if isinstance(e, Trial.WorkloadStopped):
        return (f"{e.acknowledged} {w.promises}, {e.writes_failed} {w.first} failed; "
                f"longest unavailability {e.longest_unavailable_s:.3f}s")
    if isinstance(e, Trial.ChaosInjected):
        if e.kind == "none":  # a control trial (the chaos kind that injects nothing)
            return "no fault injected (a control trial): the responder is paged anyway"
        return f"{e.kind} -> {e.target} {dict(e.detail)}"
    if isinstance(e, Trial.ChaosVerified):
        return e.effect
    if isinstance(e, Trial.ChaosReverted):
        return f"{e.kind} on {e.target}: {e.action}"
    if isinstance(e, Trial.FaultDetected):
        return "; ".join(e.symptoms)
    if isinstance(e, Trial.AgentStarted):
        alert = next((line for line in e.context.splitlines() if line.startswith("ALERT:")), "")
        return f"agent {e.agent.name} ({e.agent.variant}) paged. {alert}"
    if isinstance(e, Trial.AgentReasoning):
        return e.text.strip().replace("\n", " ")[:300]
    if isinstance(e, Trial.AgentCommandExecuted):
        how = "TIMED OUT" if e.timed_out else f"exit {e.exit_code}"
        cut = " [output truncated]" if e.stdout_truncated or e.stderr_truncated else ""
        return f"$ {e.command}  -> {how} in {e.duration_s:.2f}s{cut}"
    if isinstance(e, Trial.CommandProposed):
        wait = f", waits up to {e.timeout_s:g}s for a person" if e.mode == "ask" else ""
        return f"$ {e.command}  -> gated ({', '.join(e.gated_by)}; policy {e.mode}{wait})"
    if isinstance(e, Trial.CommandDecided):
        waited = f" after {e.waited_s:.1f}s" if e.waited_s else ""
        return f"$ {e.command}  -> {e.decision} by {e.decided_by}{waited}: {e.reason}"
    if isinstance(e, Trial.AgentUsage):
        cost = "?" if e.cost_usd is None else f"${e.cost_usd:.4f}"
        served = f" (served as {e.served_model})" if e.served_model and e.served_model != e.model else ""
        cache = (f" + {e.cache_read_tokens} cache read + {e.cache_write_tokens} cache write"
                 if e.cache_read_tokens or e.cache_write_tokens else "")
        how = "CUT by the deadline" if e.cut else (e.stop_reason or "?")
        return f"call {e.call} {e.model}{served}: {e.input_tokens} in{cache} / {e.output_tokens} out tokens, {cost}, {how}"
    if isinstance(e, Trial.AgentToolError):
        call = f"{e.tool}({e.arguments})" if e.tool else "no tool call"
        return f"refused {call}: {e.error}"[:400]
    if isinstance(e, Trial.AgentFinished):
        verdict = {True: "says resolved", False: "says NOT resolved", None: "no verdict"}[e.declared_resolved]
        return f"{e.reason} after {e.steps} steps ({verdict}): {e.summary}"
    if isinstance(e, Trial.MemberProcessStarted):
        return f"{e.member} pid {e.pid} ({e.reason})"
    if isinstance(e, Trial.MemberProcessExited):
        how = f"signal {e.signal}" if e.signal else f"exit {e.exit_code}"
        return f"{e.member} pid {e.pid} ended ({how})"
    if isinstance(e, Trial.RecoveryDetected):
        return f"criteria met at +{e.criteria_met_offset_s:.3f}s, held {e.held_s:.3f}s"
    if isinstance(e, Trial.DataSafetyChecked):
        verdict = "SAFE" if data_safe(e.missing, e.wrong, e.unreadable, e.error) else w.unsafe
        return (f"{verdict}: {e.present}/{e.acknowledged} {w.promises} {w.kept}, {e.missing} {w.missing}, "
                f"{e.wrong} {w.wrong}" + (f" ({e.error})" if e.error else ""))
    if isinstance(e, Trial.ClusterDown):
        return e.detail
    if isinstance(e, Trial.TrialAborted):
        return e.reason + (f" (reaped {', '.join(e.reaped)})" if e.reaped else "")
    if isinstance(e, Trial.TrialFinished):
        return f"{e.outcome.upper()}: {e.reason} ({clock_text(e.time_to_detect_s, e.time_to_recover_s)})"
    return ""


def event_json(notification_id: int | None, event: Any) -> dict[str, Any]:
    """An event as plain JSON-able data, tagged with its type."""
    data = msgspec.to_builtins({k: v for k, v in vars(event).items()})
    data["type"] = get_topic(type(event)).rpartition(":")[2]
    if notification_id is not None:
        data["position"] = notification_id
    return data  # type: ignore[no-any-return]
