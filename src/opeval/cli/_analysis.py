"""Analysis commands: analyze, compare, compare-baseline, rescore, export.

All of them read the DuckDB read models (brought up to date from the event log first)
and never write to the event store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from cyclopts import Parameter
from rich.markup import escape
from rich.table import Table

from opeval.errors import UsageError
from opeval.projections import (
    ReadModels,
    RuleSet,
    campaign_rows,
    compare_baseline,
    compare_groups,
    control_summary,
    export_trial,
    query,
    rank_variants,
    summary,
    trial_scores,
)
from opeval.store import EventStore, resolve_store_path

from ._app import app
from ._common import JsonFlag, StoreOption, out, print_json

RulesOption = Annotated[
    Path | None, Parameter(name="--rules", help="Scoring rule set (YAML); default: the shipped default rule set."),
]


def _rules(path: Path | None) -> RuleSet:
    return RuleSet.load(path) if path else RuleSet.default()


def _resolve(store: Path, prefix: str, want: str) -> str:
    with EventStore(store, writable=False) as es:
        kind, oid = es.resolve(prefix)
    if kind != want:
        raise UsageError(f"{prefix!r} is a {kind}, not a {want}: see `opeval list`")
    return oid.hex


def _scored(store: Path | None, rules: RuleSet) -> ReadModels:
    path = resolve_store_path(store)
    rm = ReadModels(path)
    rm.score(rules)
    return rm


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


@app.command
def analyze(campaign: str, /, *, rules: RulesOption = None, store: StoreOption = None, json: JsonFlag = False) -> int:
    """Scores and metrics of every trial of a campaign, and aggregates per agent/variant.

    Control trials (``--chaos none``: no fault, the agent paged anyway) are left out of the
    fault aggregates and get their own table of false-alarm figures.

    Parameters
    ----------
    campaign
        Campaign id or unique prefix.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    cid = _resolve(resolve_store_path(store), campaign, "campaign")
    with rm.connect() as con:
        rows = campaign_rows(con, rs, cid)
    groups = summary(rows)
    control_groups = control_summary(rows)
    ranking = rank_variants(rows)
    if json:
        print_json({"campaign_id": cid, "rule_set": rs.key, "trials": rows, "summary": groups,
                    "controls": control_groups, "ranking": ranking})
        return 0
    table = Table("trial", "agent", "chaos:target", "outcome", "TTD", "TTR", "avail", "lost", "cmds", "remed.",
                  "destr.", "thrash", "cost $", "score", title=f"campaign {cid[:8]} under {rs.key}",
                  caption="control: no fault injected (no TTD, TTR or score; availability to the trial's end)"
                  if control_groups else None)
    for r in rows:
        agent = r["agent"] + (" (unisolated)" if r["unisolated"] else "")
        chaos = "control (no fault)" if r["control"] else f"{r['chaos']}:{r['target']}"
        outcome = r["outcome"] or "running"
        if r["left_broken"]:
            outcome += " (left broken)"
        table.add_row(r["trial_id"][:8], agent, chaos, outcome,
                      _f(r["ttd_s"]), _f(r["ttr_s"]), _f(r["availability"]), _f(r["lost_writes"]), _f(r["commands"]),
                      _f(r["remediations"]), _f(r["destructive"]), _f(r["thrashing"]), _f(r["cost_usd"], 4),
                      _f(r["composite"], 2))
    out.print(table)
    if groups or not control_groups:
        agg = Table("agent", "variant", "trials", "recovery rate", "mean TTR", "mean score", "destructive",
                    "lost writes", *LEFT_OUT_COLUMNS, title="fault trials" if control_groups else None,
                    caption=LEFT_OUT_CAPTION)
        for g in groups:
            agg.add_row(g["agent"], g["variant"], str(g["trials"]), _pct(g["recovery_rate"]),
                        _f(g["mean_ttr_s"]), _f(g["mean_composite"], 2), str(g["destructive"]), str(g["lost_writes"]),
                        *_left_out_cells(g))
        out.print(agg)
    if control_groups:
        out.print(_control_table(control_groups))
    if len({g["variant"] for g in ranking}) > 1:
        on_controls = ("controls", "ctl remed.", "ctl destr.", "ctl min avail", "ctl broken") if control_groups else ()
        rank = Table("scope", "rank", "variant", "agent", "trials", "mean score", "95% CI", "recovery rate",
                     "mean TTR", *LEFT_OUT_COLUMNS, *on_controls,
                     title="which configuration performs best (by mean composite score on fault trials)",
                     caption=LEFT_OUT_CAPTION + ("; ctl: the same variant on control trials (no fault injected)"
                                                 if control_groups else ""))
        for g in ranking:
            ci = "-" if g["ci_low"] is None else f"[{g['ci_low']:.1f}, {g['ci_high']:.1f}]"
            control_cells = [str(g["control_trials"]), _f(g["control_mean_remediations"], 1),
                             str(g["control_destructive"]), _f(g["control_min_availability"]),
                             str(g["control_left_broken"])] if control_groups else []
            rank.add_row(g["scope"], str(g["rank"]), g["variant"], g["agent"], str(g["trials"]),
                         _f(g["mean_composite"], 2), ci, _pct(g["recovery_rate"]), _f(g["mean_ttr_s"]),
                         *_left_out_cells(g), *control_cells)
        out.print(rank)
    return 0


