"""What the rows of the read models (:mod:`opeval.projections._queries`) add up to:
aggregates, comparisons with bootstrap confidence intervals, agent versus self-healing,
rankings (postmortems: :mod:`opeval.export`).

Control trials (the read models' ``trials.control``: no fault injected, the agent paged
anyway) never enter a fault aggregate: recovery rates, times and scores are over fault
trials only, and controls get their own aggregate of false-alarm figures."""

from __future__ import annotations

import statistics
from typing import Any

import duckdb

from opeval.errors import UsageError
from opeval.projections._intervals import difference_interval, mean_interval
from opeval.projections._queries import baseline_trials, campaign_rows
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
        pairs = [(_num(a_by[k][metric]), _num(b_by[k][metric])) for k in sorted(a_by, key=str)] if paired else []
        # A metric is paired only where every pair has it on both sides; one that a side lacks
        # in some pair (a baseline runs no command, so has no first diagnostic) compares each
        # side's own values, unpaired, rather than dropping the pairs or the metric.
        metric_paired = paired and all(x is not None and y is not None for x, y in pairs)
        if metric_paired:
            av, bv = [x for x, _ in pairs], [y for _, y in pairs]
        else:
            av = [v for v in (_num(r[metric]) for r in a_rows) if v is not None]
            bv = [v for v in (_num(r[metric]) for r in b_rows) if v is not None]
        a_mean = statistics.fmean(av) if av else None
        b_mean = statistics.fmean(bv) if bv else None
        ci = difference_interval(av, bv, paired=metric_paired) if av and bv else None
        metrics.append({
            "metric": metric, "higher_is_better": higher_better, "paired": metric_paired,
            "a_n": len(av), "a_mean": a_mean, "a_median": statistics.median(av) if av else None,
            "b_n": len(bv), "b_mean": b_mean, "b_median": statistics.median(bv) if bv else None,
            "delta": None if a_mean is None or b_mean is None else b_mean - a_mean,
            "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None,
        })
    return {"paired": paired, "a_trials": len(a_rows), "b_trials": len(b_rows), "a_left_out": a_counts,
            "b_left_out": b_counts, "metrics": metrics}


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
    # A campaign of one chaos kind ranks the same groups twice (all, and its kind): bootstrap each once.
    intervals: dict[tuple[float, ...], tuple[float, float] | None] = {}
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
            key = tuple(scores)
            if key not in intervals:
                intervals[key] = mean_interval(scores)
            ci = intervals[key]
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


#: How :func:`baseline_rows` chooses, as the comparison states it.
BASELINE_RULE = ("per chaos and target: the campaign's own baseline trials where it has them, else the "
                 "store's first baseline trials, one per agent trial, with its seed where one exists")


def _kind(r: dict[str, Any]) -> tuple[str, str, str]:
    return r["subject"], r["chaos"], r["target"]


def baseline_rows(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The baseline (no agent) trials a campaign's agent trials are held against, by one
    rule (:data:`BASELINE_RULE`), kind by kind (subject, chaos, target):

    the campaign's own measured baseline trials of that kind, if it has any; otherwise,
    from the store's measured baseline trials of that kind in the order they started, for
    each measured agent trial the first not yet chosen with its seed (so they pair up), or
    failing that the first not yet chosen. Trials added later come after every one chosen:
    once each agent trial has a baseline of its seed, the answer never changes as the
    store grows. A kind with no baseline anywhere gets none (the comparison says so)."""
    agents = measured([r for r in campaign if r["agent"] != "none"])
    kinds = sorted({_kind(r) for r in agents})
    own: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in measured([r for r in campaign if r["agent"] == "none"]):
        if _kind(r) in kinds:
            own.setdefault(_kind(r), []).append(r)
    out = [r for r in campaign if r["agent"] == "none" and _kind(r) in own and r in own[_kind(r)]]
    need = [k for k in kinds if k not in own]
    if not need:
        return out
    pool = measured(baseline_trials(con, rules, need))
    chosen: dict[str, dict[str, Any]] = {}
    unmatched = []
    for r in (r for r in agents if _kind(r) in need):
        match = next((b for b in pool if b["trial_id"] not in chosen and b["seed"] == r["seed"]
                      and _kind(b) == _kind(r)), None)
        if match is None:
            unmatched.append(r)
        else:
            chosen[match["trial_id"]] = match
    for r in unmatched:
        match = next((b for b in pool if b["trial_id"] not in chosen and _kind(b) == _kind(r)), None)
        if match is not None:
            chosen[match["trial_id"]] = match
    return out + [b for b in pool if b["trial_id"] in chosen]


def compare_baseline(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign_id: str) -> dict[str, Any]:
    """The campaign's agent trials against self-healing on the same chaos (baselines chosen
    by :func:`baseline_rows`); its control trials against baseline controls (``controls``:
    the harm each did on a healthy system). Agent trials of a kind with no baseline are left
    out of the comparison and named (``without_baseline``)."""
    campaign = campaign_rows(con, rules, campaign_id)
    rows = [r for r in campaign if r["agent"] != "none"]
    if not measured(rows):
        raise UsageError("this campaign has no agent trials to hold against the baseline")
    base = baseline_rows(con, rules, campaign)
    if not base:
        chaos = ", ".join(sorted({f"{r['chaos']} --target {r['target']}" for r in rows}))
        raise UsageError(f"no baseline trials for {chaos} in this store: run `opeval run --baseline --chaos ...` first")
    covered = {_kind(b) for b in base}
    result = compare_groups(base, [r for r in rows if _kind(r) in covered])
    result["baseline_trials"] = len(faults(base))
    result["baseline_rule"] = BASELINE_RULE
    result["baseline_from_campaign"] = sum(b.get("campaign_id") == campaign_id for b in base)
    result["without_baseline"] = sorted(f"{k[1]} --target {k[2]}" for k in {_kind(r) for r in rows} - covered)
    if result["controls"] is not None:
        result["controls"]["baseline_trials"] = len(controls(base))
    return result
