"""The one read layer over the read models: every question the CLI and the viewer ask of
the DuckDB file is a function here, answered with typed rows, so no other package writes
SQL against it.

Scored trials (:func:`trial_scores`, :func:`campaign_rows`) stay rows keyed by column: the
statistics of :mod:`opeval.projections._analysis` read them by metric name, and
:class:`TrialScore` is the same row typed (:func:`trial_score`, or ``msgspec.convert``).
The connection comes from :meth:`ReadModels.connect`, brought up to date by the caller.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import msgspec

from opeval.errors import NotFoundError
from opeval.projections._engine import _parsed_rules, query
from opeval.projections._rules import RuleSet

#: Outcomes that settle a trial's index: an aborted attempt leaves it to be run again.
REAL_OUTCOMES = ("recovered", "not_recovered", "error")
#: Trial columns the campaign list can be filtered by (one value each).
TRIAL_FILTERS = ("subject", "chaos", "agent", "variant")


# --- typed rows ------------------------------------------------------------------------------
class TrialScore(msgspec.Struct, kw_only=True):
    """A trial as the read models know it, with its metrics and score under one rule set."""

    trial_id: str
    campaign_id: str
    idx: int | None = None
    subject: str | None = None
    runtime: str | None = None
    chaos: str | None = None
    target: str | None = None
    victim: str | None = None
    agent: str | None = None
    variant: str | None = None
    model: str | None = None
    seed: int | None = None
    restart_policy: str | None = None
    timeout_s: float | None = None
    settle_s: float | None = None
    started_at: str | None = None
    outcome: str | None = None
    reason: str | None = None
    recovered: bool | None = None
    ttd_s: float | None = None
    ttr_s: float | None = None
    first_diagnostic_s: float | None = None
    first_remediation_s: float | None = None
    availability: float | None = None
    longest_unavailable_s: float | None = None
    lost_writes: int | None = None
    safe: bool | None = None
    commands: int | None = None
    unique_commands: int | None = None
    thrashing: int | None = None
    destructive: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    #: Model agents, whatever their API: the model(s) called, the server's name, every kind of token.
    called_model: str | None = None
    served_model: str | None = None
    calls: int | None = None
    calls_cut: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    speed: float | None = None
    composite: float | None = None
    sandbox: str | None = None
    unisolated: bool | None = None
    #: A control trial: no fault injected (no TTD, TTR or score; availability runs to the trial's end).
    control: bool | None = None
    #: Commands classed remediation or destructive.
    remediations: int | None = None
    #: A control trial the agent left unhealthy (None for fault trials).
    left_broken: bool | None = None


class RuleSetRow(msgspec.Struct, frozen=True):
    """A rule set the read models hold scores for, with its YAML source."""

    name: str
    hash: str
    source: str

    @property
    def key(self) -> str:
        """``name@hash``, as :attr:`RuleSet.key`."""
        return f"{self.name}@{self.hash}"


class CampaignRecord(msgspec.Struct, kw_only=True):
    """A campaign as its own events describe it (``spec`` parsed; None if missing or not a mapping)."""

    campaign_id: str
    name: str | None = None
    started_at: str | None = None
    trials_planned: int | None = None
    trials_scheduled: int | None = None
    finished: bool = False
    spec: dict[str, Any] | None = None


class CampaignOverview(msgspec.Struct, kw_only=True):
    """A campaign with its trials counted (those matching the filters, if any).

    ``done``: indexes with a real outcome (to hold against ``trials_planned``); ``trials``:
    attempts; ``status``: ``finished``, ``running`` or ``interrupted`` (unfinished, nothing
    running: a campaign file's run that ``--resume`` continues)."""

    campaign_id: str
    name: str
    started_at: str | None
    trials_planned: int | None
    finished: bool
    done: int
    aborted: int
    running: int
    recovered: int
    not_recovered: int
    error: int
    file: str | None
    title: str
    status: str
    trials: int
    spec: dict[str, Any]
    subjects: list[str]
    chaos: list[str]
    agents: list[str]


class CampaignFilters(msgspec.Struct, kw_only=True):
    """The values each filter of the campaign list can take."""

    subject: list[str]
    chaos: list[str]
    agent: list[str]
    variant: list[str]


class CommandRow(msgspec.Struct, kw_only=True):
    """One command an agent ran, as classified in the read models (``class``: ``command_class``)."""

    trial_id: str
    position: int
    step: int | None = None
    offset_s: float | None = None
    command: str
    exit_code: int | None = None
    timed_out: bool | None = None
    duration_s: float | None = None
    truncated: bool | None = None
    command_class: str = msgspec.field(name="class", default="unknown")
    labelled_by: str | None = None


class ApprovalGate(msgspec.Struct, kw_only=True):
    """What one agent/variant's approval gate did in a campaign: commands gated, allowed and
    denied (by the policy, a person, the timeout), denied ones classed destructive, and the
    agent's time waiting for a person (left out of time to recover)."""

    agent: str | None
    variant: str | None
    mode: str | None
    gated: int
    allowed: int
    denied: int
    denied_destructive: int
    by_person: int
    timed_out: int
    waited_s: float | None


class DeniedCommand(msgspec.Struct, kw_only=True):
    """A command the approval gate denied (``class``: ``command_class``)."""

    trial_id: str
    agent: str | None
    variant: str | None
    step: int | None
    command: str
    command_class: str | None = msgspec.field(name="class")
    decided_by: str | None
    reason: str | None
    waited_s: float | None


class EventRow(msgspec.Struct, frozen=True):
    """One of a trial's events as the read models keep it: its log position, version, class
    name and state (JSON, as this version of opeval writes it)."""

    position: int
    version: int
    type: str
    state: str


class TrialListing(msgspec.Struct, kw_only=True):
    """A trial in the store's list: what ran, how it ended, and its time to recover
    (None for a control trial, which has no fault to recover from)."""

    trial_id: str
    campaign_id: str
    index: int | None
    started_at: str | None
    subject: str | None
    chaos: str | None
    target: str | None
    agent: str | None
    variant: str | None
    restart_policy: str | None
    seed: int | None
    outcome: str
    time_to_recover_s: float | None


def _typed(rows: list[dict[str, Any]], kind: type[Any]) -> list[Any]:
    return [msgspec.convert(r, kind) for r in rows]


def parse_spec(raw: str | None) -> dict[str, Any] | None:
    """A campaign's recorded spec (JSON), None if missing or not a mapping."""
    if not raw:
        return None
    try:
        spec = json.loads(raw)
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


def campaign_title(name: str, spec: dict[str, Any] | None, trials_planned: int | None) -> str:
    """A campaign's name, with the seed of a one-trial run (``opeval run``) whose recorded
    name lacks it, so that such runs can be told apart."""
    spec = spec or {}
    if trials_planned == 1 and "file" not in spec and spec.get("seed") is not None and "seed" not in name:
        return f"{name} seed {spec['seed']}"
    return name


# --- the read models' position and rule sets -----------------------------------------------------
def log_position(con: duckdb.DuckDBPyConnection) -> int:
    """The event log position the read models have caught up to."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'position'").fetchall()
    return int(rows[0][0]) if rows else 0


def has_rule_set(con: duckdb.DuckDBPyConnection, rules: RuleSet) -> bool:
    """True if the read models hold scores under ``rules``."""
    return bool(con.execute("SELECT count(*) FROM rule_sets WHERE name = ? AND hash = ?",
                            [rules.name, rules.hash]).fetchall()[0][0])


def rule_sets(con: duckdb.DuckDBPyConnection) -> list[RuleSetRow]:
    """Every rule set the read models hold scores for, by name and hash."""
    return _typed(query(con, "SELECT name, hash, source FROM rule_sets ORDER BY name, hash"), RuleSetRow)


def find_rule_set(con: duckdb.DuckDBPyConnection, key: str | None, default: RuleSet) -> RuleSet:
    """The rule set named by ``key``: ``name@hash``, a unique name or a hash prefix
    (``default`` for none, ``"default"`` or its own key). NotFoundError if the read models
    hold none or several that match."""
    if not key or key in (default.key, "default"):
        return default
    rows = rule_sets(con)
    exact = [r for r in rows if r.key == key]
    matches = exact or [r for r in rows if r.name == key] or [r for r in rows if r.hash.startswith(key.lower())]
    if not matches:
        known = ", ".join(r.key for r in rows)
        raise NotFoundError(f"no rule set {key!r} in the read models (known: {known}); "
                            "score one with `opeval rescore --rules FILE`")
    if len(matches) > 1:
        raise NotFoundError(f"rule set {key!r} is ambiguous: " + ", ".join(r.key for r in matches))
    return _parsed_rules(matches[0].source, matches[0].key)


# --- trials and their scores -----------------------------------------------------------------
#: Per trial, whatever model agent ran it: the model asked for, the server's name, every kind of token.
MODEL_USE = """
    SELECT trial_id, string_agg(DISTINCT model, ', ' ORDER BY model) AS called_model,
           string_agg(DISTINCT served_model, ', ' ORDER BY served_model) AS served_model, count(*) AS calls,
           sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
           sum(cache_read_tokens) AS cache_read_tokens, sum(cache_write_tokens) AS cache_write_tokens,
           count(*) FILTER (WHERE cut) AS calls_cut
    FROM usage GROUP BY trial_id"""


def trial_scores(con: duckdb.DuckDBPyConnection, rules: RuleSet, *, campaign_id: str | None = None,
                 trial_id: str | None = None) -> list[dict[str, Any]]:
    """Trials joined with their scores under ``rules``, oldest first: every trial of the
    store, of one campaign, or the one trial."""
    conds, params = ["TRUE"], []
    if campaign_id is not None:
        conds.append("t.campaign_id = ?")
        params.append(campaign_id)
    if trial_id is not None:
        conds.append("t.trial_id = ?")
        params.append(trial_id)
    return _scored(con, rules, " AND ".join(conds), params)


def _scored(con: duckdb.DuckDBPyConnection, rules: RuleSet, where: str, params: list[Any]) -> list[dict[str, Any]]:
    # ``where``: a condition on ``t`` (the trials), ``s`` (the scores) and ``u`` (model use).
    return query(con, f"""
        SELECT t.*, s.* EXCLUDE (trial_id, rule_set, rule_hash), u.* EXCLUDE (trial_id)
        FROM trials t JOIN scores s ON s.trial_id = t.trial_id AND s.rule_set = ? AND s.rule_hash = ?
        LEFT JOIN ({MODEL_USE}) u ON u.trial_id = t.trial_id
        WHERE {where} ORDER BY t.started_at, t.idx""", [rules.name, rules.hash, *params])


def campaign_rows(con: duckdb.DuckDBPyConnection, rules: RuleSet, campaign_id: str) -> list[dict[str, Any]]:
    """Every trial of one campaign with its scores, aborted ones and every attempt of an
    index included: aggregates take :func:`measured` rows and show :func:`left_out`."""
    return trial_scores(con, rules, campaign_id=campaign_id)


def trial_score(con: duckdb.DuckDBPyConnection, rules: RuleSet, trial_id: str) -> TrialScore | None:
    """One trial with its scores under ``rules`` (None until the read models have it)."""
    rows = trial_scores(con, rules, trial_id=trial_id)
    return msgspec.convert(rows[0], TrialScore) if rows else None


def baseline_trials(con: duckdb.DuckDBPyConnection, rules: RuleSet,
                    kinds: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """Every baseline (no agent) trial of the store with one of the given (subject, chaos,
    target), scored under ``rules``, in the order they started."""
    if not kinds:
        return []
    cond = " OR ".join("(t.subject = ? AND t.chaos = ? AND t.target = ?)" for _ in kinds)
    return _scored(con, rules, f"t.agent = 'none' AND ({cond})", [v for k in kinds for v in k])


def trial_listing(con: duckdb.DuckDBPyConnection) -> list[TrialListing]:
    """Every trial in the store, oldest first (``outcome`` ``running`` until it finishes),
    with its time to recover as ``analyze`` gives it under the default rules (one number:
    approval waits left out, the settle window applied; None for a control trial)."""
    default = RuleSet.default()
    return _typed(query(con, """
        SELECT t.trial_id, t.campaign_id, t.idx AS index, t.started_at, t.subject, t.chaos, t.target, t.agent,
               t.variant, t.restart_policy, t.seed, coalesce(t.outcome, 'running') AS outcome,
               s.ttr_s AS time_to_recover_s
        FROM trials t LEFT JOIN scores s ON s.trial_id = t.trial_id AND s.rule_set = ? AND s.rule_hash = ?
        ORDER BY t.started_at, t.trial_id""", [default.name, default.hash]), TrialListing)


def trial_commands(con: duckdb.DuckDBPyConnection, trial_id: str, *, by_time: bool = False) -> list[CommandRow]:
    """A trial's commands in log order (``by_time``: in the order they ran), each with the
    class the read models gave it."""
    order = "offset_s, position" if by_time else "position"
    return _typed(query(con, f"SELECT * FROM commands WHERE trial_id = ? ORDER BY {order}", [trial_id]),
                  CommandRow)


def trial_events(con: duckdb.DuckDBPyConnection, trial_id: str) -> list[EventRow]:
    """A trial's events as the read models keep them, in version order."""
    return _typed(query(con, "SELECT position, version, type, state FROM events WHERE aggregate_id = ? "
                             "ORDER BY version", [trial_id]), EventRow)


def thrashing_positions(con: duckdb.DuckDBPyConnection, trial_id: str, rules: RuleSet) -> set[int]:
    """Positions of the commands that count as thrashing repeats under ``rules``: what
    ``projections/scores.sql`` counts, through the same ``opeval.events.thrashing_repeats``."""
    row = con.execute("""
        SELECT thrashing_repeats(
            (SELECT list({'position': position, 'offset_s': offset_s, 'command': command, 'class': class})
             FROM commands WHERE trial_id = $trial),
            (SELECT list({'offset_s': offset_s, 'leader': leader, 'healthy': members_healthy}) FROM snapshots
             WHERE trial_id = $trial),
            $window::DOUBLE)""", {"trial": trial_id, "window": rules.thresholds["thrashing_window_s"]}).fetchone()
    return {int(p) for p in (row[0] if row and row[0] else [])}


def unknown_commands(con: duckdb.DuckDBPyConnection, model: str, campaign_id: str | None = None) -> list[str]:
    """Distinct commands the rules left ``unknown`` and ``model`` has not labelled yet, in
    the order first run (of one campaign, or of the whole store)."""
    where, params = "TRUE", []
    if campaign_id is not None:
        where, params = "trial_id IN (SELECT trial_id FROM trials WHERE campaign_id = ?)", [campaign_id]
    return [r["command"] for r in query(con, f"""
        SELECT command, min(position) AS first FROM commands
        WHERE class = 'unknown' AND {where}
          AND command NOT IN (SELECT command FROM command_labels WHERE model = ?)
        GROUP BY command ORDER BY first""", [*params, model])]


# --- campaigns -------------------------------------------------------------------------------
def campaign_record(con: duckdb.DuckDBPyConnection, campaign_id: str) -> CampaignRecord | None:
    """One campaign's row (None until its start is in the read models)."""
    rows = query(con, "SELECT * FROM campaigns WHERE campaign_id = ?", [campaign_id])
    if not rows:
        return None
    row = rows[0]
    row["spec"], row["finished"] = parse_spec(row["spec"]), bool(row["finished"])
    return msgspec.convert(row, CampaignRecord)


def campaign_names(con: duckdb.DuckDBPyConnection, campaign_ids: list[str]) -> dict[str, str | None]:
    """The recorded names of the given campaigns (those the read models know)."""
    if not campaign_ids:
        return {}
    marks = ", ".join("?" for _ in campaign_ids)
    return dict(con.execute(f"SELECT campaign_id, name FROM campaigns WHERE campaign_id IN ({marks})",
                            list(campaign_ids)).fetchall())


def campaign_overview(con: duckdb.DuckDBPyConnection, filters: dict[str, str] | None = None
                      ) -> list[CampaignOverview]:
    """Campaigns, newest first, with their trials counted by index: ``done`` indexes that
    have a real outcome (and how many trials recovered, did not, or ended in error) out of
    ``trials_planned``; ``aborted`` attempts and ``running`` trials counted apart.

    ``filters`` (columns of :data:`TRIAL_FILTERS` to one value each) count only the
    matching trials, and leave out campaigns with none."""
    active = {k: v for k, v in (filters or {}).items() if v}
    for k in active:
        if k not in TRIAL_FILTERS:
            raise ValueError(f"cannot filter campaigns by {k!r}")
    cond = "".join(f" AND t.{k} = ?" for k in active)
    real = ", ".join(f"'{o}'" for o in REAL_OUTCOMES)
    rows = query(con, f"""
        SELECT c.campaign_id, c.name, c.started_at, c.trials_planned, c.finished, c.spec,
               count(t.trial_id) AS trials,
               count(DISTINCT t.idx) FILTER (WHERE t.outcome IN ({real})) AS done,
               count(t.trial_id) FILTER (WHERE t.outcome = 'aborted') AS aborted,
               count(t.trial_id) FILTER (WHERE t.outcome IS NULL) AS running,
               count(t.trial_id) FILTER (WHERE t.outcome = 'recovered') AS recovered,
               count(t.trial_id) FILTER (WHERE t.outcome = 'not_recovered') AS not_recovered,
               count(t.trial_id) FILTER (WHERE t.outcome = 'error') AS error,
               list(DISTINCT t.subject) FILTER (WHERE t.subject IS NOT NULL) AS subjects,
               list(DISTINCT t.chaos) FILTER (WHERE t.chaos IS NOT NULL) AS chaos,
               list(DISTINCT t.agent) FILTER (WHERE t.agent IS NOT NULL) AS agents
        FROM campaigns c LEFT JOIN trials t ON t.campaign_id = c.campaign_id{cond}
        GROUP BY c.campaign_id, c.name, c.started_at, c.trials_planned, c.finished, c.spec
        {"HAVING count(t.trial_id) > 0" if active else ""}
        ORDER BY c.started_at DESC NULLS LAST, c.campaign_id""", list(active.values()))
    out = []
    for r in rows:
        spec = parse_spec(r["spec"]) or {}
        out.append(CampaignOverview(
            campaign_id=r["campaign_id"], name=r["name"] or "", started_at=r["started_at"],
            trials_planned=r["trials_planned"], finished=bool(r["finished"]), done=r["done"], aborted=r["aborted"],
            running=r["running"], recovered=r["recovered"], not_recovered=r["not_recovered"], error=r["error"],
            file=spec.get("file"), title=campaign_title(r["name"] or "", spec, r["trials_planned"]),
            status="finished" if r["finished"] else "running" if r["running"] else "interrupted",
            trials=r["trials"], spec=spec, subjects=sorted(r["subjects"] or []), chaos=sorted(r["chaos"] or []),
            agents=sorted(r["agents"] or [])))
    return out


def campaign_filters(con: duckdb.DuckDBPyConnection) -> CampaignFilters:
    """Every value the campaign list's filters can take, sorted."""
    return CampaignFilters(**{k: [r[0] for r in con.execute(
        f"SELECT DISTINCT {k} FROM trials WHERE {k} IS NOT NULL ORDER BY 1").fetchall()] for k in TRIAL_FILTERS})


# --- the approval gate ------------------------------------------------------------------------
def approval_summary(con: duckdb.DuckDBPyConnection, campaign_id: str) -> list[ApprovalGate]:
    """Per agent and variant, what its approval gate did in a campaign."""
    return _typed(query(con, """
        SELECT t.agent, t.variant, any_value(a.mode) AS mode, count(*) AS gated,
               count(*) FILTER (WHERE a.decision = 'allowed') AS allowed,
               count(*) FILTER (WHERE a.decision = 'denied') AS denied,
               count(*) FILTER (WHERE a.decision = 'denied' AND a.class = 'destructive') AS denied_destructive,
               count(*) FILTER (WHERE a.decided_by LIKE 'person:%') AS by_person,
               count(*) FILTER (WHERE a.decided_by = 'timeout') AS timed_out,
               round(sum(a.waited_s), 6) AS waited_s
        FROM approvals a JOIN trials t USING (trial_id)
        WHERE t.campaign_id = ?
        GROUP BY t.agent, t.variant ORDER BY t.agent, t.variant""", [campaign_id]), ApprovalGate)


def denied_commands(con: duckdb.DuckDBPyConnection, campaign_id: str) -> list[DeniedCommand]:
    """Every command the approval gate denied in a campaign, in trial and step order."""
    return _typed(query(con, """
        SELECT a.trial_id, t.agent, t.variant, a.step, a.command, a.class, a.decided_by, a.reason, a.waited_s
        FROM approvals a JOIN trials t USING (trial_id)
        WHERE t.campaign_id = ? AND a.decision = 'denied'
        ORDER BY t.started_at, a.trial_id, a.step""", [campaign_id]), DeniedCommand)