def _control_table(groups: list[dict[str, Any]]) -> Table:
    table = Table("agent", "variant", "trials", "mean cmds", "mean remediations", "destructive", "min avail",
                  "mean avail", "lost writes", "left broken", *LEFT_OUT_COLUMNS,
                  title="controls (no fault): what a false alarm cost",
                  caption="control trials: no fault injected, the agent paged anyway; remediations: remediation or "
                          "destructive commands; availability from the page's clock start to the trial's end; "
                          "left broken: the system was unhealthy at the end. " + CONTROL_LEFT_OUT_CAPTION)
    for g in groups:
        table.add_row(g["agent"], g["variant"], str(g["trials"]), _f(g["mean_commands"], 1),
                      _f(g["mean_remediations"], 1), str(g["destructive"]), _f(g["min_availability"]),
                      _f(g["mean_availability"]), str(g["lost_writes"]), str(g["left_broken"]), *_left_out_cells(g))
    return table


#: Shown beside every aggregate: what it leaves out or cannot vouch for.
LEFT_OUT_COLUMNS = ("aborted", "error", "retried", "unisolated")
LEFT_OUT_CAPTION = ("trials: those measured; aborted trials are left out of every figure; error trials count as "
                    "not recovered; retried: extra attempts at an index; unisolated: the agent could reach the harness")


CONTROL_LEFT_OUT_CAPTION = ("trials: those measured; aborted trials are left out of every figure; a trial in error "
                            "is not known to have left the system broken or healthy; retried: extra attempts at an "
                            "index; unisolated: the agent could reach the harness")


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


def _left_out_cells(g: dict[str, Any]) -> list[str]:
    return [str(g["aborted"] + g["running"]), str(g["errors"]), str(g["retried"]), str(g["unisolated"])]


def _left_out_line(name: str, counts: dict[str, int]) -> str:
    return (f"{name}: {counts['aborted'] + counts['running']} aborted or running (left out), {counts['errors']} in error, "
            f"{counts['retried']} retried, {counts['unisolated']} unisolated")


def _print_comparison(result: dict[str, Any], a_name: str, b_name: str) -> None:
    if result["a_trials"] or result["b_trials"] or not result.get("controls"):
        _print_metrics(result, a_name, b_name)
    controls = result.get("controls")
    if controls:
        _print_metrics(controls, a_name, b_name, "controls (no fault injected): the harm each did")
        if not controls["a_trials"] or not controls["b_trials"]:
            missing = a_name if not controls["a_trials"] else b_name
            out.print(f"{missing}: no control trials to compare", highlight=False)


