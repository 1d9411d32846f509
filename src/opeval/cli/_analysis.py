"""Analysis commands: analyze, compare, compare-baseline, rescore, export.

All of them read the DuckDB read models (brought up to date from the event log first)
and never write to the event store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec

from opeval.errors import UsageError
from opeval.projections import (
    ApprovalGate,
    DeniedCommand,
    approval_summary,
    denied_commands,
    ReadModels,
    RuleSet,
    campaign_rows,
    compare_baseline,
    compare_groups,
    control_summary,
    rank_variants,
    summary,
    trial_scores,
    unknown_commands,
)
from opeval.store import EventStore, StoreLocation

from ._app import AnyId, CampaignId, TrialId
from ._common import JsonFlag, RulesOption, StoreOption, WideFlag, err, out, print_json, store_path
from ._exit import ExitCode
from ._ids import campaign_id, short_ids, store_ids, trial_id
from ._tables import Col, outcome_style, print_table


def _lost_words(rows: list[dict[str, Any]]) -> str:
    """What the ``lost`` column counts, in the words of the subjects among ``rows``."""
    from opeval.subjects import words_for

    said = [f"{w.promises} {w.lost}" for w in (words_for(s) for s in sorted({r.get("subject") or "" for r in rows}))]
    return "; ".join(dict.fromkeys(said)) or "acknowledged writes lost"


def _rules(path: Path | None) -> RuleSet:
    return RuleSet.load(path) if path else RuleSet.default()


def _resolve(store: StoreLocation, prefix: str, want: str) -> str:
    """The hex id of the ``want`` (campaign or trial) ``prefix`` names, directly or through
    the other kind (a trial's campaign, a one-trial campaign's trial)."""
    with EventStore(store, writable=False) as es:
        oid = campaign_id(es, prefix) if want == "campaign" else trial_id(es, prefix)
    return oid.hex


def _short(store: StoreLocation) -> dict[str, str]:
    with EventStore(store, writable=False) as es:
        return short_ids(store_ids(es))


def _scored(store: str | None, rules: RuleSet) -> ReadModels:
    rm = ReadModels(store_path(store))
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


def analyze(campaign: CampaignId, /, *, rules: RulesOption = None, store: StoreOption = None,
            json: JsonFlag = False, wide: WideFlag = False) -> int:
    """Scores and metrics of every trial of a campaign, and aggregates per agent and variant.

    Control trials (``--chaos none``: no fault, the agent paged anyway) are left out of the
    fault aggregates and get their own table of false-alarm figures.

    Parameters
    ----------
    campaign
        Campaign id or unique prefix (a trial's id means its campaign).
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    path = store_path(store)
    cid = _resolve(path, campaign, "campaign")
    with rm.connect() as con:
        rows = campaign_rows(con, rs, cid)
        gates, denied = approval_summary(con, cid), denied_commands(con, cid)
    groups = summary(rows)
    control_groups = control_summary(rows)
    ranking = rank_variants(rows)
    if json:
        print_json({"campaign_id": cid, "rule_set": rs.key, "trials": rows, "summary": groups,
                    "controls": control_groups, "ranking": ranking, "approvals": msgspec.to_builtins(gates),
                    "denied": msgspec.to_builtins(denied)})
        return ExitCode.OK
    short = _short(path)
    cols = [Col("trial", keep=True), Col("agent", drop=3), Col("chaos → target", drop=5),
            Col("outcome", keep=True, style=outcome_style), Col("TTD", justify="right", fold=False, drop=8),
            Col("TTR", justify="right", fold=False, drop=1), Col("avail", justify="right", fold=False, drop=9),
            Col("lost", justify="right", fold=False, drop=6), Col("cmds", justify="right", fold=False, drop=7),
            Col("remed.", justify="right", fold=False, drop=11), Col("destr.", justify="right", fold=False, drop=4),
            Col("thrash", justify="right", fold=False, drop=12), Col("model", drop=15),
            Col("tokens", justify="right", fold=False, drop=14), Col("cost $", justify="right", fold=False, drop=13),
            Col("score", justify="right", fold=False, drop=2)]
    table = []
    for r in rows:
        agent = _who(r["agent"], r["variant"]) + (" (unisolated)" if r["unisolated"] else "")
        chaos = "control (no fault)" if r["control"] else f"{r['chaos']} → {r['target']}"
        outcome = r["outcome"] or "running"
        if r["left_broken"]:
            outcome += " (left broken)"
        table.append([short.get(r["trial_id"], r["trial_id"]), agent, chaos, outcome,
                      _f(r["ttd_s"]), _f(r["ttr_s"]), _f(r["availability"]), _f(r["lost_writes"]), _f(r["commands"]),
                      _f(r["remediations"]), _f(r["destructive"]), _f(r["thrashing"]), r["called_model"] or "-",
                      _f(r["tokens"]), _f(r["cost_usd"], 4), _f(r["composite"], 2)])
    print_table(cols, table, wide=wide, title=f"campaign {short.get(cid, cid)} under {rs.key}",
                caption="TTD, TTR: seconds from the fault verified; avail: share of client operations that "
                        f"succeeded; lost: {_lost_words(rows)}; remed., destr.: remediation and destructive "
                        "commands; tokens: input, output and cache reads and writes of every model call" + ("; control: no fault injected (no TTD, TTR or score; availability to the "
                                      "trial's end)" if control_groups else ""))
    if groups or not control_groups:
        cols = [Col("agent", keep=True), Col("variant", keep=True), Col("trials", justify="right", drop=6),
                Col("recovery rate", justify="right", fold=False, drop=1),
                Col("mean TTR", justify="right", fold=False, drop=3),
                Col("mean score", justify="right", fold=False, drop=2),
                Col("destr.", justify="right", fold=False, drop=5), Col("lost", justify="right", fold=False, drop=4),
                *_left_out_cols(groups)]
        out.print()
        print_table(cols, [[g["agent"], g["variant"], str(g["trials"]), _pct(g["recovery_rate"]),
                            _f(g["mean_ttr_s"]), _f(g["mean_composite"], 2), str(g["destructive"]),
                            str(g["lost_writes"]), *_left_out_cells(g)] for g in groups],
                    wide=wide, title="fault trials" if control_groups else "per agent and variant",
                    caption=LEFT_OUT_CAPTION)
    if control_groups:
        out.print()
        _control_table(control_groups, wide)
    if gates:
        out.print()
        _approval_tables(gates, denied, _short(path), wide)
    if len({g["variant"] for g in ranking}) > 1:
        on_controls = [Col("controls", justify="right", drop=20), Col("ctl remed.", justify="right", drop=21),
                       Col("ctl destr.", justify="right", drop=16), Col("ctl min avail", justify="right", drop=18),
                       Col("ctl broken", justify="right", drop=17)] if control_groups else []
        cols = [Col("scope", keep=True), Col("rank", keep=True, justify="right"), Col("variant", keep=True),
                Col("agent", drop=6), Col("trials", justify="right", drop=5),
                Col("mean score", justify="right", fold=False, drop=1), Col("95% CI", fold=False, drop=4),
                Col("recovery rate", justify="right", fold=False, drop=2),
                Col("mean TTR", justify="right", fold=False, drop=3), *_left_out_cols(ranking), *on_controls]
        table = []
        for g in ranking:
            ci = "-" if g["ci_low"] is None else f"[{g['ci_low']:.1f}, {g['ci_high']:.1f}]"
            control_cells = [str(g["control_trials"]), _f(g["control_mean_remediations"], 1),
                             str(g["control_destructive"]), _f(g["control_min_availability"]),
                             str(g["control_left_broken"])] if control_groups else []
            table.append([g["scope"], str(g["rank"]), g["variant"], g["agent"], str(g["trials"]),
                          _f(g["mean_composite"], 2), ci, _pct(g["recovery_rate"]), _f(g["mean_ttr_s"]),
                          *_left_out_cells(g), *control_cells])
        out.print()
        print_table(cols, table, wide=wide,
                    title="which configuration performs best (by mean composite score on fault trials)",
                    caption=LEFT_OUT_CAPTION + ("; ctl: the same variant on control trials (no fault injected)"
                                                if control_groups else ""))
    return ExitCode.OK


def _approval_tables(gates: list[ApprovalGate], denied: list[DeniedCommand], short: dict[str, str],
                     wide: bool) -> None:
    cols = [Col("agent", keep=True), Col("variant", keep=True), Col("policy", drop=6),
            Col("gated", justify="right", drop=5), Col("allowed", justify="right", drop=4),
            Col("denied", justify="right", keep=True), Col("would destroy", justify="right", drop=1),
            Col("by person", justify="right", drop=3), Col("timed out", justify="right", drop=7),
            Col("waited", justify="right", fold=False, drop=2)]
    print_table(cols, [[g.agent, g.variant, g.mode, str(g.gated), str(g.allowed), str(g.denied),
                        str(g.denied_destructive), str(g.by_person), str(g.timed_out),
                        f"{g.waited_s or 0.0:.1f}s"] for g in gates], wide=wide, title="approval gate",
                caption="gated: commands of the classes the variant's policy gates; would destroy: denied commands "
                        "classed destructive; waited: the agent's time waiting for a person (not in its TTR)")
    if denied:
        out.print()
        print_table([Col("trial", keep=True), Col("variant", drop=3), Col("step", justify="right", drop=4),
                     Col("class", drop=2), Col("decided by", drop=1), Col("command", keep=True)],
                    [[short.get(d.trial_id, d.trial_id), d.variant, str(d.step), d.command_class,
                      d.decided_by, d.command] for d in denied], wide=wide, title="denied commands")


def _who(agent: str, variant: str | None) -> str:
    return agent if variant in (None, "default", agent) else f"{agent}/{variant}"


def _control_table(groups: list[dict[str, Any]], wide: bool) -> None:
    cols = [Col("agent", keep=True), Col("variant", keep=True), Col("trials", justify="right", drop=6),
            Col("mean cmds", justify="right", fold=False, drop=7),
            Col("mean remediations", justify="right", fold=False, drop=2),
            Col("destr.", justify="right", fold=False, drop=1), Col("min avail", justify="right", fold=False, drop=4),
            Col("mean avail", justify="right", fold=False, drop=8), Col("lost", justify="right", fold=False, drop=5),
            Col("left broken", justify="right", fold=False, drop=3), *_left_out_cols(groups)]
    print_table(cols, [[g["agent"], g["variant"], str(g["trials"]), _f(g["mean_commands"], 1),
                        _f(g["mean_remediations"], 1), str(g["destructive"]), _f(g["min_availability"]),
                        _f(g["mean_availability"]), str(g["lost_writes"]), str(g["left_broken"]), *_left_out_cells(g)]
                       for g in groups], wide=wide,
                title="controls (no fault): what a false alarm cost",
                caption="control trials: no fault injected, the agent paged anyway; remediations: remediation or "
                        "destructive commands; availability from the page's clock start to the trial's end; "
                        "left broken: the system was unhealthy at the end. " + CONTROL_LEFT_OUT_CAPTION)


#: Shown beside every aggregate: what it leaves out or cannot vouch for.
LEFT_OUT_COLUMNS = ("aborted", "error", "retried", "unisolated")
LEFT_OUT_CAPTION = ("trials: those measured; aborted and error trials (the harness failed) are left out of every "
                    "figure and counted beside it; retried: extra attempts at an index; unisolated: the agent could "
                    "reach the harness")


CONTROL_LEFT_OUT_CAPTION = ("trials: those measured; aborted trials are left out of every figure; a trial in error "
                            "is not known to have left the system broken or healthy; retried: extra attempts at an "
                            "index; unisolated: the agent could reach the harness")


def _left_out_cols(groups: list[dict[str, Any]]) -> list[Col]:
    """The left-out counts' columns: kept on a narrow terminal while one of them is not zero
    (a caveat on the figures beside it), left out first otherwise."""
    cols = []
    for n, (name, rank) in enumerate(zip(LEFT_OUT_COLUMNS, (10, 9, 11, 12), strict=True)):
        nonzero = any(_left_out_cells(g)[n] != "0" for g in groups)
        cols.append(Col(name, justify="right", fold=False, drop=3 if nonzero else rank))
    return cols


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


def _left_out_cells(g: dict[str, Any]) -> list[str]:
    return [str(g["aborted"] + g["running"]), str(g["errors"]), str(g["retried"]), str(g["unisolated"])]


def _left_out_line(name: str, counts: dict[str, int]) -> str:
    return (f"{name}: {counts['aborted'] + counts['running']} aborted or running (left out), {counts['errors']} in error, "
            f"{counts['retried']} retried, {counts['unisolated']} unisolated")


def _print_comparison(result: dict[str, Any], a_name: str, b_name: str, wide: bool) -> None:
    if result["a_trials"] or result["b_trials"] or not result.get("controls"):
        _print_metrics(result, a_name, b_name, wide)
    controls = result.get("controls")
    if controls:
        out.print()
        _print_metrics(controls, a_name, b_name, wide, "controls (no fault injected): the harm each did")
        if not controls["a_trials"] or not controls["b_trials"]:
            missing = a_name if not controls["a_trials"] else b_name
            out.print(f"{missing}: no control trials to compare", highlight=False)


def _print_metrics(result: dict[str, Any], a_name: str, b_name: str, wide: bool, what: str = "") -> None:
    cols = [Col("metric", keep=True), Col(f"{a_name} mean", justify="right", fold=False, drop=1),
            Col(f"{a_name} median", justify="right", fold=False, drop=3),
            Col(f"{b_name} mean", justify="right", fold=False, drop=2),
            Col(f"{b_name} median", justify="right", fold=False, drop=4),
            Col(f"delta ({b_name} - {a_name})", justify="right", fold=False, drop=5), Col("95% CI", drop=6)]
    table = []
    for m in result["metrics"]:
        ci = "-" if m["ci_low"] is None else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]"
        name = m["metric"] + (" (unpaired)" if result["paired"] and not m.get("paired", True) else "")
        table.append([name, _f(m["a_mean"]), _f(m["a_median"]), _f(m["b_mean"]), _f(m["b_median"]),
                      _f(m["delta"]), ci])
    print_table(cols, table, wide=wide,
                title=(f"{what}: " if what else "") + f"{'paired by seed' if result['paired'] else 'unpaired'}: "
                      f"{result['a_trials']} vs {result['b_trials']} trials")
    if "a_left_out" in result:
        out.print(_left_out_line(a_name, result["a_left_out"]), highlight=False)
        out.print(_left_out_line(b_name, result["b_left_out"]), highlight=False)


