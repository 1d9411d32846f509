"""The postmortem as Markdown. Whatever an agent wrote (its reasoning, commands, their
output, its summary) is untrusted: it is escaped so that it reads as literal text, in
Markdown and in the HTML rendered from it, and never closes a fence or splits a table row."""

from __future__ import annotations

import re
from typing import Any

from opeval.events import Trial, describe
from opeval.export._postmortem import Postmortem
from opeval.projections import model_use_line

#: Events a timeline leaves out: the workload's and the monitor's periodic samples, and
#: model calls (their totals are in the summary); the agent's words are in its own section.
_NOT_IN_TIMELINE = (Trial.WorkloadSampled, Trial.AgentUsage, Trial.AgentReasoning)

_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~&#"})  # what inline text may hold


def md_text(text: str) -> str:
    """Untrusted text as literal inline Markdown: one line, every character Markdown could
    read as syntax escaped."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)


def md_code(text: str) -> str:
    """Untrusted text as one inline code span, whatever backticks it holds."""
    text = " ".join(str(text).split())
    ticks = "`" * (1 + _longest_backticks(text))
    pad = " " if text.startswith("`") or text.endswith("`") else ""  # CommonMark strips one space each side
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_cell(text: str) -> str:
    """A table cell: a ``|`` splits cells even inside code spans, so it is escaped everywhere."""
    return text.replace("\\|", "|").replace("|", "\\|")


def md_block(text: str, indent: str = "") -> list[str]:
    """Untrusted text as a fenced block whose fence no line of it can close."""
    fence = "`" * max(3, 1 + _longest_backticks(text))
    return [f"{indent}{fence}text", *[f"{indent}{line}" for line in text.splitlines()], f"{indent}{fence}"]


def fmt_s(v: Any) -> str:
    """Seconds as every view of a trial prints them (``-`` when there is no value)."""
    return "-" if v is None else f"{float(v):.3f} s"


def timeline(pm: Postmortem) -> list[tuple[float, str, str]]:
    """(offset, event, what happened) for every event a timeline shows, in the words the
    CLI's ``opeval show`` uses (:func:`opeval.events.describe`)."""
    rows = []
    for e in pm.events:
        if isinstance(e, _NOT_IN_TIMELINE) or (isinstance(e, Trial.StateSnapshot) and e.phase == "periodic"):
            continue
        text = describe(e, pm.words)
        if text:
            rows.append((float(e.offset_s), type(e).__name__, text))
    return rows


def _timeline_md(pm: Postmortem) -> list[str]:
    out = ["## Timeline", "", "| time | event | what happened |", "| ---: | --- | --- |"]
    out += [f"| {offset:8.3f} s | {name} | {md_cell(md_text(text))} |" for offset, name, text in timeline(pm)]
    return out


def agent_steps(pm: Postmortem, no_agent: str) -> list[str]:
    """What the agent said (its reasoning), ran and had refused, step by step, all escaped."""
    out = ["", "## What the agent saw and did", ""]
    if pm.first(Trial.AgentStarted) is None:
        return [*out, no_agent]
    if not any(isinstance(e, Trial.AgentCommandExecuted) for e in pm.events):
        out += ["The agent ran no command.", ""]
    by_pos = {int(c["position"]): c for c in pm.commands}
    for e, pos in zip(pm.events, pm.positions, strict=True):
        if isinstance(e, Trial.AgentReasoning) and e.text.strip():
            out += [f"{e.step}. The agent said:", "", *md_block(e.text.strip(), "   "), ""]
        elif isinstance(e, Trial.AgentToolError):
            what = f"a call of {md_code(e.tool)} was refused" if e.tool else "it called no tool"
            out += [f"{e.step}. {what}: {md_text(e.error)}", ""]
        elif isinstance(e, Trial.AgentCommandExecuted):
            c = by_pos.get(pos, {})
            how = "timed out" if e.timed_out else f"exit {e.exit_code}"
            out.append(f"{e.step}. {md_code(e.command)} — {how}, {e.duration_s:.2f} s, {c.get('class', 'unknown')}"
                       + (", output truncated" if e.stdout_truncated or e.stderr_truncated else ""))
            text = e.stdout + e.stderr
            if text.strip():
                out += ["", *md_block("\n".join(text.strip().splitlines()[:12]), "   ")]
            out.append("")
        elif isinstance(e, Trial.AgentFinished):
            out += [f"The agent stopped ({md_text(e.reason)}) after {e.steps} steps, saying:", "",
                    *md_block(e.summary.strip() or "(nothing)", "   ")]
    return out


def _agent_line(t: dict[str, Any]) -> str:
    if t["agent"] == "none":
        # The baseline runs no command; "first diagnostic after -" would read as a missing figure.
        return "- No agent responded: recovery, if any, was the system's own (restart policy " \
               f"{t['restart_policy']})."
    return (f"- Agent first diagnostic after {fmt_s(t['first_diagnostic_s'])}, first remediation after "
            f"{fmt_s(t['first_remediation_s'])}; {t['commands']} commands ({t['unique_commands']} distinct), "
            f"{t['destructive']} destructive, thrashing {t['thrashing']}.")