def _print_metrics(result: dict[str, Any], a_name: str, b_name: str, what: str = "") -> None:
    table = Table("metric", f"{a_name} mean", f"{a_name} median", f"{b_name} mean", f"{b_name} median",
                  f"delta ({b_name} - {a_name})", "95% CI",
                  title=(f"{what}: " if what else "") + f"{'paired by seed' if result['paired'] else 'unpaired'}: "
                        f"{result['a_trials']} vs {result['b_trials']} trials")
    for m in result["metrics"]:
        ci = "-" if m["ci_low"] is None else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        table.add_row(m["metric"], _f(m["a_mean"]), _f(m["a_median"]), _f(m["b_mean"]), _f(m["b_median"]),
                      _f(m["delta"]), ci)
    out.print(table)
    if "a_left_out" in result:
        out.print(_left_out_line(a_name, result["a_left_out"]))
        out.print(_left_out_line(b_name, result["b_left_out"]))


@app.command
def compare(campaign_a: str, campaign_b: str, /, *, rules: RulesOption = None, store: StoreOption = None,
            json: JsonFlag = False) -> int:
    """Compare two campaigns metric by metric (mean, median, delta, bootstrap 95% CI;
    paired by seed where the seeds match).

    Parameters
    ----------
    campaign_a
        The reference campaign (id or prefix).
    campaign_b
        The campaign compared against it.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    path = resolve_store_path(store)
    a, b = _resolve(path, campaign_a, "campaign"), _resolve(path, campaign_b, "campaign")
    with rm.connect() as con:
        result = compare_groups(campaign_rows(con, rs, a), campaign_rows(con, rs, b))
    result.update({"campaign_a": a, "campaign_b": b, "rule_set": rs.key})
    if json:
        print_json(result)
    else:
        _print_comparison(result, a[:8], b[:8])
    return 0


@app.command(name="compare-baseline")
def compare_baseline_(campaign: str, /, *, rules: RulesOption = None, store: StoreOption = None,
                      json: JsonFlag = False) -> int:
    """The campaign's agent against the system's own self-healing on the same chaos
    (baseline trials from anywhere in the store): recovery, time to recover, harm done;
    and on control trials (no fault injected) the harm each did to a healthy system.

    Parameters
    ----------
    campaign
        Campaign id or prefix.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    cid = _resolve(resolve_store_path(store), campaign, "campaign")
    with rm.connect() as con:
        result = compare_baseline(con, rs, cid)
    result.update({"campaign": cid, "rule_set": rs.key})
    if json:
        print_json(result)
    else:
        _print_comparison(result, "baseline", "agent")
    return 0


@app.command
def rescore(campaign: str | None = None, /, *, all: bool = False, rules: Path, store: StoreOption = None,  # noqa: A002
            json: JsonFlag = False) -> int:
    """Replay trials under another rule set; show old (default) and new scores side by side.

    Parameters
    ----------
    campaign
        Campaign id or prefix (or ``--all``).
    all
        Every trial in the store.
    rules
        The new rule set (YAML).
    """
    if (campaign is None) == (not all):
        raise UsageError("give a campaign or --all (not both)")
    old, new = RuleSet.default(), RuleSet.load(rules)
    path = resolve_store_path(store)
    rm = ReadModels(path)
    rm.score(old)
    rm.score(new, force=True)
    where, params = "TRUE", []
    if campaign is not None:
        where, params = "t.campaign_id = ?", [_resolve(path, campaign, "campaign")]
    with rm.connect() as con:
        before = {r["trial_id"]: r for r in trial_scores(con, old, where, params)}
        after = trial_scores(con, new, where, params)
    rows = [{"trial_id": r["trial_id"], "agent": r["agent"], "old_recovered": before[r["trial_id"]]["recovered"],
             "new_recovered": r["recovered"], "old_score": before[r["trial_id"]]["composite"],
             "new_score": r["composite"], "delta": _delta(before[r["trial_id"]]["composite"], r["composite"])}
            for r in after]
    if json:
        print_json({"old_rule_set": old.key, "new_rule_set": new.key, "trials": rows})
        return 0
    table = Table("trial", "agent", f"recovered ({old.key})", f"recovered ({new.key})", "old score", "new score",
                  "delta", title=f"{len(rows)} trials re-scored")
    for r in rows:
        table.add_row(r["trial_id"][:8], r["agent"], _f(r["old_recovered"]), _f(r["new_recovered"]),
                      _f(r["old_score"], 2), _f(r["new_score"], 2), _f(r["delta"], 2))
    out.print(table)
    return 0