def compare(campaign_a: CampaignId, campaign_b: CampaignId, /, *, rules: RulesOption = None,
            store: StoreOption = None, json: JsonFlag = False, wide: WideFlag = False) -> int:
    """Compare two campaigns metric by metric: mean, median, delta, bootstrap 95% CI.

    Trials are paired by seed where the seeds match.

    Parameters
    ----------
    campaign_a
        The reference campaign (id or prefix).
    campaign_b
        The campaign compared against it.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    path = store_path(store)
    a, b = _resolve(path, campaign_a, "campaign"), _resolve(path, campaign_b, "campaign")
    with rm.connect() as con:
        result = compare_groups(campaign_rows(con, rs, a), campaign_rows(con, rs, b))
    result.update({"campaign_a": a, "campaign_b": b, "rule_set": rs.key})
    if json:
        print_json(result)
    else:
        short = _short(path)
        _print_comparison(result, short.get(a, a), short.get(b, b), wide)
    return ExitCode.OK


def compare_baseline_(campaign: CampaignId, /, *, rules: RulesOption = None, store: StoreOption = None,
                      json: JsonFlag = False, wide: WideFlag = False) -> int:
    """The campaign's agent against the system's own self-healing on the same chaos.

    Baseline trials come from anywhere in the store: recovery, time to recover, harm done;
    and on control trials (no fault injected) the harm each did to a healthy system.

    Parameters
    ----------
    campaign
        Campaign id or prefix.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    cid = _resolve(store_path(store), campaign, "campaign")
    with rm.connect() as con:
        result = compare_baseline(con, rs, cid)
    result.update({"campaign": cid, "rule_set": rs.key})
    if json:
        print_json(result)
    else:
        _print_comparison(result, "baseline", "agent", wide)
    return ExitCode.OK


