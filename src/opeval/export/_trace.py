"""The trial as Chrome trace-event JSON (``{"traceEvents": [...]}``), which Perfetto
(ui.perfetto.dev) and ``chrome://tracing`` open: one process (the trial) with a track
for its phases, one for the faults, one per member (up, unhealthy or down) and one for
the agent (its session, each command a slice as long as it ran).

Times are microseconds from the trial's start (the events' monotonic ``offset_s``)."""

from __future__ import annotations

import json
from typing import Any

from opeval.events import Trial
from opeval.export._postmortem import Postmortem

PID = 1
PHASES, FAULTS, AGENT = 1, 2, 3
_FIRST_MEMBER = 10  # members' tracks follow the fixed ones, in the order the cluster came up


def _us(seconds: float) -> int:
    return round(float(seconds) * 1_000_000)


def _slice(tid: int, name: str, start: float, end: float, cat: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ph": "X", "pid": PID, "tid": tid, "name": name, "cat": cat, "ts": _us(start),
            "dur": max(0, _us(end) - _us(start)), "args": args or {}}


def _instant(tid: int, name: str, at: float, cat: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"ph": "i", "s": "t", "pid": PID, "tid": tid, "name": name, "cat": cat, "ts": _us(at), "args": args or {}}


def _track(tid: int, name: str) -> list[dict[str, Any]]:
    return [{"ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}},
            {"ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index", "args": {"sort_index": tid}}]


def _end(pm: Postmortem) -> float:
    return max((float(e.offset_s) for e in pm.events), default=0.0)


def _phases(pm: Postmortem, end: float) -> list[dict[str, Any]]:
    """Start-up, steady state, the incident (fault verified to recovery) and what follows,
    one after another; the milestones inside them as instants."""
    up, injected = pm.first(Trial.ClusterUp), pm.first(Trial.ChaosInjected)
    verified, recovered = pm.first(Trial.ChaosVerified), pm.first(Trial.RecoveryDetected)
    bounds: list[tuple[str, float]] = [("start-up", 0.0)]
    if up is not None:
        bounds.append(("steady state", up.offset_s))
    if injected is not None:
        bounds.append(("no fault (control): paged" if pm.control else "fault injected", injected.offset_s))
    if verified is not None:
        bounds.append(("clock running (control)" if pm.control else "incident", verified.offset_s))
    if recovered is not None:
        bounds.append(("recovered", recovered.criteria_met_offset_s))
    bounds.sort(key=lambda b: b[1])
    out = [_slice(PHASES, name, start, bounds[i + 1][1] if i + 1 < len(bounds) else end, "phase")
           for i, (name, start) in enumerate(bounds)]
    for e in pm.events:
        if isinstance(e, Trial.FaultDetected):
            out.append(_instant(PHASES, "fault detected", e.offset_s, "monitor", {"symptoms": list(e.symptoms)}))
        elif isinstance(e, Trial.RecoveryDetected):
            out.append(_instant(PHASES, "recovery detected", e.offset_s, "monitor",
                                {"criteria_met_s": e.criteria_met_offset_s, "held_s": e.held_s}))
        elif isinstance(e, Trial.DataSafetyChecked):
            out.append(_instant(PHASES, "data checked", e.offset_s, "data",
                                {"acknowledged": e.acknowledged, "missing": e.missing, "wrong": e.wrong}))
        elif isinstance(e, Trial.TrialFinished | Trial.TrialAborted):
            args = {"outcome": e.outcome, "time_to_detect_s": e.time_to_detect_s,
                    "time_to_recover_s": e.time_to_recover_s} if isinstance(e, Trial.TrialFinished) else {}
            out.append(_instant(PHASES, type(e).__name__, e.offset_s, "trial", {"reason": e.reason, **args}))
    return out


def _faults(pm: Postmortem, end: float) -> list[dict[str, Any]]:
    """Each fault from its injection to its revert (or the trial's end)."""
    out = []
    for e in pm.events:
        if isinstance(e, Trial.ChaosInjected):
            reverted = next((r for r in pm.events if isinstance(r, Trial.ChaosReverted) and r.offset_s >= e.offset_s
                             and r.kind == e.kind), None)
            name = "no fault (control)" if pm.control else f"{e.kind} on {e.target}"
            out.append(_slice(FAULTS, name, e.offset_s, reverted.offset_s if reverted else end, "fault",
                              {"kind": e.kind, "target": e.target, **{f"param.{k}": v for k, v in e.params.items()},
                               "reverted": reverted.action if reverted else None}))
        elif isinstance(e, Trial.ChaosVerified):
            out.append(_instant(FAULTS, "fault verified", e.offset_s, "fault", {"effect": e.effect}))
    return out


def _members(pm: Postmortem, end: float) -> list[dict[str, Any]]:
    """Each member's state over time: ``up`` (healthy), ``unhealthy`` (reachable, not
    healthy), ``down``; from its process starting and exiting and the monitor's snapshots."""
    changes: dict[str, list[tuple[float, str, str]]] = {}  # member -> (offset, state, why)
    for e in pm.events:
        if isinstance(e, Trial.ClusterUp):
            for m in e.members:
                changes.setdefault(m.name, []).append((e.offset_s, "up", "cluster up"))
        elif isinstance(e, Trial.MemberProcessStarted):
            changes.setdefault(e.member, []).append((e.offset_s, "up", f"process started ({e.reason})"))
        elif isinstance(e, Trial.MemberProcessExited):
            how = f"signal {e.signal}" if e.signal else f"exit {e.exit_code}"
            changes.setdefault(e.member, []).append((e.offset_s, "down", f"process ended ({how})"))
        elif isinstance(e, Trial.StateSnapshot):
            for m in e.state.members:
                state = "up" if m.healthy else "unhealthy" if m.reachable else "down"
                changes.setdefault(m.name, []).append((e.offset_s, state, f"monitor snapshot ({e.phase})"))
    out: list[dict[str, Any]] = []
    for i, (member, seen) in enumerate(changes.items()):
        tid = _FIRST_MEMBER + i
        out += _track(tid, f"member {member}")
        runs: list[list[Any]] = []  # [state, start, why]: one slice per run of the same state
        for at, state, why in seen:
            if not runs or runs[-1][0] != state:
                runs.append([state, at, why])
        for j, (state, start, why) in enumerate(runs):
            out.append(_slice(tid, state, start, runs[j + 1][1] if j + 1 < len(runs) else end, "member",
                              {"member": member, "since": why}))
    return out


def _agent(pm: Postmortem, end: float) -> list[dict[str, Any]]:
    """The agent's session and, inside it, every command it ran (its exit code and class)."""
    started, finished = pm.first(Trial.AgentStarted), pm.first(Trial.AgentFinished)
    if started is None:
        return []
    classes = {int(c["position"]): c.get("class") for c in pm.commands}
    out = [_slice(AGENT, f"agent {started.agent.name}", started.offset_s, finished.offset_s if finished else end,
                  "agent", {"variant": started.agent.variant,
                            "stopped": finished.reason if finished else None,
                            "steps": finished.steps if finished else None})]
    for e, pos in zip(pm.events, pm.positions, strict=True):
        if isinstance(e, Trial.AgentCommandExecuted):
            out.append(_slice(AGENT, e.command, e.started_offset_s, e.started_offset_s + e.duration_s, "command",
                              {"command": e.command, "exit_code": e.exit_code, "timed_out": e.timed_out,
                               "class": classes.get(pos), "step": e.step, "duration_s": e.duration_s}))
        elif isinstance(e, Trial.AgentReasoning) and e.text.strip():
            out.append(_instant(AGENT, "reasoning", e.offset_s, "agent", {"step": e.step, "text": e.text}))
        elif isinstance(e, Trial.CommandDecided):
            out.append(_instant(AGENT, f"{e.decision}: {e.command}", e.offset_s, "approval",
                                {"decided_by": e.decided_by, "reason": e.reason}))
    return out


def to_trace(pm: Postmortem) -> str:
    """The trial as Chrome trace-event JSON."""
    end = _end(pm)
    t = pm.trial
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": PID, "name": "process_name",
         "args": {"name": f"trial {t['trial_id'][:8]}: {t['subject']} {t['chaos']} on {t['victim'] or t['target']}, "
                          f"agent {t['agent']}"}},
        *_track(PHASES, "phases"), *_track(FAULTS, "faults"),
    ]
    if pm.first(Trial.AgentStarted) is not None:
        events += _track(AGENT, "agent commands")
    events += _phases(pm, end) + _faults(pm, end) + _members(pm, end) + _agent(pm, end)
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ms",
                       "otherData": {"trial_id": t["trial_id"], "rule_set": pm.rules.key, "outcome": t["outcome"],
                                     "ttd_s": t.get("ttd_s"), "ttr_s": t.get("ttr_s")}}, default=str)