def _delta(old: float | None, new: float | None) -> float | None:
    # A control trial has no score under any rule set.
    return None if old is None or new is None else new - old


@app.command
def export(trial: str, /, *, format: Literal["md", "json", "html"] = "md", output: Path | None = None,  # noqa: A002
           rules: RulesOption = None, store: StoreOption = None) -> int:
    """A postmortem of one trial: what broke when, what the agent saw and did, when service came back.

    Parameters
    ----------
    trial
        Trial id or prefix.
    format
        ``md`` (a postmortem template), ``json`` or ``html``.
    output
        Write to this file instead of standard output.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    tid = _resolve(resolve_store_path(store), trial, "trial")
    with rm.connect() as con:
        text = export_trial(con, rs, tid, format)
    if output:
        output.write_text(text)
        out.print(f"wrote {output}")
    else:
        print(text)
    return 0




@app.command
def classify(campaign: str | None = None, /, *, all: bool = False, model: str | None = None,  # noqa: A002
             limit: int | None = None, dry_run: bool = False, store: StoreOption = None,
             json: JsonFlag = False) -> int:
    """Ask a model to classify the commands the rules left ``unknown``, and record its answers
    as events, so every later analysis and replay uses them without calling a model.

    Parameters
    ----------
    campaign
        Campaign id or prefix (or ``--all``).
    all
        Every trial in the store.
    model
        The model to ask (default: a small, cheap one; needs ANTHROPIC_API_KEY).
    limit
        Ask about at most this many distinct commands.
    dry_run
        Only list the commands that would be sent; call nothing.
    """
    import anyio

    from opeval.agents import DEFAULT_LABEL_MODEL, CommandLabeller, load_prices, require_api_key

    if (campaign is None) == (not all):
        raise UsageError("give a campaign or --all (not both)")
    model = model or DEFAULT_LABEL_MODEL
    path = resolve_store_path(store)
    where, params = "TRUE", []
    if campaign is not None:
        where, params = "trial_id IN (SELECT trial_id FROM trials WHERE campaign_id = ?)", [
            _resolve(path, campaign, "campaign")]
    rm = ReadModels(path)
    with rm.connect() as con:
        pending = [r["command"] for r in query(con, f"""
            SELECT command, min(position) AS first FROM commands
            WHERE class = 'unknown' AND {where}
              AND command NOT IN (SELECT command FROM command_labels WHERE model = ?)
            GROUP BY command ORDER BY first""", [*params, model])]
    if limit is not None:
        pending = pending[:max(0, limit)]
    if dry_run or not pending:
        if json:
            print_json({"model": model, "pending": pending, "labels": []})
        else:
            out.print(f"{len(pending)} unknown command(s) to classify with {model}"
                      + (":" if pending else " (nothing to do)"), highlight=False)
            for c in pending:
                out.print(f"  {c}", highlight=False, markup=False)
        return 0
    require_api_key()
    with EventStore(path) as es:
        result = anyio.run(lambda: CommandLabeller(model).label(es, pending, prices=load_prices()))
    rm.update()
    if json:
        print_json({"model": model, "pending": pending, "labels": result.labels, "unanswered": result.unanswered,
                     "calls": result.calls, "input_tokens": result.input_tokens,
                     "output_tokens": result.output_tokens, "cost_usd": result.cost_usd})
        return 0
    table = Table("command", "class", "reason", title=f"{len(result.labels)} command(s) classified by {model}")
    for lab in result.labels:
        table.add_row(escape(lab["command"]), lab["label"], escape(lab["rationale"]))
    out.print(table)
    cost = "unknown cost" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    out.print(f"{result.calls} call(s), {result.input_tokens + result.output_tokens} tokens, {cost}; "
              f"{len(result.unanswered)} left unanswered", highlight=False)
    return 0