def rescore(campaign: CampaignId | None = None, /, *, all: bool = False, rules: Path,  # noqa: A002
            store: StoreOption = None, json: JsonFlag = False, wide: WideFlag = False) -> int:
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
    path = store_path(store)
    rm = ReadModels(path)
    rm.score(old)
    rm.score(new, force=True)
    cid = None if campaign is None else _resolve(path, campaign, "campaign")
    with rm.connect() as con:
        before = {r["trial_id"]: r for r in (trial_scores(con, old) if cid is None else campaign_rows(con, old, cid))}
        after = trial_scores(con, new) if cid is None else campaign_rows(con, new, cid)
    rows = [{"trial_id": r["trial_id"], "agent": r["agent"], "old_recovered": before[r["trial_id"]]["recovered"],
             "new_recovered": r["recovered"], "old_score": before[r["trial_id"]]["composite"],
             "new_score": r["composite"], "delta": _delta(before[r["trial_id"]]["composite"], r["composite"])}
            for r in after]
    if json:
        print_json({"old_rule_set": old.key, "new_rule_set": new.key, "trials": rows})
        return ExitCode.OK
    short = _short(path)
    cols = [Col("trial", keep=True), Col("agent", drop=5), Col(f"recovered ({old.key})", fold=False, drop=3),
            Col(f"recovered ({new.key})", fold=False, drop=4), Col("old score", justify="right", fold=False, drop=2),
            Col("new score", justify="right", fold=False, drop=1), Col("delta", justify="right", keep=True)]
    print_table(cols, [[short.get(r["trial_id"], r["trial_id"]), r["agent"], _f(r["old_recovered"]),
                        _f(r["new_recovered"]), _f(r["old_score"], 2), _f(r["new_score"], 2), _f(r["delta"], 2)]
                       for r in rows], wide=wide, title=f"{len(rows)} trials re-scored")
    return ExitCode.OK


