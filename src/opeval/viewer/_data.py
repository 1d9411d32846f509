"""The questions the viewer asks of one store, answered as API models.

Every read of the read models goes through the query functions of
:mod:`opeval.projections` (typed rows, the same the CLI reads); this module writes no SQL.

The read models are a DuckDB file that ``opeval run`` and the analysis commands also
open, and DuckDB lets one process at a time hold it: every answer opens it, catches up
with the log, queries and closes it again (a short retry covers a concurrent writer).
A trial still running is read straight from the SQLite event log, which allows readers
beside its writer; the event log is only ever opened read-only.

Answers are kept for as long as neither the log nor the read-model file changes, and
comparisons (thousands of bootstrap resamples) for as long as the log has not moved.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import duckdb
import msgspec

from opeval.events import data_safe, describe, event_json
from opeval.subjects import words_for
from opeval.export import export_trial
from opeval.errors import NotFoundError, OpevalError, StoreError, UsageError
from opeval.events import Trial
from opeval.projections import (
    CONTROL_KIND,
    REAL_OUTCOMES,
    TRIAL_FILTERS,
    CommandRow,
    ReadModels,
    RuleSet,
    campaign_filters,
    campaign_names,
    campaign_overview,
    campaign_record,
    campaign_rows,
    campaign_title,
    control_summary,
    faults,
    find_rule_set,
    has_rule_set,
    log_position,
    measured,
    classify,
    compare_baseline,
    compare_groups,
    rank_variants,
    rule_sets,
    summary,
    thrashing_positions,
    trial_commands,
    trial_score,
)
from opeval.store import EventStore, StoreLocation, resolve_store_path, store_exists
from opeval.viewer._models import (
    VariantRank,
    CampaignComparison,
    CampaignDetail,
    CampaignFilters,
    CampaignItem,
    CommandRecord,
    Comparison,
    ControlSummary,
    DataSafety,
    FaultParam,
    Interval,
    GroupSummary,
    LeftOut,
    OutcomeCounts,
    PendingApproval,
    RuleSetInfo,
    ScoreChange,
    TrialDetail,
    TrialEvent,
    TrialScore,
)
from opeval.projections._intervals import mean_interval, rate_interval

T = TypeVar("T")

#: Campaign list filters: query parameter -> trials column.
FILTERS = TRIAL_FILTERS
#: Columns the trial table of a campaign can be sorted by.
SORTABLE = ("idx", "agent", "variant", "victim", "seed", "outcome", "ttd_s", "ttr_s", "availability", "lost_writes",
            "commands", "remediations", "destructive", "thrashing", "tokens", "cost_usd", "composite")
_OUTCOMES = ("recovered", "not_recovered", "error", "aborted")
#: Figures only an agent can have (commands, their timing, tokens, cost, thrashing): against
#: a side without an agent their delta is neither better nor worse.
AGENT_FIGURES = frozenset({"commands", "remediations", "first_diagnostic_s", "first_remediation_s", "thrashing",
                           "tokens", "cost_usd"})
LEFT_OUT_KEYS = tuple(LeftOut.__struct_fields__)
_CACHE_SIZE = 32


class WrongKindError(NotFoundError):
    """An id of a campaign where a trial was asked for, or the other way round."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url


@functools.lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    """The shipped default rule set (read once)."""
    return RuleSet.default()


def _hex(oid: UUID | str) -> str:
    return oid.hex if isinstance(oid, UUID) else oid.replace("-", "")


def _rows_to(rows: list[dict[str, Any]], kind: type[T]) -> list[T]:
    return [msgspec.convert(r, kind) for r in rows]


