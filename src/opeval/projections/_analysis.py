"""Questions asked of the read models: scores per trial, comparisons with bootstrap
confidence intervals, agent versus self-healing, re-scoring, postmortems.

Control trials (the read models' ``trials.control``: no fault injected, the agent paged
anyway) never enter a fault aggregate: recovery rates, times and scores are over fault
trials only, and controls get their own aggregate of false-alarm figures."""

from __future__ import annotations

import json
import re
import statistics
from typing import Any

import duckdb

from opeval.errors import UsageError
from opeval.events import Words
from opeval.projections._engine import query
from opeval.projections._intervals import difference_interval, mean_interval
from opeval.projections._rules import RuleSet

#: Metrics compared between groups of trials, and whether higher is better.
COMPARED = {
    "recovered": True, "ttd_s": False, "ttr_s": False, "first_diagnostic_s": False, "first_remediation_s": False,
    "availability": True, "lost_writes": False, "commands": False, "destructive": False, "thrashing": False,
    "tokens": False, "cost_usd": False, "composite": True,
}
#: The chaos kind of a control trial. The read models own the rule (``trials.control``);
#: this is for what is read before them (a trial still running).
CONTROL_KIND = "none"
#: What a control trial reports instead (read-model columns), and whether higher is better:
#: commands run, remediations made (remediation or destructive commands), destructive
#: commands, availability from ChaosVerified to the trial's end, acknowledged writes lost,
#: and whether the agent left the system unhealthy.
CONTROL_COMPARED = {
    "commands": False, "remediations": False, "destructive": False, "availability": True, "lost_writes": False,
    "left_broken": False,
}