def _delta(old: float | None, new: float | None) -> float | None:
    # A control trial has no score under any rule set.
    return None if old is None or new is None else new - old


def export(trial: TrialId, /, *, format: Literal["md", "json", "html", "trace"] = "md", output: Path | None = None,  # noqa: A002
           rules: RulesOption = None, store: StoreOption = None) -> int:
    """A postmortem of one trial: what broke when, what the agent saw and did, when service came back.

    Parameters
    ----------
    trial
        Trial id or prefix (a one-trial campaign's id means its trial).
    format
        ``md`` (a postmortem template), ``json``, ``html`` (a standalone page) or ``trace``
        (Chrome trace-event JSON for Perfetto or ``chrome://tracing``: phases, faults, members'
        states and the agent's commands as tracks).
    output
        Write to this file instead of standard output.
    """
    rs = _rules(rules)
    rm = _scored(store, rs)
    tid = _resolve(store_path(store), trial, "trial")
    from opeval.export import export_trial  # the templates load only when exporting

    with rm.connect() as con:
        text = export_trial(con, rs, tid, format)
    if output:
        try:
            output.write_text(text)
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror}") from None
        out.print(f"wrote {output}", highlight=False)
    else:
        print(text)
    return ExitCode.OK




def classify(campaign: CampaignId | None = None, /, *, all: bool = False, model: str | None = None,  # noqa: A002
             limit: int | None = None, dry_run: bool = False, store: StoreOption = None,
             json: JsonFlag = False) -> int:
    """Ask a model to classify the commands the rules left ``unknown``; its answers are recorded.

    The answers are recorded as events, so every later analysis and replay uses them
    without calling a model.

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
    path = store_path(store)
    cid = None if campaign is None else _resolve(path, campaign, "campaign")
    rm = ReadModels(path)
    with rm.connect() as con:
        pending = unknown_commands(con, model, cid)
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
        return ExitCode.OK
    require_api_key()
    with EventStore(path) as es:
        result = anyio.run(lambda: CommandLabeller(model).label(es, pending, prices=load_prices()))
    rm.update()
    if json:
        print_json({"model": model, "pending": pending, "labels": result.labels, "unanswered": result.unanswered,
                     "calls": result.calls, "input_tokens": result.input_tokens,
                     "output_tokens": result.output_tokens, "cost_usd": result.cost_usd})
        return ExitCode.OK
    print_table([Col("command", drop=0, keep=False), Col("class", keep=True), Col("reason", drop=1)],
                [[lab["command"], lab["label"], lab["rationale"]] for lab in result.labels],
                title=f"{len(result.labels)} command(s) classified by {model}")
    cost = "unknown cost" if result.cost_usd is None else f"${result.cost_usd:.4f}"
    out.print(f"{result.calls} call(s), {result.input_tokens + result.output_tokens} tokens, {cost}; "
              f"{len(result.unanswered)} left unanswered", highlight=False)
    return ExitCode.OK
