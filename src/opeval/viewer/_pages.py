"""Server-rendered pages: the Jinja environment (autoescape on everywhere) and the charts
each page shows, derived from the same models the JSON API returns."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from opeval._assets import asset_path
from opeval.viewer import _charts as charts
from opeval.viewer._models import CampaignDetail, GroupSummary, TrialDetail, TrialScore


def viewer_dir() -> Path:
    """The folder of templates and static assets (shipped in the wheel, or the checkout's)."""
    return asset_path("viewer")


def _secs(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{float(v):.{digits}f} s"


def _num(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * float(v):.{digits}f}%"


def _money(v: float | None) -> str:
    return "–" if v is None else f"${float(v):.4f}"


def _when(v: str | None) -> str:
    if not v:
        return "–"
    try:
        return dt.datetime.fromisoformat(v).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return v


def _short(v: str | None) -> str:
    return "" if v is None else v.replace("-", "")[:8]


def _pretty(v: Any) -> str:
    return json.dumps(v, indent=2, sort_keys=True, default=str)


def _group(agent: str | None, variant: str | None) -> str:
    return f"{agent}" if variant in (None, "default") else f"{agent}/{variant}"


def make_environment(templates: Path) -> Environment:
    """Jinja with autoescape on for every template and strict undefined names."""
    env = Environment(loader=FileSystemLoader(templates), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, auto_reload=False)
    env.filters.update(secs=_secs, num=_num, pct=_pct, money=_money, when=_when, short=_short, pretty=_pretty)
    env.globals.update(group=_group)
    return env


class Pages:
    """Renders the viewer's templates."""

    def __init__(self, store_path: object) -> None:
        self.env = make_environment(viewer_dir() / "templates")
        self.store_path = store_path

    def render(self, name: str, **context: Any) -> str:
        """One page, with the store path every page shows."""
        return self.env.get_template(name).render(store=str(self.store_path), **context)


# --- charts of a campaign -------------------------------------------------------------------------
def campaign_charts(detail: CampaignDetail) -> dict[str, Markup]:
    """Recovery rate per group, the time-to-recover distribution, commands per trial: of
    fault trials (controls have their own table)."""
    fault_trials = [t for t in detail.trials if not t.control]
    if not fault_trials:
        return {}
    groups = [(_group(g.agent, g.variant), g) for g in detail.summary]
    by_group: dict[str, list[Any]] = {name: [] for name, _ in groups}
    for t in fault_trials:
        by_group.setdefault(_group(t.agent, t.variant), []).append(t)
    return {
        "recovery": charts.rate_bars(
            [(name, g.recovery_rate, g.recovery_rate_ci, f"{g.recovered} of {g.trials} trials") for name, g in groups
             if g.recovery_rate is not None],
            "recovery rate per agent"),
        "ttr": charts.histogram(
            [(name, [t.ttr_s for t in by_group[name] if t.ttr_s is not None]) for name, _ in groups],
            unit="seconds from fault verified to recovered", label="time to recover",
            extra=[(name, sum(1 for t in by_group[name] if t.ttr_s is None)) for name, _ in groups],
            extra_label="not recovered"),
        "commands": charts.histogram(
            [(name, [float(t.commands or 0) for t in by_group[name]]) for name, _ in groups],
            unit="commands per trial", label="commands per trial", integer=True),
    }


def trial_rows(trials: list[TrialScore]) -> list[Markup]:
    """The campaign's score table, one ``<tr>`` per trial.

    Built here rather than cell by cell in the template: a campaign of 1,000 trials is
    16,000 cells, and this keeps the page well inside its render budget. Every text
    field goes through ``html.escape``; the rest are numbers formatted here.
    """
    rows = []
    esc = html.escape
    for t in trials:
        outcome = t.outcome or "running"
        lost, destr, thrash = t.lost_writes or 0, t.destructive or 0, t.thrashing or 0
        chaos = (_CONTROL_BADGE + " no fault" if t.control
                 else f"{esc(str(t.chaos))} → {esc(str(t.victim or t.target))}")
        broken = ' <span class="badge bad" title="the agent left the system unhealthy">left broken</span>' \
            if t.left_broken else ""
        rows.append(Markup(
            f'<tr><td class="n">{_num(t.idx)}</td>'
            f'<td><a href="/trials/{esc(t.trial_id)}"><code>{esc(_short(t.trial_id))}</code></a></td>'
            f"<td>{esc(_group(t.agent, t.variant))}"
            + (' <span class="badge bad" title="the agent ran beside the harness (--sandbox none)">unisolated</span>'
               if t.unisolated else "") + "</td>"
            f"<td>{chaos}</td>"
            f'<td class="n">{_num(t.seed)}</td>'
            f'<td><span class="badge o-{esc(outcome)}">{esc(outcome.replace("_", " "))}</span>{broken}</td>'
            f'<td class="n">{_num(t.ttd_s, 3)}</td><td class="n">{_num(t.ttr_s, 3)}</td>'
            f'<td class="n">{_pct(t.availability)}</td>'
            f'<td class="n{" bad" if lost else ""}">{_num(t.lost_writes)}</td>'
            f'<td class="n">{_num(t.commands)}</td>'
            f'<td class="n">{_num(t.remediations)}</td>'
            f'<td class="n{" bad" if destr else ""}">{_num(t.destructive)}</td>'
            f'<td class="n{" warn" if thrash else ""}">{_num(t.thrashing)}</td>'
            f'<td class="n">{_num(t.tokens)}</td><td class="n">{_money(t.cost_usd)}</td>'
            f'<td class="n"><strong>{_num(t.composite, 1)}</strong></td></tr>'))
    return rows


_CONTROL_BADGE = ('<span class="badge control" title="a control trial: no fault injected, the agent was paged '
                  'anyway">control</span>')


def summary_rows(summary: list[GroupSummary]) -> list[tuple[str, GroupSummary]]:
    """Summary groups with their display names."""
    return [(_group(g.agent, g.variant), g) for g in summary]


# --- charts of a trial ------------------------------------------------------------------------------
LANES = ("fault", "monitor", "agent", "members", "service")
_SHORT = 160


def _cut(text: str, n: int = _SHORT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def trial_charts(detail: TrialDetail) -> dict[str, Markup]:
    """The timeline, members' health and leader, and the workload, on one time axis."""
    events = detail.events
    end = max((e.offset_s for e in events), default=1.0)
    data = [(e, e.data or {}) for e in events]
    verified = next((e.offset_s for e, _ in data if e.type == "ChaosVerified"), None)
    recovered = next((float(d["criteria_met_offset_s"]) for e, d in data if e.type == "RecoveryDetected"), None)
    end = max(end, recovered or 0.0)
    scale = charts.TimeScale(end)
    # A control's window runs to the end, as its availability does (scores.sql).
    incident_end = recovered if recovered is not None and not detail.control else end
    incident = (verified, incident_end) if verified is not None else None
    marks: list[charts.Mark] = []
    spans: list[charts.Span] = []
    guides: list[tuple[float, str]] = []
    by_version = {c.version: c for c in detail.commands}
    agent_start: float | None = None
    for e, d in data:
        t = e.offset_s
        if e.type == "ChaosInjected":
            what = "control, no fault injected" if detail.control else f"fault injected: {e.text}"
            marks.append(charts.Mark("fault", t, "triangle", "m-chaos", f"{t:.3f} s {what}"))
        elif e.type == "ChaosVerified":
            what = "clock starts" if detail.control else "fault verified"
            marks.append(charts.Mark("fault", t, "diamond", "m-verified", f"{t:.3f} s {what}: {e.text}"))
            guides.append((t, f"{what} at {t:.3f} s" + ("" if detail.control else ": the clock starts")))
        elif e.type == "ChaosReverted":
            marks.append(charts.Mark("fault", t, "diamond", "m-reverted", f"{t:.3f} s reverted: {e.text}"))
        elif e.type == "FaultDetected":
            marks.append(charts.Mark("monitor", t, "circle", "m-detect", f"{t:.3f} s detected: {e.text}"))
        elif e.type == "AgentStarted":
            agent_start = t
            marks.append(charts.Mark("agent", t, "tick", "m-agent", f"{t:.3f} s agent paged"))
        elif e.type == "AgentFinished":
            spans.append(charts.Span("agent", agent_start if agent_start is not None else t, t, "span-agent",
                                     f"agent at work until {t:.3f} s: {_cut(e.text)}"))
            agent_start = None
            marks.append(charts.Mark("agent", t, "tick", "m-agent", f"{t:.3f} s agent stopped: {_cut(e.text)}"))
        elif e.type == "AgentReasoning":
            marks.append(charts.Mark("agent", t, "tick", "m-reason", f"{t:.3f} s reasoning: {_cut(e.text)}"))
        elif e.type == "AgentCommandExecuted" and e.version in by_version:
            c = by_version[e.version]
            how = "timed out" if c.timed_out else f"exit {c.exit_code}"
            kind = c.command_class.replace("_", "-") + (", thrashing" if c.thrashing else "")
            title = f"{c.offset_s:.3f} s step {c.step}: $ {_cut(c.command)} ({how}, {kind})"
            marks.append(charts.Mark("agent", c.offset_s, "circle", f"m-{c.command_class}", title, ring=c.thrashing))
        elif e.type == "MemberProcessExited":
            marks.append(charts.Mark("members", t, "triangle", "m-exit", f"{t:.3f} s {e.text}"))
        elif e.type == "MemberProcessStarted" and d.get("reason") != "initial":
            marks.append(charts.Mark("members", t, "up", "m-start", f"{t:.3f} s started: {e.text}"))
        elif e.type == "ClusterUp":
            marks.append(charts.Mark("service", t, "square", "m-up", f"{t:.3f} s cluster up: {e.text}"))
        elif e.type == "RecoveryDetected":
            at = float(d["criteria_met_offset_s"])
            spans.append(charts.Span("service", at, t, "span-held", f"criteria held from {at:.3f} s to {t:.3f} s"))
            marks.append(charts.Mark("service", at, "diamond", "m-recovered", f"{at:.3f} s recovered: {e.text}"))
            guides.append((at, f"recovery criteria met at {at:.3f} s"))
        elif e.type == "DataSafetyChecked":
            safe = detail.data_safety is not None and detail.data_safety.safe
            marks.append(charts.Mark("service", t, "square", "m-safe" if safe else "m-unsafe", f"{t:.3f} s {e.text}"))
        elif e.type in ("TrialFinished", "TrialAborted", "ClusterDown"):
            marks.append(charts.Mark("service", t, "tick", "m-end", f"{t:.3f} s {e.type}: {_cut(e.text)}"))
    if agent_start is not None:  # still at work (a running trial)
        spans.append(charts.Span("agent", agent_start, end, "span-agent", "agent at work"))
    members: list[str] = []
    samples: list[tuple[float, dict[str, str], str | None]] = []
    windows: list[tuple[float, float, int, int]] = []
    for e, d in data:
        if e.type == "ClusterUp":
            members += [m["name"] for m in d.get("members", []) if m["name"] not in members]
        elif e.type == "StateSnapshot":
            state = d.get("state") or {}
            status = {}
            for m in state.get("members", []):
                if m["name"] not in members:
                    members.append(m["name"])
                status[m["name"]] = "healthy" if m.get("healthy") else ("unhealthy" if m.get("reachable") else "down")
            samples.append((e.offset_s, status, state.get("leader")))
        elif e.type == "WorkloadSampled":
            start, stop = d["window"]
            windows.append((float(start), float(stop), int(d["writes_ok"]) + int(d["reads_ok"]),
                            int(d["writes_failed"]) + int(d["reads_failed"])))
    out = {"timeline": charts.timeline(scale, LANES, marks, spans, incident, guides)}
    if samples:
        out["health"] = charts.member_health(scale, members, samples, incident, detail.words.leader)
    if windows:
        out["workload"] = charts.workload(scale, windows, incident)
    return out
