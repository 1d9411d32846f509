"""The event store: eventsourcing on a SQLite file or a PostgreSQL database, with
opeval's codec.

Opening checks the store first (is it SQLite? an opeval store? can we take the write
lock? does the database answer?) so that a bad store fails with one clear sentence,
before a cluster starts and without writing a byte to it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Mapper, Notification

from opeval.errors import NotFoundError, StoreError, UndecodableEvent
from opeval.events import Approval, ApprovalDecidedError, Campaign, CommandLabels, MsgspecMapper, Trial, event_name
from opeval.store import _postgres, _sqlite
from opeval.store._location import ENV_VAR, PostgresURL, StoreLocation, default_store_path, parse_store, \
    read_model_path, resolve_store_path

_TABLE = "stored_events"
_TRIAL_STARTED = "opeval.trial:TrialStarted"
_TRIAL_FINISHED = "opeval.trial:TrialFinished"
_CAMPAIGN_STARTED = "opeval.campaign:CampaignStarted"


_warned: set[tuple[str, int]] = set()


def warn_undecodable(e: UndecodableEvent) -> None:
    """One line on standard error per unreadable event (once per process, whoever meets it)."""
    oid = e.originator_id.hex if isinstance(e.originator_id, UUID) else str(e.originator_id).replace("-", "")
    if (oid, e.version) in _warned:
        return
    _warned.add((oid, e.version))
    kind = e.topic.partition(".")[2].partition(":")[0] or "aggregate"
    sys.stderr.write(f"opeval: warning: skipped {e.topic.rpartition(':')[2]} #{e.version} of {kind} {oid[:8]}, "
                     f"which cannot be decoded ({e.reason}); `opeval verify` lists every such event\n")


class _StoreApplication(Application):  # type: ignore[type-arg]
    """The eventsourcing application behind :class:`EventStore`."""

    name = "opeval"

    def construct_mapper(self) -> Mapper:  # type: ignore[type-arg]
        return MsgspecMapper()


def _check_file(path: Path, *, writable: bool, lock_timeout: float) -> None:
    """Fail with a one-line StoreError if ``path`` cannot serve as a store."""
    where = f"store {path}"
    if path.exists() and not path.is_file():
        raise StoreError(f"{where} is not a file: pass --store with a file path")
    if writable:
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the directory of {where}: {e.strerror}") from None
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise StoreError(f"{where} is not writable: fix its permissions or pass --store")
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode={'rw' if writable else 'ro'}", uri=True,
                               timeout=lock_timeout, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"cannot open {where}: {e}") from None
    try:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            if "locked" in str(e):
                raise StoreError(
                    f"{where} is locked by another process: wait for it or use another --store"
                ) from None
            raise StoreError(
                f"{where} is corrupt or not a SQLite file ({e}): move it aside or pass --store"
            ) from None
        if tables and _TABLE not in tables:
            raise StoreError(f"{path} is a SQLite file but not an opeval store: pass --store")
        if writable:
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError as e:
                raise StoreError(
                    f"{where} is locked by another process ({e}): wait for it or use another --store"
                ) from None
    finally:
        conn.close()


def _check_database(location: PostgresURL, *, writable: bool) -> None:
    """Fail with a one-line StoreError if the database cannot serve as a store."""
    with _postgres.connect(location) as conn:
        exists = _postgres.table_exists(conn)
    if not exists and not writable:
        raise StoreError(f"no store in {location} yet: run `opeval run` first or pass --store")


def store_exists(location: StoreLocation) -> bool:
    """Is there a store at ``location`` yet? (A database counts once its table exists.)"""
    if isinstance(location, PostgresURL):
        try:
            with _postgres.connect(location) as conn:
                return _postgres.table_exists(conn)
        except StoreError:  # unreachable is "not there" to a caller asking
            return False
    return Path(location).is_file()


def log_rows(location: StoreLocation, after: int, batch: int) -> Iterator[list[tuple[int, str, int, str, bytes]]]:
    """The raw log after position ``after`` (a notification id), ``batch`` rows at a time:
    ``(position, hex aggregate id, version, topic, state)``. Read-only, for projections
    that decode in bulk rather than event by event."""
    if isinstance(location, PostgresURL):
        return _postgres.rows_after(location, after, batch)
    return _sqlite.rows_after(Path(location), after, batch)


def log_origin(location: StoreLocation) -> str:
    """The log's identity, ``<first aggregate id>:<version>`` ('' when empty): a store
    replaced by another at the same location has another."""
    if isinstance(location, PostgresURL):
        first = _postgres.first_event(location)
    else:
        first = _sqlite.first_event(Path(location))
    return f"{first[0]}:{first[1]}" if first else ""


class EventStore:
    """The append-only log of campaigns and trials, in a SQLite file or a PostgreSQL
    database (``location``: a path, a ``postgresql://`` URL or a :class:`PostgresURL`).

    ``writable=False`` opens an existing store without creating or changing anything.
    """

    def __init__(self, location: StoreLocation | str, *, writable: bool = True, lock_timeout: float = 10.0):
        self.path: StoreLocation = location if isinstance(location, PostgresURL) else parse_store(location)
        self.writable = writable
        self.is_database = isinstance(self.path, PostgresURL)
        if isinstance(self.path, PostgresURL):
            _check_database(self.path, writable=writable)
            env = _postgres.recorder_env(self.path, writable=writable, lock_timeout=lock_timeout)
            self._table, self._id, self._p = _postgres.TABLE, _postgres.HEX_ID, "%s"
            guard: Any = _postgres.creation_guard(self.path, env) if writable else contextlib.nullcontext()
        else:
            _check_file(self.path, writable=writable, lock_timeout=lock_timeout)
            if not writable and not self.path.exists():
                raise StoreError(f"no store at {self.path} yet: run `opeval run` first or pass --store")
            env = {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.path),
                "SQLITE_LOCK_TIMEOUT": str(max(1, int(lock_timeout))),
                "APPLICATION_RECORDER_TOPIC": "opeval.store._sqlite:BulkSQLiteRecorder",
                "CREATE_TABLE": "y" if writable else "n",
                "AGGREGATE_CACHE_MAXSIZE": "",
            }
            self._table, self._id, self._p = _TABLE, "originator_id", "?"
            guard = contextlib.nullcontext()
        try:
            with guard:
                self.app = _StoreApplication(env=env)
        except StoreError:
            raise
        except Exception as e:  # eventsourcing wraps sqlite/psycopg errors in its own types
            raise StoreError(f"cannot open store {self.path}: {e}") from None
        self.recorder: Any = self.app.recorder
        self._listener: Any = None
        #: Called with each event that cannot be decoded, which readers then skip.
        self.on_undecodable: Callable[[UndecodableEvent], None] = warn_undecodable

    # --- writing ---------------------------------------------------------------
    def save(self, *aggregates: Trial | Campaign | CommandLabels | Approval) -> None:
        """Append the pending events of ``aggregates`` in one durable transaction.

        Raises eventsourcing's ``IntegrityError`` (not a StoreError) when another process
        appended to one of the aggregates first: the caller decides (reload and retry, or
        give up a claim)."""
        if not self.writable:
            raise StoreError(f"store {self.path} was opened read-only")
        try:
            self.app.save(*aggregates)
        except IntegrityError:
            raise
        except Exception as e:
            raise StoreError(f"cannot write to store {self.path}: {e}") from e

    # --- reading ---------------------------------------------------------------
    def _decode(self, stored: Any) -> Any:
        """The domain event of a stored one; None (and a warning) if it cannot be decoded."""
        try:
            return self.app.mapper.to_domain_event(stored)
        except UndecodableEvent as e:
            self.on_undecodable(e)
            return None

    def _get(self, kind: str, oid: UUID) -> Any:
        """The aggregate from its readable events: one that cannot be decoded is skipped
        (with a warning); without its first event the aggregate cannot be built at all."""
        aggregate = None
        for stored in self.recorder.select_events(oid):
            event = self._decode(stored)
            if event is None:
                if stored.originator_version == 1:
                    raise StoreError(f"{kind} {oid.hex[:8]} cannot be read: its first event cannot be decoded; "
                                     "`opeval verify` says which")
                continue
            if aggregate is not None and event.originator_version != aggregate.version + 1:
                aggregate._version = event.originator_version - 1  # step over the unreadable ones  # noqa: SLF001
            aggregate = event.mutate(aggregate)
        if aggregate is None:
            raise NotFoundError(f"no {kind} {oid} in store {self.path}")
        return aggregate

    def trial(self, trial_id: UUID) -> Trial:
        """The trial as its events make it now."""
        return self._get("trial", trial_id)  # type: ignore[no-any-return]

    def campaign(self, campaign_id: UUID) -> Campaign:
        """The campaign as its events make it now."""
        return self._get("campaign", campaign_id)  # type: ignore[no-any-return]

    def labels(self, model: str) -> CommandLabels | None:
        """The labels ``model`` has given to commands so far, if it was ever asked."""
        try:
            return self._get("labels", CommandLabels.id_for(model))  # type: ignore[no-any-return]
        except NotFoundError:
            return None

    def approval(self, trial_id: UUID, step: int) -> Approval | None:
        """The approval request of ``trial_id``'s command at ``step``, if one was made."""
        try:
            return self.app.repository.get(Approval.id_for(trial_id, step))  # type: ignore[no-any-return]
        except AggregateNotFoundError:
            return None

    def decide(self, trial_id: UUID, step: int, decision: str, decided_by: str, reason: str = "") -> Approval:
        """Decide a pending approval; the first decision wins.

        Returns the approval as decided, by this call or by whoever was first (a person
        elsewhere, or the runner's timeout): compare its ``decided_by``.
        """
        for _ in range(5):
            found = self.approval(trial_id, step)
            if found is None:
                raise NotFoundError(f"trial {trial_id} has no command waiting for approval at step {step}")
            if found.decision is not None:
                return found
            try:
                found.decide(decision, decided_by, reason)
                self.save(found)
                return found
            except (ApprovalDecidedError, IntegrityError):  # someone else decided in between
                continue
        raise StoreError(f"cannot record the decision on trial {trial_id} step {step}: the store keeps changing")

    def events(self, originator_id: UUID, *, after: int = 0, limit: int | None = None) -> list[Any]:
        """The events of one aggregate, in order, decoded: those after version ``after``
        (a reader following a live trial asks only for what is new), at most ``limit``."""
        stored = self.recorder.select_events(originator_id, gt=after or None, limit=limit)
        return [e for e in map(self._decode, stored) if e is not None]

    def notifications(self, start: int = 1, limit: int = 1000,
                      topics: Sequence[str] = ()) -> Sequence[Notification]:
        """Raw notifications in log order (``start`` inclusive)."""
        return self.recorder.select_notifications(start, limit, topics=topics)  # type: ignore[no-any-return]

    def iter_events(self, topics: Sequence[str] = (), batch: int = 1000) -> Iterator[tuple[int, Any]]:
        """Every event in log order as ``(notification_id, event)``."""
        start = 1
        while True:
            page = self.notifications(start, batch, topics)
            for n in page:
                event = self._decode(n)
                if event is not None:
                    yield n.id, event
            if len(page) < batch:
                return
            start = page[-1].id + 1

    def position(self) -> int:
        """The last notification id in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0  # type: ignore[no-any-return]

    def wait_for_new(self, position: int, timeout: float) -> bool:
        """Wait until the log has an event after ``position``, at most ``timeout``
        seconds; True if it has. On PostgreSQL this sleeps on the table's NOTIFY channel
        (no polling); on SQLite, which has no notifications, it checks every 0.1 s."""
        deadline = time.monotonic() + timeout
        if self.is_database:
            listener = self.listener()
            seen = listener.count  # before looking: an insert after the look still wakes us
            while self.position() <= position:
                left = deadline - time.monotonic()
                if left <= 0 or not listener.wait(seen, left):
                    return self.position() > position
                seen = listener.count
            return True
        while True:
            if self.position() > position:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def listener(self) -> _postgres.InsertListener:
        """The store's LISTEN connection (PostgreSQL only), opened on first use."""
        if self._listener is None:
            self._listener = _postgres.InsertListener(self.path)  # type: ignore[arg-type]
        return self._listener  # type: ignore[no-any-return]

    def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one read-only query (``{t}``: the table, ``{id}``: the hex id, ``?``: a
        parameter) on either backend; rows as tuples."""
        sql = sql.format(t=self._table, id=self._id).replace("?", self._p)
        if self.is_database:
            with self.recorder.datastore.get_connection() as conn:
                from psycopg.rows import tuple_row

                with conn.cursor(row_factory=tuple_row) as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(sql, params)
            return [tuple(r) for r in c.fetchall()]

    def resolve(self, prefix: str) -> tuple[str, UUID]:
        """Find the campaign or trial whose id starts with ``prefix`` (dashes ignored)."""
        key = prefix.replace("-", "").lower()
        if not key or any(ch not in "0123456789abcdef" for ch in key):
            raise NotFoundError(f"{prefix!r} is not an id or id prefix (hex digits)")
        rows = self._rows("SELECT {id}, topic FROM {t} WHERE originator_version = 1 "
                          "AND topic IN (?, ?) AND {id} LIKE ? LIMIT 11",
                          (_TRIAL_STARTED, _CAMPAIGN_STARTED, key + "%"))
        if not rows:
            raise NotFoundError(f"no campaign or trial id starts with {prefix!r}: see `opeval list`")
        if len(rows) > 1:
            ids = ", ".join(r[0][:12] for r in rows[:10])
            raise NotFoundError(f"{prefix!r} matches {len(rows)} ids ({ids}): give more digits")
        oid, topic = rows[0]
        return ("trial" if topic == _TRIAL_STARTED else "campaign"), UUID(oid)

    def is_finished(self, trial_id: UUID) -> bool:
        """Has the trial recorded its TrialFinished (one indexed lookup, no replay)?"""
        oid = trial_id if self.is_database else trial_id.hex
        return bool(self._rows("SELECT 1 FROM {t} WHERE originator_id = ? AND topic = ? LIMIT 1",
                               (oid, _TRIAL_FINISHED)))

    def unfinished_trials(self) -> list[UUID]:
        """Trials with a TrialStarted but no TrialFinished."""
        rows = self._rows("SELECT {id} FROM {t} WHERE topic = ? EXCEPT SELECT {id} FROM {t} WHERE topic = ?",
                          (_TRIAL_STARTED, _TRIAL_FINISHED))
        return [UUID(r[0]) for r in rows]

    def close(self) -> None:
        """Release the file or the database connections."""
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
        self.app.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ENV_VAR", "EventStore", "log_origin", "log_rows", "PostgresURL", "StoreLocation", "default_store_path", "event_name",
           "read_model_path", "resolve_store_path", "store_exists"]