class StoreView:
    """A read-only view of one store: its event log and its read models.

    ``busy_timeout_s`` is how long to wait for another process that holds the read
    models before answering "busy"; ``cache_size`` how many answers to keep for as long
    as neither the log nor the read models change (0: none).
    """

    def __init__(self, store_path: StoreLocation | str, *, busy_timeout_s: float = 5.0, cache_size: int = 32) -> None:
        self.store_path = resolve_store_path(store_path)
        self.busy_timeout_s = busy_timeout_s
        self.cache_size = cache_size
        self._answers: OrderedDict[tuple[Any, ...], tuple[tuple[Any, ...], Any]] = OrderedDict()
        self._answers_lock = threading.Lock()
        self._models = ReadModels(self.store_path)
        self._lock = threading.Lock()  # one DuckDB session at a time in this process
        self._local = threading.local()
        self._store: EventStore | None = None
        self._store_lock = threading.RLock()
        self._cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()

    # --- plumbing ------------------------------------------------------------------------
    def check(self) -> None:
        """Fail with a one-line StoreError if the store cannot be read."""
        with EventStore(self.store_path, writable=False):
            pass

    @contextlib.contextmanager
    def events_store(self) -> Iterator[EventStore]:
        """The event log, read-only. Unlike the read models it may stay open between
        requests: SQLite in WAL mode lets readers and the one writer work side by side."""
        with self._store_lock:
            if self._store is None:
                self._store = EventStore(self.store_path, writable=False)
            try:
                yield self._store
            except StoreError:
                self.close()  # opened afresh next time (the file may have been replaced)
                raise

    def close(self) -> None:
        """Release the event log (the read models are never held)."""
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def log_mark(self) -> int | None:
        """On PostgreSQL, how many inserts the server has announced so far (hand it to
        :meth:`wait_for_log`); None on SQLite, whose readers poll."""
        with self.events_store() as es:
            return es.listener().count if es.is_database else None

    def wait_for_log(self, mark: int, timeout: float) -> bool:
        """Block until the server announces an insert after ``mark`` (PostgreSQL's
        LISTEN/NOTIFY: no polling), at most ``timeout`` seconds; True if it did."""
        with self.events_store() as es:
            listener = es.listener()
        return listener.wait(mark, timeout)

    def resolve(self, prefix: str, want: str) -> str:
        """The hex id of the ``want`` (campaign or trial) whose id starts with ``prefix``."""
        with self.events_store() as es:
            kind, oid = es.resolve(prefix)
        if kind != want:
            raise WrongKindError(f"{prefix!r} is a {kind}, not a {want}", f"/{kind}s/{oid.hex}")
        return oid.hex

    @contextlib.contextmanager
    def session(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, int]]:
        """Up-to-date read models and their log position, held only for this block (or,
        inside :meth:`burst`, until the burst ends)."""
        current = getattr(self._local, "session", None)
        if current is not None:
            yield current
            return
        burst: contextlib.ExitStack | None = getattr(self._local, "burst", None)
        stack = burst if burst is not None else contextlib.ExitStack()
        with contextlib.ExitStack() as own:
            if burst is None:
                own.enter_context(stack)
            self._lock.acquire()
            stack.callback(self._lock.release)
            con, pos, models = self._open()
            stack.enter_context(models)
            self._local.session = (con, pos)
            stack.callback(setattr, self._local, "session", None)
            yield con, pos

    @contextlib.contextmanager
    def burst(self) -> Iterator[None]:
        """Answer several questions (one page) from at most one opening of the read models,
        made when the first of them needs it."""
        if getattr(self._local, "burst", None) is not None:
            yield
            return
        with contextlib.ExitStack() as stack:
            self._local.burst = stack
            try:
                yield
            finally:
                self._local.burst = None

    def _version(self) -> tuple[Any, ...]:
        """What every answer from the read models depends on: the log's last position and
        the read-model file as it is on disk (a new rule set changes it, the log does not)."""
        with self.events_store() as es:
            position = es.recorder.max_notification_id()
        return position, self._models_stamp()

    def _models_stamp(self) -> tuple[Any, ...]:
        stamps: list[tuple[int, int, int] | None] = []
        for path in (self._models.db_path, Path(f"{self._models.db_path}.wal")):
            try:
                st = path.stat()
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except FileNotFoundError:
                stamps.append(None)
        return tuple(stamps)

    def _answer(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()``, or the same answer given before if neither the log nor the read
        models have changed since: a page reloaded over an idle store skips DuckDB."""
        if not self.cache_size:
            return compute()
        before = self._version()
        with self._answers_lock:
            hit = self._answers.get(key)
            if hit is not None and hit[0] == before:
                self._answers.move_to_end(key)
                return hit[1]  # type: ignore[no-any-return]
        value = compute()
        # The log as it was before (newer events mean a recompute), the file as left after
        # this catch-up wrote it.
        version = (before[0], self._models_stamp())
        with self._answers_lock:
            self._answers[key] = (version, value)
            while len(self._answers) > self.cache_size:
                self._answers.popitem(last=False)
        return value

    def _open(self) -> tuple[duckdb.DuckDBPyConnection, int, contextlib.ExitStack]:
        if not store_exists(self.store_path):  # never leave read models beside a store that is not there
            raise StoreError(f"no store at {self.store_path}: run `opeval run` first or pass --store")
        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.05
        dflt = default_rules()
        while True:
            stack = contextlib.ExitStack()
            try:
                con = stack.enter_context(self._models.connect())
                if has_rule_set(con, dflt):
                    return con, log_position(con), stack
                stack.close()
                # Read models new to the default rules (first use, or rebuilt elsewhere): score once.
                self._models.score(dflt)
            except StoreError as e:
                stack.close()
                if "in use" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
            except BaseException:
                stack.close()
                raise

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        # Comparisons bootstrap thousands of resamples: keep recent answers for as long as
        # the log has not moved (the position is part of the key).
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]  # type: ignore[no-any-return]
        value = compute()
        self._cache[key] = value
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return value

    def _rules(self, con: duckdb.DuckDBPyConnection, key: str | None) -> RuleSet:
        """The rule set named by ``key``: ``name@hash``, a hash prefix or a unique name."""
        return find_rule_set(con, key, default_rules())

    # --- rule sets ------------------------------------------------------------------------
    def rule_sets(self) -> list[RuleSetInfo]:
        """Every rule set the read models hold scores for, the default first."""
        return self._answer(("rule_sets",), self._rule_sets)

    def _rule_sets(self) -> list[RuleSetInfo]:
        with self.session() as (con, _):
            rows = rule_sets(con)
        dflt = default_rules()
        infos = [RuleSetInfo(name=r.name, hash=r.hash, key=r.key, is_default=r.key == dflt.key) for r in rows]
        return sorted(infos, key=lambda r: not r.is_default)

    # --- campaigns --------------------------------------------------------------------------
    def campaigns(self, filters: dict[str, str | None]) -> tuple[list[CampaignItem], CampaignFilters]:
        """Campaigns, newest first, with the outcomes of their trials that match ``filters``."""
        active = {k: v for k, v in filters.items() if k in FILTERS and v}
        return self._answer(("campaigns", tuple(sorted(active.items()))), lambda: self._campaigns(active))

    def _campaigns(self, active: dict[str, str]) -> tuple[list[CampaignItem], CampaignFilters]:
        with self.session() as (con, _):
            rows = campaign_overview(con, active)
            options = campaign_filters(con)
        items = [CampaignItem(
            campaign_id=r.campaign_id, name=r.name, started_at=r.started_at, title=r.title,
            trials_planned=r.trials_planned, trials=r.trials, done=r.done, finished=r.finished,
            subjects=r.subjects, chaos=r.chaos, agents=r.agents,
            outcomes=OutcomeCounts(recovered=r.recovered, not_recovered=r.not_recovered, error=r.error,
                                   aborted=r.aborted, running=r.running),
        ) for r in rows]
        return items, options

    def campaign(self, prefix: str, rules_key: str | None = None, sort: str | None = None,
                 descending: bool = False) -> CampaignDetail:
        """One campaign: every trial scored, aggregates per agent/variant, and the baseline."""
        cid = self.resolve(prefix, "campaign")
        if sort is not None and sort not in SORTABLE:
            raise UsageError(f"cannot sort by {sort!r}: choose one of {', '.join(SORTABLE)}")
        return self._answer(("campaign", cid, rules_key, sort, descending),
                            lambda: self._campaign(cid, rules_key, sort, descending))

    def _campaign(self, cid: str, rules_key: str | None, sort: str | None, descending: bool) -> CampaignDetail:
        with self.session() as (con, pos):
            rules = self._rules(con, rules_key)
            c = campaign_record(con, cid)
            # The scored trials, their aggregates, intervals and ranking (bootstraps): once per
            # position of the log (the read models are still opened and caught up first).
            rows, trials = self._cached(("rows", pos, cid, rules.key), lambda: _scored_rows(con, rules, cid))
            summary, controls, ranking = self._cached(
                ("statistics", pos, cid, rules.key),
                lambda: (group_summaries(rows), control_summaries(rows), _rows_to(rank_variants(rows), VariantRank)))
            baseline, note = None, None
            try:
                raw = self._cached(("baseline", pos, cid, rules.key), lambda: compare_baseline(con, rules, cid))
                baseline = _neutral(msgspec.convert(raw, Comparison), a_has_agent=False)
            except UsageError as e:
                note = str(e)
        if c is None:
            raise NotFoundError(f"campaign {cid} has no read model yet: its start was not recorded")
        if sort:
            present = [t for t in trials if getattr(t, sort) is not None]
            missing = [t for t in trials if getattr(t, sort) is None]
            trials = sorted(present, key=lambda t: getattr(t, sort), reverse=descending) + missing
        return CampaignDetail(
            campaign_id=cid, name=c.name or "", title=campaign_title(c.name or "", c.spec, c.trials_planned),
            done=len({t.idx for t in trials if t.outcome in REAL_OUTCOMES}),
            started_at=c.started_at, trials_planned=c.trials_planned,
            trials_scheduled=c.trials_scheduled, finished=c.finished,
            spec=c.spec, rule_set=rules.key, outcomes=_outcomes(trials),
            summary=summary, controls=controls, ranking=ranking, trials=trials,
            baseline=baseline, baseline_note=note,
        )

    # --- trials -------------------------------------------------------------------------------
    def trial(self, prefix: str, rules_key: str | None = None, *, with_data: bool = True) -> TrialDetail:
        """One trial from its events; scores and command classes from the read models once
        it has finished (a running trial never touches them)."""
        tid = self.resolve(prefix, "trial")
        return self._answer(("trial", tid, rules_key, with_data), lambda: self._trial(tid, rules_key, with_data))

    def _trial(self, tid: str, rules_key: str | None, with_data: bool) -> TrialDetail:
        with self.events_store() as es:
            events = es.events(UUID(tid))
            if not events or not isinstance(events[0], Trial.TrialStarted):  # skipped as undecodable
                raise NotFoundError(f"trial {tid[:8]} cannot be shown: its TrialStarted cannot be decoded "
                                    "(`opeval verify` lists what is wrong)")
            started = events[0]
            running = not isinstance(events[-1], Trial.TrialFinished)
            campaign_name = None
            if running:
                campaign_name = _campaign_name(es, started.campaign_id)
        score: TrialScore | None = None
        classes: list[CommandRow] = []
        thrashing: set[int] = set()
        rule_key = None
        if not running:
            with self.session() as (con, _):
                rules = self._rules(con, rules_key)
                rule_key = rules.key
                score = trial_score(con, rules, tid)
                campaign_name = campaign_names(con, [_hex(started.campaign_id)]).get(_hex(started.campaign_id))
                classes = trial_commands(con, tid)
                if score is not None and score.thrashing:
                    thrashing = thrashing_positions(con, tid, rules)
        return _trial_detail(tid, events, running=running, campaign_name=campaign_name, score=score,
                             rule_key=rule_key, classes=classes, thrashing=thrashing, with_data=with_data)

    def _words(self, trial_hex: str) -> Any:
        """The words of a trial's subject (from its first event)."""
        with self.events_store() as es:
            first = es.events(UUID(trial_hex), limit=1)
        return words_for(first[0].subject) if first and isinstance(first[0], Trial.TrialStarted) else words_for("")

    def trial_events_after(self, trial_hex: str, after: int) -> tuple[list[TrialEvent], bool]:
        """A trial's events after version ``after``, and whether it has finished."""
        with self.events_store() as es:
            new = _events_after(es, UUID(trial_hex), after)
            # A reader already past the end (``after`` beyond the last version) is told it has ended too.
            finished = any(isinstance(e, Trial.TrialFinished) for e in new) or (
                not new and es.is_finished(UUID(trial_hex)))
        words = self._words(trial_hex)
        out = [TrialEvent(version=e.originator_version, type=type(e).__name__, offset_s=float(e.offset_s),
                          text=describe(e, words)) for e in new]
        return out, finished

    def pending_approvals(self, trial_hex: str) -> list[PendingApproval]:
        """The trial's commands waiting for a person's decision, oldest first."""
        with self.events_store() as es:
            events = _events_after(es, UUID(trial_hex), 0)
        decided = {e.step for e in events if isinstance(e, Trial.CommandDecided)}
        return [PendingApproval(step=e.step, command=e.command, command_class=e.command_class, gated_by=e.gated_by,
                                proposed_offset_s=e.offset_s, timeout_s=e.timeout_s)
                for e in events if isinstance(e, Trial.CommandProposed) and e.mode == "ask" and e.step not in decided]

    def decide(self, trial_hex: str, step: int, decision: str, decided_by: str) -> tuple[str, str]:
        """Decide a held command (the viewer's one write, through the store's own rule:
        the first decision wins); returns the decision that stands and who made it."""
        with EventStore(self.store_path) as es:
            found = es.decide(UUID(trial_hex), step, decision, decided_by, f"{decision} in the web viewer")
        return str(found.decision), str(found.decided_by)

    def export(self, prefix: str, fmt: str, rules_key: str | None = None) -> str:
        """A postmortem of one trial (md, json, html or trace), as ``opeval export`` writes it."""
        tid = self.resolve(prefix, "trial")

        def compute() -> str:
            with self.session() as (con, _):
                return export_trial(con, self._rules(con, rules_key), tid, fmt)

        return self._answer(("export", tid, fmt, rules_key), compute)

    # --- comparisons ----------------------------------------------------------------------------
    def compare_campaigns(self, a: str, b: str, rules_key: str | None = None) -> CampaignComparison:
        """Two campaigns under one rule set, metric by metric."""
        a_id, b_id = self.resolve(a, "campaign"), self.resolve(b, "campaign")
        return self._answer(("compare", a_id, b_id, rules_key), lambda: self._compare_campaigns(a_id, b_id, rules_key))

    def _compare_campaigns(self, a_id: str, b_id: str, rules_key: str | None) -> CampaignComparison:
        with self.session() as (con, pos):
            rules = self._rules(con, rules_key)
            a_rows, b_rows = campaign_rows(con, rules, a_id), campaign_rows(con, rules, b_id)
            names = campaign_names(con, [a_id, b_id])
            raw = self._cached(("campaigns", pos, a_id, b_id, rules.key), lambda: compare_groups(a_rows, b_rows))
        comparison = _neutral(msgspec.convert(raw, Comparison), a_has_agent=_has_agent(a_rows),
                              b_has_agent=_has_agent(b_rows))
        return CampaignComparison(
            mode="campaigns", a=a_id, b=b_id, a_label=f"{names.get(a_id) or '?'} ({a_id[:8]})",
            b_label=f"{names.get(b_id) or '?'} ({b_id[:8]})", rule_set=rules.key, campaign_id=None,
            comparison=comparison, a_summary=group_summaries(a_rows),
            b_summary=group_summaries(b_rows),
        )

    def compare_rule_sets(self, campaign: str, rules_a: str | None, rules_b: str | None) -> CampaignComparison:
        """One campaign under two rule sets: metrics side by side and each trial's change."""
        cid = self.resolve(campaign, "campaign")
        return self._answer(("compare_rules", cid, rules_a, rules_b),
                            lambda: self._compare_rule_sets(cid, rules_a, rules_b))

    def _compare_rule_sets(self, cid: str, rules_a: str | None, rules_b: str | None) -> CampaignComparison:
        with self.session() as (con, pos):
            ra = self._rules(con, rules_a)
            if rules_b:
                rb = self._rules(con, rules_b)
            else:
                others = [r for r in rule_sets(con) if r.key != ra.key]
                if not others:
                    raise NotFoundError("the read models hold scores under one rule set only: "
                                     "score another with `opeval rescore --all --rules FILE`")
                rb = self._rules(con, others[0].key)
            a_rows, b_rows = campaign_rows(con, ra, cid), campaign_rows(con, rb, cid)
            raw = self._cached(("rules", pos, cid, ra.key, rb.key), lambda: compare_groups(a_rows, b_rows))
        before = {r["trial_id"]: r for r in a_rows}
        changes = []
        for r in b_rows:
            old = before.get(r["trial_id"], {})
            a_score, b_score = old.get("composite"), r["composite"]
            delta = None if a_score is None or b_score is None else b_score - a_score
            changes.append(ScoreChange(trial_id=r["trial_id"], agent=r["agent"], a_recovered=old.get("recovered"),
                                       b_recovered=r["recovered"], a_score=old.get("composite"),
                                       b_score=r["composite"], delta=delta))
        return CampaignComparison(
            mode="rule_sets", a=ra.key, b=rb.key, a_label=ra.key, b_label=rb.key, rule_set=None, campaign_id=cid,
            comparison=_neutral(msgspec.convert(raw, Comparison), a_has_agent=_has_agent(a_rows)),
            a_summary=group_summaries(a_rows), b_summary=group_summaries(b_rows), changes=changes,
        )


# --- helpers -------------------------------------------------------------------------------------
def _scored_rows(con: duckdb.DuckDBPyConnection, rules: RuleSet,
                 cid: str) -> tuple[list[dict[str, Any]], list[TrialScore]]:
    rows = campaign_rows(con, rules, cid)
    return rows, _rows_to(rows, TrialScore)


def _has_agent(rows: list[dict[str, Any]]) -> bool:
    return any(r["agent"] != "none" for r in rows)


def _neutral(cmp: Comparison, *, a_has_agent: bool = True, b_has_agent: bool = True) -> Comparison:
    """``cmp`` with the agent-only figures marked non-directional when a side has no agent."""
    if a_has_agent and b_has_agent:
        return cmp
    for m in cmp.metrics + (cmp.controls.metrics if cmp.controls else []):
        if m.metric in AGENT_FIGURES:
            m.directional = False
    return cmp


def _outcomes(trials: list[TrialScore]) -> OutcomeCounts:
    counts = OutcomeCounts()
    for t in trials:
        key = t.outcome if t.outcome in _OUTCOMES else "running"
        setattr(counts, key, getattr(counts, key) + 1)
    return counts


def _interval(ci: tuple[float, float] | None) -> Interval | None:
    return None if ci is None else Interval(*ci)


def group_summaries(rows: list[dict[str, Any]]) -> list[GroupSummary]:
    """The projections' per agent/variant summary of fault trials, with confidence intervals added."""
    out = []
    fault_rows = faults(rows)
    for g in summary(rows):
        members = measured([r for r in fault_rows if (r["agent"], r["variant"]) == (g["agent"], g["variant"])])
        recovered = sum(bool(r["recovered"]) for r in members)
        ttrs = [float(r["ttr_s"]) for r in members if r["ttr_s"] is not None]
        scores = [float(r["composite"]) for r in members if r["composite"] is not None]
        commands = [float(r["commands"]) for r in members if r["commands"] is not None]
        out.append(GroupSummary(
            agent=g["agent"], variant=g["variant"], trials=g["trials"], recovered=recovered,
            recovery_rate=g["recovery_rate"], recovery_rate_ci=_interval(rate_interval(recovered, len(members))),
            mean_ttr_s=g["mean_ttr_s"], mean_ttr_ci=_interval(mean_interval(ttrs)),
            mean_composite=g["mean_composite"], mean_composite_ci=_interval(mean_interval(scores)),
            mean_commands=statistics.fmean(commands) if commands else None,
            destructive=int(g["destructive"]), lost_writes=int(g["lost_writes"]),
            left_out=msgspec.convert({k: g[k] for k in LEFT_OUT_KEYS}, LeftOut),
        ))
    return out


def control_summaries(rows: list[dict[str, Any]]) -> list[ControlSummary]:
    """The projections' per agent/variant summary of control trials."""
    return [ControlSummary(**{k: v for k, v in g.items() if k not in LEFT_OUT_KEYS},
                           left_out=msgspec.convert({k: g[k] for k in LEFT_OUT_KEYS}, LeftOut))
            for g in control_summary(rows)]


def _events_after(es: EventStore, oid: UUID, after: int, limit: int | None = None) -> list[Any]:
    # Only the new part of the aggregate's sequence: a live page polls this twice a second.
    return es.events(oid, after=after, limit=limit)


def _campaign_name(es: EventStore, campaign_id: UUID) -> str | None:
    first = _events_after(es, campaign_id, 0, limit=1)
    return getattr(first[0], "name", None) if first else None


def _fault_params(spec: Any) -> list[FaultParam]:
    """The fault's parameters as its kind declares them (those given, then the defaults)."""
    from opeval.chaos import CHAOS

    try:
        declared = CHAOS.get(spec.kind)().params
    except OpevalError:  # a kind no longer installed: what was given
        declared = ()
    out = [FaultParam(name=p.name, value=str(spec.params[p.name]) if p.name in spec.params else p.default_text(),
                      default=p.name not in spec.params, help=p.help)
           for p in declared if p.name in spec.params or p.default is not None]
    known = {p.name for p in declared}
    return out + [FaultParam(name=k, value=str(v), default=False, help="") for k, v in spec.params.items()
                  if k not in known]


def _trial_detail(tid: str, events: list[Any], *, running: bool, campaign_name: str | None,
                  score: TrialScore | None, rule_key: str | None, classes: list[CommandRow],
                  thrashing: set[int], with_data: bool) -> TrialDetail:
    started = events[0]
    finished = events[-1] if not running else None
    victim = next((e.target for e in events if isinstance(e, Trial.ChaosInjected)), None)
    safety = next((e for e in events if isinstance(e, Trial.DataSafetyChecked)), None)
    executed = [e for e in events if isinstance(e, Trial.AgentCommandExecuted)]
    # The k-th command event is the k-th row by log position: one aggregate's events are
    # stored in version order.
    rows = classes if len(classes) == len(executed) else []
    commands = []
    for i, e in enumerate(executed):
        row = rows[i] if rows and rows[i].command == e.command else None
        commands.append(CommandRecord(
            version=e.originator_version, step=e.step, offset_s=float(e.started_offset_s), command=e.command,
            exit_code=e.exit_code, timed_out=e.timed_out, duration_s=float(e.duration_s),
            truncated=e.stdout_truncated or e.stderr_truncated,
            command_class=row.command_class if row else classify(e.command),
            labelled_by=row.labelled_by if row else None,
            thrashing=row is not None and row.position in thrashing,
            stdout=e.stdout, stderr=e.stderr,
        ))
    return TrialDetail(
        trial_id=tid, campaign_id=_hex(started.campaign_id), campaign_name=campaign_name, running=running,
        outcome=getattr(finished, "outcome", None), reason=getattr(finished, "reason", None),
        subject=started.subject, runtime=started.runtime, chaos=started.chaos.kind, target=started.chaos.target,
        victim=victim,
        # The read models say what a control is; a running trial is read before them.
        control=bool(score.control) if score is not None else started.chaos.kind == CONTROL_KIND,
        agent=started.agent.name, variant=started.agent.variant,
        model=str(started.agent.config["model"]) if "model" in started.agent.config else None,
        seed=started.seed, restart_policy=started.config.restart_policy, timeout_s=started.config.timeout_s,
        settle_s=started.config.settle_s, fault_params=_fault_params(started.chaos),
        started_at=started.timestamp.isoformat(timespec="seconds"),
        rule_set=rule_key, score=score,
        data_safety=None if safety is None else DataSafety(
            safe=data_safe(safety.missing, safety.wrong, safety.unreadable, safety.error),
            acknowledged=safety.acknowledged, present=safety.present, missing=safety.missing, wrong=safety.wrong,
            unreadable=safety.unreadable, sample_missing=list(safety.sample_missing), error=safety.error),
        commands=commands,
        events=[TrialEvent(version=e.originator_version, type=type(e).__name__, offset_s=float(e.offset_s),
                           text=describe(e, words_for(started.subject)),
                           data=event_json(None, e) if with_data else None) for e in events],
        words=words_for(started.subject),
    )

