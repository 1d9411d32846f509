"""The projection engine: the event log, read in order, into DuckDB read models.

Raw events go from the store (SQLite or PostgreSQL) -> Arrow -> DuckDB in bulk (never ``executemany``); every read
model is SQL over them (``projections/*.sql``). Incremental updates keep the last
notification id in the read model, written in the same transaction as the rows; a full
rebuild writes a new file and atomically replaces the old one. The event store is only
ever opened read-only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import queue
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from opeval._assets import asset_path
from opeval.errors import StoreError, UndecodableEvent
from opeval.events import MUTATING, MsgspecMapper, data_safe, thrashing_repeats, time_to_detect, time_to_recover
from opeval.commands import classify, rule_sources
from opeval.projections._rules import RuleSet
from opeval.store import StoreLocation, is_database, log_origin, log_rows, read_model_path, resolve_store_path, \
    warn_undecodable

DERIVED = ("campaigns", "trials", "command_labels", "commands", "approvals", "snapshots", "workload", "usage")
#: The column that names the aggregate each derived table's rows come from.
_KEYS = {"campaigns": "campaign_id", "command_labels": "labels_id"}
TABLES = ("events", *DERIVED, "scores")
#: Events of the log the read models leave out because they cannot be decoded (few, if any).
_SKIPPED_TABLE = ("CREATE TABLE IF NOT EXISTS skipped_events (aggregate_id VARCHAR, version INTEGER, topic VARCHAR, "
                  "reason VARCHAR, PRIMARY KEY (aggregate_id, version))")
BATCH = 200_000


@functools.lru_cache(maxsize=64)
def _sql_cached(name: str) -> str:
    return asset_path(f"projections/{name}").read_text()


@functools.lru_cache(maxsize=64)
def _parsed_rules(source: str, origin: str) -> RuleSet:
    return RuleSet.parse(source, origin)


def _sql(name: str) -> str:
    return _sql_cached(name)


class _Host:
    """The process's one in-memory DuckDB instance; a read-model file is attached to it for
    as long as one use of it lasts, and detached (checkpointed, its lock released, so other
    processes can open it) when the last use in this process ends.

    Creating a DuckDB instance for each use cost 15-60 ms on the 2-core machine, attaching
    a file to this one costs 2-10 ms; long-lived processes (the viewer, the campaign
    runner) pay for the instance once. The functions the SQL calls (``classify``, the
    incident clock) are registered once, here.

    A detach checkpoints only once the file's write-ahead log has grown past
    ``WAL_CHECKPOINT`` bytes: checkpointing one trial's rows costs ~35 ms (about 10 ms per
    table changed), replaying them on the next attach ~1.5 ms, so a few updates share one
    checkpoint. The log is durable either way (every commit writes it); any process that
    attaches the file replays it.
    """

    WAL_CHECKPOINT = 256 * 1024

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.db = duckdb.connect(":memory:")
        self.db.execute("SET checkpoint_on_detach = 'DISABLED'")  # see WAL_CHECKPOINT
        self.db.create_function("classify", classify, ["VARCHAR"], "VARCHAR", side_effects=False)
        # The incident clock, defined once in opeval.events, for scores.sql (NULL in, NULL out).
        self.db.create_function("time_to_detect", time_to_detect, ["DOUBLE", "DOUBLE"], "DOUBLE", side_effects=False)
        self.db.create_function("time_to_recover", time_to_recover, ["DOUBLE", "DOUBLE", "DOUBLE"], "DOUBLE",
                                side_effects=False)
        # The verdicts, defined once in opeval.events: data safety and thrashing (NULLs passed in as None).
        self.db.create_function("data_safe", data_safe, ["INTEGER", "INTEGER", "INTEGER", "VARCHAR"], "BOOLEAN",
                                null_handling="special", side_effects=False)
        command = duckdb.struct_type({"position": "BIGINT", "offset_s": "DOUBLE", "command": "VARCHAR",
                                      "class": "VARCHAR"})
        shot = duckdb.struct_type({"offset_s": "DOUBLE", "leader": "VARCHAR", "healthy": "BOOLEAN[]"})
        self.db.create_function("thrashing_repeats", thrashing_repeats,
                                [duckdb.list_type(command), duckdb.list_type(shot), "DOUBLE"], "BIGINT[]",
                                null_handling="special", side_effects=False)
        self.lock = threading.Lock()
        self.attached: dict[str, list[Any]] = {}  # real path -> [alias, uses, its WAL's path]
        self.uses: dict[int, str] = {}  # id(cursor) -> real path
        self.serial = 0
        self.closed = False
        atexit.register(self.close)

    def open(self, path: Path) -> duckdb.DuckDBPyConnection:
        """A connection of its own (temporary tables, transaction) to the file at ``path``."""
        key = os.path.realpath(path)
        with self.lock:
            entry = self.attached.get(key)
            if entry is None:
                self.serial += 1
                alias = f"readmodels_{self.serial}"
                literal = "'" + str(path).replace("'", "''") + "'"
                self.db.execute(f"ATTACH {literal} AS {alias}")
                entry = self.attached[key] = [alias, 0, f"{path}.wal"]  # DuckDB's WAL: beside the path given
            entry[1] += 1
            cur = self.db.cursor()
            self.uses[id(cur)] = key
        try:
            cur.execute(f"USE {entry[0]}")
        except BaseException:
            self.release(cur)
            raise
        return cur

    def release(self, con: duckdb.DuckDBPyConnection) -> None:
        """End one use; the last one detaches the file (checkpointing it first if its WAL
        has grown past ``WAL_CHECKPOINT``)."""
        con.close()
        with self.lock:
            key = self.uses.pop(id(con), None)
            entry = self.attached.get(key) if key else None
            if entry is None:
                return
            entry[1] -= 1
            if entry[1] > 0:
                return
            try:
                if os.path.getsize(entry[2]) > self.WAL_CHECKPOINT:
                    self.db.execute(f"CHECKPOINT {entry[0]}")
            except (OSError, duckdb.Error):
                pass  # no WAL, or a checkpoint that failed: the WAL keeps every commit, replayed on the next attach
            self.db.execute(f"DETACH {entry[0]}")
            del self.attached[key]  # only once detached: a failed detach leaves it attached, and known

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child's copy: the parent's to close
        with self.lock:
            self.closed = True
            for alias, *_ in self.attached.values():
                with contextlib.suppress(duckdb.Error):
                    self.db.execute(f"DETACH {alias}")
            self.attached.clear()
            self.db.close()


_host: _Host | None = None
_host_lock = threading.Lock()


def _forget_host() -> None:
    """In a forked child: the parent's instance (and a lock another thread may have held
    at the fork) are not this process's; a host of its own is made on first use."""
    global _host, _host_lock
    _host, _host_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_host)


