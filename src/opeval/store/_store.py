"""The event store: eventsourcing on a SQLite file, with opeval's codec.

Opening checks the file first (is it SQLite? an opeval store? can we take the write
lock?) so that a bad store fails with one clear sentence, before a cluster starts and
without writing a byte to the file.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper, Notification

from opeval.errors import NotFoundError, StoreError, UndecodableEvent
from opeval.events import Campaign, CommandLabels, MsgspecMapper, Trial, event_name

ENV_VAR = "OPEVAL_STORE"
_TABLE = "stored_events"
_TRIAL_STARTED = "opeval.trial:TrialStarted"
_TRIAL_FINISHED = "opeval.trial:TrialFinished"
_CAMPAIGN_STARTED = "opeval.campaign:CampaignStarted"


def read_model_path(store_path: Path) -> Path:
    """Where the read models of a store live: beside it, ``<store>.duckdb``."""
    return Path(store_path).with_suffix(".duckdb")


def default_store_path() -> Path:
    """``$OPEVAL_STORE``, else ``$XDG_DATA_HOME/opeval/events.db`` (``~/.local/share``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "opeval" / "events.db"


def resolve_store_path(store: Path | str | None) -> Path:
    """The store a command uses: ``--store`` if given, else :func:`default_store_path`."""
    return Path(store).expanduser() if store else default_store_path()


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


class EventStore:
    """The append-only log of campaigns and trials.

    ``writable=False`` opens an existing store without creating or changing anything.
    """

    def __init__(self, path: Path | str, *, writable: bool = True, lock_timeout: float = 10.0):
        self.path = Path(path)
        self.writable = writable
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
        try:
            self.app = _StoreApplication(env=env)
        except Exception as e:  # eventsourcing wraps sqlite errors in its own types
            raise StoreError(f"cannot open store {self.path}: {e}") from None
        self.recorder: Any = self.app.recorder
        #: Called with each event that cannot be decoded, which readers then skip.
        self.on_undecodable: Callable[[UndecodableEvent], None] = warn_undecodable

    # --- writing ---------------------------------------------------------------
    def save(self, *aggregates: Trial | Campaign | CommandLabels) -> None:
        """Append the pending events of ``aggregates`` in one durable transaction."""
        if not self.writable:
            raise StoreError(f"store {self.path} was opened read-only")
        try:
            self.app.save(*aggregates)
        except StoreError:
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

    def resolve(self, prefix: str) -> tuple[str, UUID]:
        """Find the campaign or trial whose id starts with ``prefix`` (dashes ignored)."""
        key = prefix.replace("-", "").lower()
        if not key or any(ch not in "0123456789abcdef" for ch in key):
            raise NotFoundError(f"{prefix!r} is not an id or id prefix (hex digits)")
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id, topic FROM {_TABLE} WHERE originator_version = 1 "
                "AND topic IN (?, ?) AND originator_id LIKE ? LIMIT 11",
                (_TRIAL_STARTED, _CAMPAIGN_STARTED, key + "%"),
            )
            rows = [(r[0], r[1]) for r in c.fetchall()]
        if not rows:
            raise NotFoundError(f"no campaign or trial id starts with {prefix!r}: see `opeval list`")
        if len(rows) > 1:
            ids = ", ".join(r[0][:12] for r in rows[:10])
            raise NotFoundError(f"{prefix!r} matches {len(rows)} ids ({ids}): give more digits")
        oid, topic = rows[0]
        return ("trial" if topic == _TRIAL_STARTED else "campaign"), UUID(oid)

    def is_finished(self, trial_id: UUID) -> bool:
        """Has the trial recorded its TrialFinished (one indexed lookup, no replay)?"""
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT 1 FROM {_TABLE} WHERE originator_id = ? AND topic = ? LIMIT 1",
                      (trial_id.hex, _TRIAL_FINISHED))
            return c.fetchone() is not None

    def unfinished_trials(self) -> list[UUID]:
        """Trials with a TrialStarted but no TrialFinished."""
        with self.recorder.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT originator_id FROM {_TABLE} WHERE topic = ? "
                f"EXCEPT SELECT originator_id FROM {_TABLE} WHERE topic = ?",
                (_TRIAL_STARTED, _TRIAL_FINISHED),
            )
            return [UUID(r[0]) for r in c.fetchall()]

    def close(self) -> None:
        """Release the file."""
        self.app.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["ENV_VAR", "EventStore", "default_store_path", "event_name", "resolve_store_path"]