def _responder(t: dict[str, Any]) -> str:
    return (f"- **Responder:** {'self-healing only (no agent)' if t['agent'] == 'none' else 'agent ' + t['agent']}"
            f" (restart policy {t['restart_policy']}, seed {t['seed']})"
            + (", **UNISOLATED**: the agent ran beside the harness (`--sandbox none`)" if t.get("unisolated")
               else f", sandbox {t['sandbox']}" if t.get("sandbox") else "")
            + ("" if t["agent"] == "none" else f"\n- **Model use:** {md_text(model_use_line(t))}"))


def title(pm: Postmortem) -> str:
    """The postmortem's title, plain text."""
    t = pm.trial
    if pm.control:
        return f"Postmortem: {t['subject']} control trial, no fault injected (trial {t['trial_id'][:8]})"
    return f"Postmortem: {t['subject']} {t['chaos']} on {t['victim'] or t['target']} (trial {t['trial_id'][:8]})"


def to_markdown(pm: Postmortem) -> str:
    """The postmortem as Markdown (a control trial's speaks of its false alarm instead)."""
    if pm.control:
        return _control_markdown(pm)
    t, w = pm.trial, pm.words
    outcome = ("RECOVERED" if t["recovered"] else "RUNNING" if t["outcome"] is None
               else t["outcome"].upper().replace("_", " "))
    out = [
        f"# {title(pm)}",
        "",
        "## Summary",
        "",
        f"- **Outcome:** {outcome} — {md_text(t['reason'])}",
        _responder(t),
        f"- **Time to detect:** {fmt_s(t['ttd_s'])}; **time to recover:** {fmt_s(t['ttr_s'])} (from fault verified)",
        f"- **Impact:** {100 * float(t['availability']):.1f}% of client operations succeeded during the incident; "
        f"longest unavailability {fmt_s(t['longest_unavailable_s'])}",
        f"- **Data:** {t['lost_writes']} {w.promises} {w.lost} of {t['acknowledged'] or 0}",
        f"- **Score ({pm.rules.key}):** {t['composite']:.2f}",
        "",
        *_timeline_md(pm),
        *agent_steps(pm, "No agent: the cluster was left to heal itself."),
        "", "## Root cause", "",
        f"Injected by the harness: {md_code(t['chaos'])} targeting {md_code(t['target'])} (hit {t['victim']}).",
        "", "## Detection and recovery", "",
        f"- Fault verified at {fmt_s(t['verified_s'])}, detected at {fmt_s(t['detected_s'])}, "
        f"recovery criteria first held at {fmt_s(t['recovered_s'])}.",
        _agent_line(t),
        "", "## Lessons", "",
        "- What slowed detection or repair, and what would have prevented the fault, go here.",
        "",
    ]
    return "\n".join(out)


def _control_markdown(pm: Postmortem) -> str:
    """A control trial: no fault, so no time to detect or recover and no score; what the
    false alarm cost instead."""
    t, w = pm.trial, pm.words
    started = pm.first(Trial.TrialStarted)
    alert = started.chaos.params.get("alert") if started is not None else None
    if t["outcome"] is None:
        outcome = "RUNNING"
    elif t["left_broken"]:
        outcome = "LEFT BROKEN: the system was unhealthy at the end"
    elif t["outcome"] == "recovered":
        outcome = "HEALTHY at the end"
    else:
        outcome = t["outcome"].upper().replace("_", " ")
    out = [
        f"# {title(pm)}",
        "",
        "## Summary",
        "",
        "- **Control trial: no fault was injected.** The responder was paged with an alert whose cause was not real"
        + (f": “{md_text(alert)}”" if alert else "") + ".",
        f"- **Outcome:** {outcome} — {md_text(t['reason'])}",
        _responder(t),
        f"- **False alarm:** {t['commands']} commands run, {t['remediations']} remediations "
        f"(remediation or destructive commands), {t['destructive']} destructive; "
        f"left the system broken: {'yes' if t['left_broken'] else 'no'}",
        f"- **Impact:** {100 * float(t['availability']):.1f}% of client operations succeeded from the page to the "
        f"end of the trial; longest unavailability {fmt_s(t['longest_unavailable_s'])}",
        f"- **Data:** {t['lost_writes']} {w.promises} {w.lost} of {t['acknowledged'] or 0}",
        "- Time to detect, time to recover and the composite score do not apply: there was no fault.",
        "",
        *_timeline_md(pm),
        *agent_steps(pm, "No agent (a baseline control): nothing was done."),
        "", "## Root cause", "",
        "None: no fault was injected (a control trial)."
        + (" The system was nonetheless unhealthy at the end: what broke, broke after the page." if t["left_broken"]
           else ""),
        "", "## The false alarm", "",
        f"- The clock started at {fmt_s(t['verified_s'])}; no agent was paged (a baseline control)." if t["agent"] == "none"
        else f"- The clock started at {fmt_s(t['verified_s'])}, the agent was paged at {fmt_s(t['agent_started_s'])}; "
        f"from the page, first diagnostic after {fmt_s(t['first_diagnostic_s'])}, first remediation after "
        f"{fmt_s(t['first_remediation_s'])}; {t['commands']} commands "
        f"({t['unique_commands']} distinct), {t['remediations']} remediations, {t['destructive']} destructive, "
        f"thrashing {t['thrashing']}.",
        "", "## Lessons", "",
        "- Whether the responder recognised the false alarm, and what it changed that it should have left alone, go here.",
        "",
    ]
    return "\n".join(out)