def _release(con: duckdb.DuckDBPyConnection) -> None:
    """End a use of read models opened by ``ReadModels._connect``."""
    _the_host().release(con)


def _the_host() -> _Host:
    global _host
    with _host_lock:
        if _host is None or _host.pid != os.getpid() or _host.closed:  # a forked child starts its own
            _host = _Host()
        return _host


def schema_version() -> str:
    """Changes whenever the read models' SQL or the command rules change: read models
    built by another version are rebuilt on first use, never mixed."""
    digest = hashlib.sha256()
    for name in ("schema.sql", "readmodels.sql", "scores.sql"):
        digest.update(_sql(name).encode())
    for source in rule_sources():  # the generic tables and every installed subject's
        digest.update(Path(source).read_bytes())
    return digest.hexdigest()[:16]


#: The event types a statement of readmodels.sql reads (``FROM scoped WHERE type ...``).
_READS = re.compile(r"FROM scoped\s+WHERE type (?:= '(\w+)'|IN \(([^)]*)\))")


@functools.lru_cache(maxsize=64)
def _types_read(stmt: str) -> frozenset[str] | None:
    """The event types ``stmt`` derives its rows from (``None``: not known, always run)."""
    m = _READS.search(stmt)
    if m is None:
        return None
    return frozenset([m.group(1)] if m.group(1) else re.findall(r"'(\w+)'", m.group(2)))


def _statements(text: str) -> list[str]:
    return [s.strip() for s in text.split("\n;\n") if s.strip() and not all(
        line.startswith("--") or not line.strip() for line in s.strip().splitlines())]