def trial_scores(con: duckdb.DuckDBPyConnection, rules: RuleSet, where: str = "TRUE",
                 params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Trials joined with their scores under ``rules``, oldest first."""
    return query(con, f"""
        SELECT t.*, s.* EXCLUDE (trial_id, rule_set, rule_hash), u.* EXCLUDE (trial_id)
        FROM trials t JOIN scores s ON s.trial_id = t.trial_id AND s.rule_set = ? AND s.rule_hash = ?
        LEFT JOIN ({MODEL_USE}) u ON u.trial_id = t.trial_id
        WHERE {where} ORDER BY t.started_at, t.idx""", [rules.name, rules.hash, *(params or [])])


#: Per trial, whatever model agent ran it: the model asked for, the server's name, every kind of token.
MODEL_USE = """
    SELECT trial_id, string_agg(DISTINCT model, ', ' ORDER BY model) AS called_model,
           string_agg(DISTINCT served_model, ', ' ORDER BY served_model) AS served_model, count(*) AS calls,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
           count(*) FILTER (WHERE cut) AS calls_cut
    FROM usage GROUP BY trial_id"""


def model_use_line(t: dict[str, Any]) -> str:
    """Model, calls, tokens (cache included) and cost of one trial, the same for every agent kind."""
    if not t.get("calls"):
        return "no model calls"
    served = (f" (served as {t['served_model']})" if t.get("served_model") and t["served_model"] != t["called_model"]
              else "")
    cost = "cost unknown" if t.get("cost_usd") is None else f"${float(t['cost_usd']):.4f}"
    cut = f", {t['calls_cut']} cut by the deadline" if t.get("calls_cut") else ""
    return (f"{t['called_model']}{served}: {t['calls']} calls{cut}, {t['tokens']} tokens ({t['input_tokens']} input, "
            f"{t['cache_read_tokens']} cache read, {t['cache_write_tokens']} cache write, {t['output_tokens']} output), "
            f"{cost}")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    return float(v)


def controls(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The control trials among ``rows`` (no fault injected)."""
    return [r for r in rows if r.get("control")]


def faults(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fault trials among ``rows``: everything but controls."""
    return [r for r in rows if not r.get("control")]


def false_alarms(row: dict[str, Any]) -> dict[str, Any] | None:
    """A control trial's false-alarm figures (None for a fault trial)."""
    return {k: row[k] for k in CONTROL_COMPARED} if row.get("control") else None


def measured(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that measured something: not aborted (interrupted, or its harness was
    killed), not ended in error (the harness failed, not the system or the agent), not
    still running. Everything else is counted by :func:`left_out`, never as a failure."""
    return [r for r in rows if r["outcome"] not in (None, "aborted", "error")]


def left_out(rows: list[dict[str, Any]]) -> dict[str, int]:
    """What an aggregate over ``rows`` must show beside it: trials aborted (left out of
    every mean), in error (left out too), extra attempts at an index (``--resume`` retries), unisolated."""
    return {
        "aborted": sum(r["outcome"] == "aborted" for r in rows),
        "running": sum(r["outcome"] is None for r in rows),
        "errors": sum(r["outcome"] == "error" for r in rows),
        "retried": len(rows) - len({(r["campaign_id"], r["idx"]) for r in rows}),
        "unisolated": sum(bool(r.get("unisolated")) for r in rows),
    }


def compare_groups(a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: mean and median of each group, delta (b - a), bootstrap 95 % CI.

    Trials pair up by (chaos, target, seed) when every trial of both groups has a match.
    Aborted and running trials measure nothing: they are counted (``a_left_out``), not compared.
    Fault trials only; control trials are compared apart, on their false-alarm figures,
    under ``controls`` (None when neither group has any).
    """
    result = _compare(faults(a_rows), faults(b_rows), COMPARED)
    a_controls, b_controls = controls(a_rows), controls(b_rows)
    result["controls"] = (_compare(a_controls, b_controls, CONTROL_COMPARED) if a_controls or b_controls
                          else None)
    return result


def _compare(a_rows: list[dict[str, Any]], b_rows: list[dict[str, Any]], compared: dict[str, bool]
             ) -> dict[str, Any]:
    a_counts, b_counts = left_out(a_rows), left_out(b_rows)
    a_rows, b_rows = measured(a_rows), measured(b_rows)
    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["chaos"], r["target"], r["seed"])

    a_by, b_by = {key(r): r for r in a_rows}, {key(r): r for r in b_rows}
    paired = bool(a_rows) and len(a_by) == len(a_rows) == len(b_rows) == len(b_by) and a_by.keys() == b_by.keys()
    metrics = []
    for metric, higher_better in compared.items():
        if paired:
            pairs = [(_num(a_by[k][metric]), _num(b_by[k][metric])) for k in sorted(a_by, key=str)]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            av, bv = [x for x, _ in pairs], [y for _, y in pairs]
        else:
            av = [v for v in (_num(r[metric]) for r in a_rows) if v is not None]
            bv = [v for v in (_num(r[metric]) for r in b_rows) if v is not None]
        a_mean = statistics.fmean(av) if av else None
        b_mean = statistics.fmean(bv) if bv else None
        ci = difference_interval(av, bv, paired=paired) if av and bv else None
        metrics.append({
            "metric": metric, "higher_is_better": higher_better,
            "a_n": len(av), "a_mean": a_mean, "a_median": statistics.median(av) if av else None,
            "b_n": len(bv), "b_mean": b_mean, "b_median": statistics.median(bv) if bv else None,
            "delta": None if a_mean is None or b_mean is None else b_mean - a_mean,
            "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
        })
    return {"paired": paired, "a_trials": len(a_rows), "b_trials": len(b_rows), "a_left_out": a_counts,
            "b_left_out": b_counts, "metrics": metrics}


def campaign_rows(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign_id: str) -> list[dict[str, Any]]:
    """Every trial of one campaign with its scores, aborted ones and every attempt of an
    index included: aggregates take :func:`measured` rows and show :func:`left_out`."""
    return trial_scores(con, rules, "t.campaign_id = ?", [campaign_id])


def approval_summary(con: duckdb.DuckDBPyConnection, campaign_id: str) -> list[dict[str, Any]]:
    """Per agent and variant, what its approval gate did: commands gated, allowed and
    denied (by the policy, a person, the timeout), the denied that would have been
    destructive, and the time its agent waited for a person (left out of time to recover)."""
    return query(con, """
        SELECT t.agent, t.variant, any_value(a.mode) AS mode, count(*) AS gated,
               count(*) FILTER (WHERE a.decision = 'allowed') AS allowed,
               count(*) FILTER (WHERE a.decision = 'denied') AS denied,
               count(*) FILTER (WHERE a.decision = 'denied' AND a.class = 'destructive') AS denied_destructive,
               count(*) FILTER (WHERE a.decided_by LIKE 'person:%') AS by_person,
               count(*) FILTER (WHERE a.decided_by = 'timeout') AS timed_out,
               round(sum(a.waited_s), 6) AS waited_s
        FROM approvals a JOIN trials t USING (trial_id)
        WHERE t.campaign_id = ?
        GROUP BY t.agent, t.variant ORDER BY t.agent, t.variant""", [campaign_id])


def denied_commands(con: duckdb.DuckDBPyConnection, campaign_id: str) -> list[dict[str, Any]]:
    """Every command the approval gate denied in a campaign, in trial and step order."""
    return query(con, """
        SELECT a.trial_id, t.agent, t.variant, a.step, a.command, a.class, a.decided_by, a.reason, a.waited_s
        FROM approvals a JOIN trials t USING (trial_id)
        WHERE t.campaign_id = ? AND a.decision = 'denied'
        ORDER BY t.started_at, a.trial_id, a.step""", [campaign_id])


#: Outcomes that settle a trial's index: an aborted attempt leaves it to be run again.
REAL_OUTCOMES = ("recovered", "not_recovered", "error")


def campaign_title(name: str, spec: dict[str, Any] | None, trials_planned: int | None) -> str:
    """A campaign's name, with the seed of a one-trial run (``opeval run``) whose recorded
    name lacks it, so that such runs can be told apart."""
    spec = spec or {}
    if trials_planned == 1 and "file" not in spec and spec.get("seed") is not None and "seed" not in name:
        return f"{name} seed {spec['seed']}"
    return name


def campaign_overview(con: duckdb.DuckDBPyConnection, where: str = "TRUE",
                      params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Campaigns, newest first, with their trials counted by index: ``done`` indexes that
    have a real outcome (and how many of them recovered, did not, or ended in error) out of
    ``trials_planned``; ``aborted`` attempts and ``running`` trials counted apart. ``status``
    is ``finished``, ``running`` or ``interrupted`` (unfinished, nothing running: a
    campaign file's run that ``--resume`` continues)."""
    real = ", ".join(f"'{o}'" for o in REAL_OUTCOMES)
    rows = query(con, f"""
        SELECT c.campaign_id, c.name, c.started_at, c.trials_planned, c.finished, c.spec,
               count(DISTINCT t.idx) FILTER (WHERE t.outcome IN ({real})) AS done,
               count(t.trial_id) FILTER (WHERE t.outcome = 'aborted') AS aborted,
               count(t.trial_id) FILTER (WHERE t.trial_id IS NOT NULL AND t.outcome IS NULL) AS running,
               count(t.trial_id) FILTER (WHERE t.outcome = 'recovered') AS recovered,
               count(t.trial_id) FILTER (WHERE t.outcome = 'not_recovered') AS not_recovered,
               count(t.trial_id) FILTER (WHERE t.outcome = 'error') AS error
        FROM campaigns c LEFT JOIN trials t ON t.campaign_id = c.campaign_id
        WHERE {where}
        GROUP BY ALL ORDER BY c.started_at DESC NULLS LAST, c.campaign_id""", params or [])
    for r in rows:
        spec = None
        if r["spec"]:
            try:
                spec = json.loads(r["spec"])
            except ValueError:
                spec = None
        r["spec"] = spec if isinstance(spec, dict) else {}
        r["file"] = r["spec"].get("file")
        r["title"] = campaign_title(r["name"] or "", r["spec"], r["trials_planned"])
        r["finished"] = bool(r["finished"])
        r["status"] = "finished" if r["finished"] else "running" if r["running"] else "interrupted"
    return rows


def rank_variants(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Which configuration performs best: variants ranked by mean composite score, with a
    bootstrap 95 % CI, over all fault trials (``scope`` ``all``) and per chaos kind.

    Beside each, how the variant did on control trials (``control_*``: trials, mean
    remediations, destructive commands, lowest availability, times it left the system
    broken); a variant with controls only is listed in scope ``all`` with no score."""
    fault_rows = faults(rows)
    on_controls = {(g["variant"], g["agent"]): g for g in control_summary(rows)}
    scopes: dict[str, list[dict[str, Any]]] = {"all": fault_rows}
    for r in fault_rows:
        scopes.setdefault(r["chaos"], []).append(r)
    # Aborted trials stay in the groups only to be counted.
    out = []
    for scope, scoped in scopes.items():
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in scoped:
            groups.setdefault((r["variant"], r["agent"]), []).append(r)
        if scope == "all":
            for key in on_controls:
                groups.setdefault(key, [])
        ranked = []
        for (variant, agent), every in groups.items():
            rs = measured(every)
            scores = [float(r["composite"]) for r in rs]
            ci = mean_interval(scores)
            ttrs = [r["ttr_s"] for r in rs if r["ttr_s"] is not None]
            ranked.append({"scope": scope, "variant": variant, "agent": agent, "trials": len(rs),
                           "mean_composite": statistics.fmean(scores) if scores else None,
                           "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
                           "recovery_rate": sum(bool(r["recovered"]) for r in rs) / len(rs) if rs else None,
                           "mean_ttr_s": statistics.fmean(ttrs) if ttrs else None, **left_out(every),
                           **_on_controls(on_controls.get((variant, agent)))})
        ranked.sort(key=lambda g: (g["mean_composite"] is None, -(g["mean_composite"] or 0.0), g["variant"]))
        for i, g in enumerate(ranked, 1):
            g["rank"] = i
        out.extend(ranked)
    return out


def _on_controls(g: dict[str, Any] | None) -> dict[str, Any]:
    """A variant's control figures as the ranking carries them."""
    return {"control_trials": g["trials"] if g else 0,
            "control_mean_remediations": g["mean_remediations"] if g else None,
            "control_destructive": g["destructive"] if g else 0,
            "control_min_availability": g["min_availability"] if g else None,
            "control_left_broken": g["left_broken"] if g else 0}


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregates of fault trials per agent/variant: trials measured, recovery rate, mean
    TTR, composite, and beside them what :func:`left_out` counts. Controls are left to
    :func:`control_summary`."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in faults(rows):
        groups.setdefault((r["agent"], r["variant"]), []).append(r)
    out = []
    for (agent, variant), every in sorted(groups.items()):
        rs = measured(every)
        ttrs = [r["ttr_s"] for r in rs if r["ttr_s"] is not None]
        out.append({
            "agent": agent, "variant": variant, "trials": len(rs),
            "recovery_rate": sum(bool(r["recovered"]) for r in rs) / len(rs) if rs else None,
            "mean_ttr_s": statistics.fmean(ttrs) if ttrs else None,
            "mean_composite": statistics.fmean(r["composite"] for r in rs) if rs else None,
            "destructive": sum(r["destructive"] for r in rs), "lost_writes": sum(r["lost_writes"] for r in rs),
            **left_out(every),
        })
    return out


def control_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Aggregates of control trials (no fault injected) per agent/variant: the harm a false
    alarm did. Trials measured, mean commands and remediations, destructive commands in
    all, lowest and mean availability, acknowledged writes lost, trials the agent left
    broken, and beside them what :func:`left_out` counts."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in controls(rows):
        groups.setdefault((r["agent"], r["variant"]), []).append(r)
    out = []
    for (agent, variant), every in sorted(groups.items()):
        rs = measured(every)
        avail = [float(r["availability"]) for r in rs if r["availability"] is not None]
        out.append({
            "agent": agent, "variant": variant, "trials": len(rs),
            "mean_commands": statistics.fmean(r["commands"] for r in rs) if rs else None,
            "mean_remediations": statistics.fmean(r["remediations"] for r in rs) if rs else None,
            "destructive": sum(r["destructive"] for r in rs),
            "min_availability": min(avail) if avail else None,
            "mean_availability": statistics.fmean(avail) if avail else None,
            "lost_writes": sum(r["lost_writes"] for r in rs),
            "left_broken": sum(bool(r["left_broken"]) for r in rs),
            **left_out(every),
        })
    return out


def baseline_rows(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The baseline (no agent) trials a campaign's agent trials are held against, by one rule.

    The campaign's own baseline trials with the same subject, chaos and target, if it has
    any. Otherwise, from the store's measured baseline trials in the order they started:
    for each measured agent trial, the first not yet chosen with the same subject, chaos,
    target and seed (so they pair up); for an agent trial with no such match, the first not
    yet chosen of its subject, chaos and target. Trials added later come after every one
    chosen, so once each agent trial has its baseline the answer never changes as the
    store grows."""
    agents = measured([r for r in campaign if r["agent"] != "none"])
    kinds = sorted({(r["subject"], r["chaos"], r["target"]) for r in agents})
    if not kinds:
        return []
    own = [r for r in campaign if r["agent"] == "none" and (r["subject"], r["chaos"], r["target"]) in kinds]
    if own:
        return own
    cond = " OR ".join("(t.subject = ? AND t.chaos = ? AND t.target = ?)" for _ in kinds)
    params: list[Any] = [v for k in kinds for v in k]
    pool = measured(trial_scores(con, rules, f"t.agent = 'none' AND ({cond})", params))
    chosen: dict[str, dict[str, Any]] = {}
    unmatched = []
    for r in agents:
        match = next((b for b in pool if b["trial_id"] not in chosen and b["seed"] == r["seed"]
                      and (b["subject"], b["chaos"], b["target"]) == (r["subject"], r["chaos"], r["target"])), None)
        if match is None:
            unmatched.append(r)
        else:
            chosen[match["trial_id"]] = match
    for r in unmatched:
        match = next((b for b in pool if b["trial_id"] not in chosen
                      and (b["subject"], b["chaos"], b["target"]) == (r["subject"], r["chaos"], r["target"])), None)
        if match is not None:
            chosen[match["trial_id"]] = match
    return [b for b in pool if b["trial_id"] in chosen]


def compare_baseline(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign_id: str) -> dict[str, Any]:
    """The campaign's agent trials against self-healing on the same chaos (baselines chosen
    by :func:`baseline_rows`); its control trials against baseline controls (``controls``:
    the harm each did on a healthy system)."""
    campaign = campaign_rows(con, rules, campaign_id)
    rows = [r for r in campaign if r["agent"] != "none"]
    if not measured(rows):
        raise UsageError("this campaign has no agent trials to hold against the baseline")
    base = baseline_rows(con, rules, campaign)
    if not base:
        chaos = ", ".join(sorted({f"{r['chaos']} --target {r['target']}" for r in rows}))
        raise UsageError(f"no baseline trials for {chaos} in this store: run `opeval run --baseline --chaos ...` first")
    result = compare_groups(base, rows)
    result["baseline_trials"] = len(faults(base))
    result["baseline_rule"] = ("the campaign's own baseline trials" if base[0].get("campaign_id") == campaign_id
                               else "the store's first baseline trials with the same chaos, target and seed")
    if result["controls"] is not None:
        result["controls"]["baseline_trials"] = len(controls(base))
    return result


def export_trial(con: duckdb.DuckDBPyConnection, rules: RuleSet, trial_id: str, fmt: str) -> str:
    """A postmortem of one trial as Markdown, JSON or HTML. A control trial's says no fault
    was injected and gives its false-alarm figures (JSON: ``false_alarms``) instead of
    detection and recovery times."""
    rows = trial_scores(con, rules, "t.trial_id = ?", [trial_id])
    if not rows:
        raise UsageError(f"trial {trial_id} has no read model yet")
    t = rows[0]
    events = query(con, "SELECT position, version, type, state FROM events WHERE aggregate_id = ? ORDER BY version",
                   [trial_id])
    for e in events:
        e["state"] = json.loads(e["state"])
    commands = query(con, "SELECT * FROM commands WHERE trial_id = ? ORDER BY offset_s, position", [trial_id])
    if fmt == "json":
        return json.dumps({"trial": t, "rule_set": rules.key, "false_alarms": false_alarms(t), "commands": commands,
                           "events": events}, indent=2, default=str)
    doc = _postmortem(t, rules, events, commands)
    if fmt == "md":
        return doc
    if fmt == "html":
        return _html(doc)
    raise UsageError(f"unknown export format {fmt!r}: choose md, json or html")


def _fmt_s(v: Any) -> str:
    return "-" if v is None else f"{float(v):.3f} s"


def _timeline_line(e: dict[str, Any], control: bool = False, words: Words | None = None) -> str | None:
    s, kind = e["state"], e["type"]
    if control and kind == "ChaosInjected":
        return f"| {float(s['offset_s']):8.3f} s | no fault injected (a control trial) |"
    if control and kind == "ChaosVerified":
        return f"| {float(s['offset_s']):8.3f} s | the clock starts: {s['effect']} |"
    w = words or Words()
    lines = {
        "ClusterUp": lambda: f"cluster of {len(s['members'])} members healthy",
        "ChaosInjected": lambda: f"fault injected: {s['kind']} on {s['target']}",
        "ChaosVerified": lambda: f"fault verified: {s['effect']}",
        "FaultDetected": lambda: "monitor alert: " + "; ".join(s["symptoms"]),
        "AgentStarted": lambda: f"agent {s['agent']['name']} paged",
        "AgentCommandExecuted": lambda: f"agent ran {md_code(s['command'])} (exit {s['exit_code']})",
        "AgentFinished": lambda: f"agent stopped ({s['reason']}): {md_text(s['summary'])}",
        "MemberProcessStarted": lambda: f"{s['member']} process started ({s['reason']})",
        "MemberProcessExited": lambda: f"{s['member']} process ended",
        "RecoveryDetected": lambda: f"service back: criteria met at {s['criteria_met_offset_s']:.3f} s, held {s['held_s']:.1f} s",
        "DataSafetyChecked": lambda: f"data check: {s['missing']} of {s['acknowledged']} {w.promises} {w.missing}",
        "TrialFinished": lambda: f"trial ended: {s['outcome']}",
    }
    fn = lines.get(kind)
    return None if fn is None else f"| {float(s['offset_s']):8.3f} s | {md_cell(fn())} |"


def _postmortem(t: dict[str, Any], rules: RuleSet, events: list[dict[str, Any]],
                commands: list[dict[str, Any]]) -> str:
    if t.get("control"):
        return _control_postmortem(t, events, commands)
    w = _words(t["subject"])
    outcome = "RECOVERED" if t["recovered"] else t["outcome"].upper().replace("_", " ")
    out = [
        f"# Postmortem: {t['subject']} {t['chaos']} on {t['victim'] or t['target']} (trial {t['trial_id'][:8]})",
        "",
        "## Summary",
        "",
        f"- **Outcome:** {outcome} — {t['reason']}",
        _responder(t),
        f"- **Time to detect:** {_fmt_s(t['ttd_s'])}; **time to recover:** {_fmt_s(t['ttr_s'])} (from fault verified)",
        f"- **Impact:** {100 * float(t['availability']):.1f}% of client operations succeeded during the incident; "
        f"longest unavailability {_fmt_s(t['longest_unavailable_s'])}",
        f"- **Data:** {t['lost_writes']} {w.promises} {w.lost} of {t['acknowledged'] or 0}",
        f"- **Score ({rules.key}):** {t['composite']:.2f}",
        "",
        "## Timeline",
        "",
        "| time | what happened |",
        "| ---: | --- |",
    ]
    out += [line for e in events if (line := _timeline_line(e, words=w))]
    out += _agent_steps(events, commands, "No agent: the cluster was left to heal itself.")
    out += [
        "", "## Root cause", "",
        f"Injected by the harness: `{t['chaos']}` targeting `{t['target']}` (hit {t['victim']}).",
        "", "## Detection and recovery", "",
        f"- Fault verified at {_fmt_s(t['verified_s'])}, detected at {_fmt_s(t['detected_s'])}, "
        f"recovery criteria first held at {_fmt_s(t['recovered_s'])}.",
        _agent_line(t),
        "", "## Lessons", "",
        "- What slowed detection or repair, and what would have prevented the fault, go here.",
        "",
    ]
    return "\n".join(out)


def _agent_line(t: dict[str, Any]) -> str:
    if t["agent"] == "none":
        # The baseline runs no command; "first diagnostic after -" would read as a missing figure.
        return "- No agent responded: recovery, if any, was the system's own (restart policy " \
               f"{t['restart_policy']})."
    return (f"- Agent first diagnostic after {_fmt_s(t['first_diagnostic_s'])}, first remediation after "
            f"{_fmt_s(t['first_remediation_s'])}; {t['commands']} commands ({t['unique_commands']} distinct), "
            f"{t['destructive']} destructive, thrashing {t['thrashing']}.")


def _responder(t: dict[str, Any]) -> str:
    return (f"- **Responder:** {'self-healing only (no agent)' if t['agent'] == 'none' else 'agent ' + t['agent']}"
            f" (restart policy {t['restart_policy']}, seed {t['seed']})"
            + (", **UNISOLATED**: the agent ran beside the harness (`--sandbox none`)" if t.get("unisolated")
               else f", sandbox {t['sandbox']}" if t.get("sandbox") else "")
            + ("" if t["agent"] == "none" else f"\n- **Model use:** {md_text(model_use_line(t))}"))


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|~&"})  # what inline text may hold


def md_text(text: str) -> str:
    """Untrusted text (what an agent wrote) as literal inline Markdown: one line, every
    character Markdown could read as syntax escaped."""
    return " ".join(str(text).split()).translate(_MD_SPECIAL)


def _longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall("`+", text)), default=0)


def md_code(text: str) -> str:
    """Untrusted text as one inline code span, whatever backticks it holds."""
    text = " ".join(str(text).split())
    ticks = "`" * (1 + _longest_backticks(text))
    return f"{ticks} {text} {ticks}"


def md_cell(text: str) -> str:
    """A table cell: a ``|`` splits cells even inside code spans, so it is escaped everywhere."""
    return text.replace("\\|", "|").replace("|", "\\|")


def md_block(text: str, indent: str = "") -> list[str]:
    """Untrusted text as a fenced block whose fence no line of it can close."""
    fence = "`" * max(3, 1 + _longest_backticks(text))
    return [f"{indent}{fence}text", *[f"{indent}{line}" for line in text.splitlines()], f"{indent}{fence}"]


def _agent_steps(events: list[dict[str, Any]], commands: list[dict[str, Any]], no_agent: str) -> list[str]:
    """What the agent said (its reasoning), ran and had refused, step by step, all escaped."""
    out = ["", "## What the agent saw and did", ""]
    if not any(e["type"] == "AgentStarted" for e in events):
        return [*out, no_agent]
    if not commands:
        out += ["The agent ran no command.", ""]
    by_pos = {c["position"]: c for c in commands}
    for e in events:
        st = e["state"]
        if e["type"] == "AgentReasoning" and str(st.get("text", "")).strip():
            out += [f"{st['step']}. The agent said:", "", *md_block(str(st["text"]).strip(), "   "), ""]
        elif e["type"] == "AgentToolError":
            what = f"a call of `{st['tool']}` was refused" if st.get("tool") else "it called no tool"
            out += [f"{st['step']}. {what}: {md_text(st['error'])}", ""]
        elif e["type"] == "AgentCommandExecuted" and e["position"] in by_pos:
            c = by_pos[e["position"]]
            out.append(f"{c['step']}. {md_code(c['command'])} — exit {c['exit_code']}, {c['class']}"
                       + (", timed out" if c["timed_out"] else "") + (", output truncated" if c["truncated"] else ""))
            text = (st.get("stdout") or "") + (st.get("stderr") or "")
            if text.strip():
                out += ["", *md_block("\n".join(text.strip().splitlines()[:12]), "   ")]
            out.append("")
        elif e["type"] == "AgentFinished":
            out += [f"The agent stopped ({st['reason']}) after {st['steps']} steps, saying:", "",
                    *md_block(str(st["summary"]).strip() or "(nothing)", "   ")]
    return out


def _words(subject: str) -> Words:
    """The subject's report words (static data: nothing of the subject is run)."""
    from opeval.subjects import words_for  # imported here: loading the subjects pulls their clients in

    return words_for(subject)


def _control_postmortem(t: dict[str, Any], events: list[dict[str, Any]], commands: list[dict[str, Any]]) -> str:
    """A control trial: no fault, so no time to detect or recover and no score; what the
    false alarm cost instead."""
    w = _words(t["subject"])
    started = next((e["state"] for e in events if e["type"] == "TrialStarted"), {})
    alert = ((started.get("chaos") or {}).get("params") or {}).get("alert")
    if t["outcome"] is None:
        outcome = "RUNNING"
    elif t["left_broken"]:
        outcome = "LEFT BROKEN: the system was unhealthy at the end"
    elif t["outcome"] == "recovered":
        outcome = "HEALTHY at the end"
    else:
        outcome = t["outcome"].upper().replace("_", " ")
    out = [
        f"# Postmortem: {t['subject']} control trial, no fault injected (trial {t['trial_id'][:8]})",
        "",
        "## Summary",
        "",
        "- **Control trial: no fault was injected.** The responder was paged with an alert whose cause was not real"
        + (f": “{alert}”" if alert else "") + ".",
        f"- **Outcome:** {outcome} — {t['reason']}",
        _responder(t),
        f"- **False alarm:** {t['commands']} commands run, {t['remediations']} remediations "
        f"(remediation or destructive commands), {t['destructive']} destructive; "
        f"left the system broken: {'yes' if t['left_broken'] else 'no'}",
        f"- **Impact:** {100 * float(t['availability']):.1f}% of client operations succeeded from the page to the "
        f"end of the trial; longest unavailability {_fmt_s(t['longest_unavailable_s'])}",
        f"- **Data:** {t['lost_writes']} {w.promises} {w.lost} of {t['acknowledged'] or 0}",
        "- Time to detect, time to recover and the composite score do not apply: there was no fault.",
        "",
        "## Timeline",
        "",
        "| time | what happened |",
        "| ---: | --- |",
    ]
    out += [line for e in events if (line := _timeline_line(e, control=True, words=w))]
    out += _agent_steps(events, commands, "No agent (a baseline control): nothing was done.")
    out += [
        "", "## Root cause", "",
        "None: no fault was injected (a control trial)."
        + (" The system was nonetheless unhealthy at the end: what broke, broke after the page." if t["left_broken"]
           else ""),
        "", "## The false alarm", "",
        f"- The clock started at {_fmt_s(t['verified_s'])}; no agent was paged (a baseline control)." if t["agent"] == "none"
        else f"- The clock started at {_fmt_s(t['verified_s'])}, the agent was paged at {_fmt_s(t['agent_started_s'])}; "
        f"from the page, first diagnostic after {_fmt_s(t['first_diagnostic_s'])}, first remediation after "
        f"{_fmt_s(t['first_remediation_s'])}; {t['commands']} commands "
        f"({t['unique_commands']} distinct), {t['remediations']} remediations, {t['destructive']} destructive, "
        f"thrashing {t['thrashing']}.",
        "", "## Lessons", "",
        "- Whether the responder recognised the false alarm, and what it changed that it should have left alone, go here.",
        "",
    ]
    return "\n".join(out)


def _html(markdown: str) -> str:
    """The postmortem as a standalone page, rendered by a Markdown library with raw HTML
    switched off: whatever an agent wrote arrives as text, never as markup."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>opeval postmortem</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;padding:.5em}"
            "td{padding:0 .6em}</style></head><body>\n" + body + "\n</body></html>\n")