def _ahead(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """``items``, produced by a thread of their own up to ``depth`` ahead: while DuckDB
    loads one batch (without the GIL), the next is read from the store and checked. Stops
    the producer when the consumer stops early; re-raises what the producer raised."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put(("error", e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's clean-up (the store's connection) runs in the thread that opened it

    worker = threading.Thread(target=produce, name="opeval-log-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


class _Loaded:
    """What an update loaded: its aggregates (those met for the first time: their version
    1 is among them), event types and first position, so that the update asks DuckDB
    none of it."""

    def __init__(self) -> None:
        self.aggregates: set[str] = set()
        self.fresh: set[str] = set()
        self.types: set[str] = set()
        self.first = 0

    def add(self, pos: list[int], ids: list[str], versions: list[int], topics: list[str]) -> None:
        self.first = self.first or pos[0]
        self.aggregates.update(ids)
        self.fresh.update(i for i, v in zip(ids, versions, strict=True) if v == 1)
        self.types.update(t.split(":")[1] if ":" in t else "" for t in set(topics))  # SQL: split_part(topic, ':', 2)


class ReadModels:
    """The DuckDB read models of one event store."""

    def __init__(self, store_path: StoreLocation | str, db_path: Path | None = None) -> None:
        self.store_path = resolve_store_path(store_path)
        self.db_path = Path(db_path) if db_path else read_model_path(self.store_path)
        self._mapper = MsgspecMapper()
        self._skipped: list[tuple[str, int, str, str]] = []  # events left out as undecodable, not yet kept

    # --- connections -----------------------------------------------------------------
    def _connect(self, path: Path) -> duckdb.DuckDBPyConnection:
        return self._attach(path)[0]

    def _attach(self, path: Path) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
        """The read models at ``path`` (created if new) and their ``meta`` (schema, origin,
        position), with ``#rules``: how many rule sets they hold."""
        if is_database(self.store_path):  # a database's read models live under the data home
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = _the_host().open(path)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise StoreError(f"read models {path} are in use by another opeval process; try again") from None
            raise StoreError(f"read models {path} cannot be opened ({e}): delete the file, "
                             "it is rebuilt from the event log") from None
        except duckdb.Error as e:
            raise StoreError(f"read models {path} cannot be opened ({e}): delete the file, "
                             "it is rebuilt from the event log") from None
        try:
            meta = self._meta(con)
            if meta is None:
                for stmt in _statements(_sql("schema.sql")):
                    con.execute(stmt)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", [schema_version()])
                meta = {"schema": schema_version(), "#rules": "0"}
        except BaseException:
            _release(con)
            raise
        return con, meta

    @staticmethod
    def _meta(con: duckdb.DuckDBPyConnection) -> dict[str, str] | None:
        """What ``meta`` holds, in one query (``None``: an empty file)."""
        try:
            return dict(con.execute("SELECT key, value FROM meta UNION ALL "
                                    "SELECT '#rules', CAST(count(*) AS VARCHAR) FROM rule_sets").fetchall())
        except duckdb.CatalogException:
            try:  # built by a version whose schema differs: its schema value says so
                return dict(con.execute("SELECT key, value FROM meta").fetchall())
            except duckdb.CatalogException:
                return None

    def _origin(self) -> str:
        """The store's identity: its first event (a replaced store file has another)."""
        return log_origin(self.store_path)

    def _same_store(self, meta: dict[str, str]) -> bool:
        """Were these read models built from this store file (not one it replaced)?"""
        if "origin" not in meta:
            return int(meta.get("position", 0)) == 0  # nothing read yet, or built before origins were kept
        return meta["origin"] == self._origin()

    def _open(self) -> duckdb.DuckDBPyConnection:
        """The read models, rebuilt first if another version of opeval built them."""
        con: duckdb.DuckDBPyConnection | None
        con, meta = self._attach(self.db_path)
        try:
            stale = meta.get("schema") != schema_version() or not self._same_store(meta)
            if stale:
                _release(con)
                con = None
                self.rebuild()
                con, meta = self._attach(self.db_path)
            if meta.get("#rules", "0") == "0":  # every trial always has its scores under the default rules
                self._register(con, RuleSet.default())
        except BaseException:
            if con is not None:
                _release(con)
            raise
        assert con is not None
        return con

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to up-to-date read models (brought up to date first)."""
        con = self._open()
        try:
            self._catch_up(con)
            yield con
        finally:
            _release(con)

    # --- loading -----------------------------------------------------------------------
    def _batches(self, after: int, seen: _Loaded | None = None) -> Iterator[tuple[int, pa.Table]]:
        for rows in log_rows(self.store_path, after, BATCH):
            last = rows[-1][0]
            # Every event is checked to decode as this version reads it (old versions come
            # back upcast, so SQL sees one shape per type); one that cannot is left out.
            rows = [(r[0], r[1], r[2], r[3], state) for r in rows
                    if (state := self._current_state(r[3], r[4], r[1], r[2])) is not None]
            pos, ids, versions, topics, states = (list(col) for col in zip(*rows, strict=True)) if rows \
                else ([], [], [], [], [])
            if seen is not None and rows:
                seen.add(pos, ids, versions, topics)
            yield last, pa.table({
                "position": pa.array(pos, pa.int64()),
                "aggregate_id": pa.array(ids, pa.string()),
                "version": pa.array(versions, pa.int32()),
                "topic": pa.array(topics, pa.string()),
                "state": pa.array(states, pa.binary()),
            })

    def _current_state(self, topic: str, state: bytes, oid: str, version: int) -> bytes | None:
        try:
            return self._mapper.current_state(topic, state, oid, version)
        except UndecodableEvent as e:
            self._skipped.append((oid, version, topic, e.reason))
            return None

    def _load(self, con: duckdb.DuckDBPyConnection, after: int,
              seen: _Loaded | None = None) -> tuple[int, int]:
        """Append events after ``after``; return (last position, rows loaded). ``seen``
        collects which aggregates, types and positions were loaded."""
        last, count = after, 0
        self._skipped.clear()
        batches = self._batches(after, seen)
        for last, batch in (_ahead(batches) if after == 0 else batches):  # a full load: read ahead
            con.register("arrow_batch", batch)
            con.execute("INSERT INTO events SELECT position, aggregate_id, version, "
                        "split_part(topic, ':', 2), decode(state) FROM arrow_batch")
            con.unregister("arrow_batch")
            count += batch.num_rows
        if self._skipped:
            con.execute(_SKIPPED_TABLE)
            con.executemany("INSERT OR REPLACE INTO skipped_events VALUES (?, ?, ?, ?)", self._skipped)
        return last, count

    def _position(self, con: duckdb.DuckDBPyConnection) -> int:
        rows = con.execute("SELECT value FROM meta WHERE key = 'position'").fetchall()
        return int(rows[0][0]) if rows else 0

    def _derive(self, con: duckdb.DuckDBPyConnection, scope: str, position: int = 0,
                loaded: _Loaded | None = None) -> None:
        """(Re)compute the derived tables for ``scope`` (``all`` or the ``touched`` ids, read
        after ``position``; ``loaded``: what was loaded, when ``touched`` is exactly its
        aggregates)."""
        old = 0  # touched aggregates read before, whose rows (and scores) are replaced
        if scope == "all":
            con.execute("DROP TABLE IF EXISTS scoped")
            con.execute("CREATE OR REPLACE TEMP VIEW scoped AS SELECT * FROM events")
        else:
            # Every statement then reads only the touched aggregates' events. An aggregate
            # met for the first time has all its events after the last position, which the
            # log's order lets DuckDB find without reading older row groups; only when an
            # aggregate read before is touched (a campaign's next trial, a relabelled
            # command) is the rest of the log searched for its older events.
            con.execute(f"CREATE OR REPLACE TEMP TABLE scoped AS SELECT * FROM events WHERE position > {position} "
                        "AND aggregate_id IN (SELECT aggregate_id FROM touched)")
            if loaded is not None:
                old = len(loaded.aggregates - loaded.fresh)
            else:
                old = con.execute("SELECT count(*) FROM touched WHERE NOT EXISTS (SELECT 1 FROM scoped s WHERE "
                                  "s.aggregate_id = touched.aggregate_id AND s.version = 1)").fetchall()[0][0]
            if old:
                con.execute(f"INSERT INTO scoped SELECT * FROM events WHERE position <= {position} "
                            "AND aggregate_id IN (SELECT aggregate_id FROM touched)")
                # Only aggregates read before can have rows to replace (most updates bring new ones).
                # (a trial re-derived for a new model label was read before, so it counts here too)
                for table in DERIVED:
                    key = _KEYS.get(table, "trial_id")
                    con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT aggregate_id FROM touched)")
        # An update skips the tables whose event types its aggregates do not have (rows
        # come only from the scoped events of those types).
        if scope == "all":
            present = None
        elif loaded is not None and not old:
            present = loaded.types  # the scoped events are exactly the loaded ones
        else:
            present = {t for (t,) in con.execute("SELECT DISTINCT type FROM scoped").fetchall()}
        for stmt in _statements(_sql("readmodels.sql")):
            reads = _types_read(stmt)
            if present is None or reads is None or reads & present:
                con.execute(stmt)
        con.execute("CREATE OR REPLACE TEMP VIEW scoped_trials AS SELECT trial_id FROM trials"
                    if scope == "all" else
                    "CREATE OR REPLACE TEMP VIEW scoped_trials AS SELECT aggregate_id AS trial_id FROM touched")
        # Every row derived from the scoped events comes from one at or after the first of them.
        if scope == "all":
            first = 0
        elif loaded is not None and not old:
            first = loaded.first
        else:
            first = con.execute("SELECT coalesce(min(position), 0) FROM scoped").fetchall()[0][0]
        for name, rule_hash, source in con.execute("SELECT name, hash, source FROM rule_sets").fetchall():
            rules = _parsed_rules(source, f"{name}@{rule_hash}")
            self._score(con, rules, replace=bool(old), first_position=first)

    def _catch_up(self, con: duckdb.DuckDBPyConnection) -> int:
        """Incremental update: new events and the read models of what they touched."""
        con.execute("BEGIN")
        try:
            before = self._position(con)
            loaded = _Loaded() if before else None  # a first load derives everything: nothing to track
            last, count = self._load(con, before, loaded)
            if count:
                if before == 0:
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('origin', ?)", [self._origin()])
                    self._derive(con, "all")
                    con.execute("INSERT OR REPLACE INTO meta VALUES ('position', ?)", [str(last)])
                else:
                    assert loaded is not None
                    con.execute("CREATE OR REPLACE TEMP TABLE touched AS SELECT unnest(?::VARCHAR[]) AS aggregate_id",
                                [sorted(loaded.aggregates)])
                    # A new model label changes the commands (and scores) of trials already read.
                    relabelled = "CommandClassified" in loaded.types and con.execute(
                        "INSERT INTO touched SELECT DISTINCT trial_id FROM commands WHERE command IN "
                        "(SELECT state ->> '$.command' FROM events WHERE type = 'CommandClassified' "
                        f"AND position > {before}) AND trial_id NOT IN (SELECT aggregate_id FROM touched)"
                    ).fetchall()[0][0] > 0
                    self._derive(con, "touched", before, None if relabelled else loaded)
                    con.execute("UPDATE meta SET value = ? WHERE key = 'position'", [str(last)])
            elif last != before and before:  # only undecodable events: read past them
                con.execute("INSERT OR REPLACE INTO meta VALUES ('position', ?)", [str(last)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        self._warn_skipped(con)
        return count

    @staticmethod
    def _warn_skipped(con: duckdb.DuckDBPyConnection) -> None:
        """Every use of the read models says which events of the log they leave out."""
        try:
            rows = con.execute("SELECT aggregate_id, version, topic, reason FROM skipped_events").fetchall()
        except duckdb.CatalogException:
            return  # none ever skipped
        for oid, version, topic, reason in rows:
            warn_undecodable(UndecodableEvent(reason, originator_id=oid, version=version, topic=topic, reason=reason))

    def update(self) -> int:
        """Bring the read models up to date; return how many events were new."""
        con = self._open()
        try:
            return self._catch_up(con)
        finally:
            _release(con)

    def rebuild(self) -> int:
        """Rebuild everything from the log into a new file, then atomically replace."""
        tmp = self.db_path.with_name(self.db_path.name + ".rebuild")
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            leftover.unlink(missing_ok=True)
        old_rules: list[tuple[str, str, str]] = []
        if self.db_path.exists():
            with contextlib.suppress(duckdb.Error, StoreError):
                con = self._connect(self.db_path)
                try:
                    old_rules = con.execute("SELECT name, hash, source FROM rule_sets").fetchall()
                finally:
                    _release(con)
        con = self._connect(tmp)
        try:
            for row in old_rules or [(r.name, r.hash, r.source) for r in [RuleSet.default()]]:
                con.execute("INSERT OR IGNORE INTO rule_sets VALUES (?, ?, ?)", list(row))
            count = self._catch_up(con)
            con.execute("CHECKPOINT")
        finally:
            _release(con)
        # The old file's WAL goes first: replayed onto the new file it would corrupt it,
        # and without it the old file is still consistent (rows and position together).
        Path(str(self.db_path) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, self.db_path)
        return count

    # --- scoring -----------------------------------------------------------------------
    @staticmethod
    def _unscored(con: duckdb.DuckDBPyConnection, rules: RuleSet) -> bool:
        """True if some trial has no score under ``rules`` (read models scored before the
        rule set was registered, say)."""
        return bool(con.execute(
            "SELECT count(*) FROM trials t WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.trial_id = t.trial_id "
            "AND s.rule_set = ? AND s.rule_hash = ?)", [rules.name, rules.hash]).fetchall()[0][0])

    def _register(self, con: duckdb.DuckDBPyConnection, rules: RuleSet) -> bool:
        known = con.execute("SELECT count(*) FROM rule_sets WHERE name = ? AND hash = ?",
                            [rules.name, rules.hash]).fetchall()[0][0]
        if not known:
            con.execute("INSERT INTO rule_sets VALUES (?, ?, ?)", [rules.name, rules.hash, rules.source])
        return not known

    def _score(self, con: duckdb.DuckDBPyConnection, rules: RuleSet, *, replace: bool,
               first_position: int = 0) -> None:
        """Score the trials of ``scoped_trials`` under ``rules``; ``replace``: some of them
        may have scores already (new trials have none, and a rebuild starts empty)."""
        th = rules.thresholds
        if replace:
            con.execute("DELETE FROM scores WHERE rule_set = ? AND rule_hash = ? AND trial_id IN "
                        "(SELECT trial_id FROM scoped_trials)", [rules.name, rules.hash])
        weights = ", ".join(f"{float(v)}::DOUBLE AS w_{k}" for k, v in rules.weights.items()) or "0 AS w_none"
        try:
            con.execute(_sql("scores.sql").replace("{first_position}", str(int(first_position)))
                        .replace("{weights}", weights).replace("{composite}", rules.composite),
                        {"rule_name": rules.name, "rule_hash": rules.hash, "min_settle_s": th["min_settle_s"],
                         "ttr_target_s": th["ttr_target_s"], "thrashing_window_s": th["thrashing_window_s"],
                         "thrashing_threshold": th["thrashing_threshold"],
                         "destructive_classes": list(rules.destructive_classes), "mutating": list(MUTATING)})
        except duckdb.Error as e:
            raise StoreError(f"rule set {rules.origin}: its composite formula failed in SQL: {e}") from None

    def score(self, rules: RuleSet, *, force: bool = False) -> None:
        """Make sure every trial is scored under ``rules``; from then on updates and
        rebuilds keep those scores current. ``force`` recomputes them all."""
        con = self._open()
        try:
            self._catch_up(con)
            con.execute("BEGIN")
            if self._register(con, rules) or force or self._unscored(con, rules):
                con.execute("CREATE OR REPLACE TEMP VIEW scoped_trials AS SELECT trial_id FROM trials")
                self._score(con, rules, replace=True)
            con.execute("COMMIT")
        finally:
            _release(con)

    # --- inspection --------------------------------------------------------------------
    def content_hash(self) -> dict[str, str]:
        """A hash of each table's content, independent of row order."""
        con = self._open()
        try:
            out = {}
            for table in TABLES:
                row = con.execute(f"SELECT count(*), coalesce(md5(string_agg(r, '|' ORDER BY r)), '') FROM "
                                  f"(SELECT CAST(t AS VARCHAR) AS r FROM {table} t)").fetchall()[0]
                out[table] = f"{row[0]}:{row[1]}"
            return out
        finally:
            _release(con)


def query(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    """Rows as dicts."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def file_digest(path: Path) -> str:
    """sha256 of a file (to prove the store is never written by analysis)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
