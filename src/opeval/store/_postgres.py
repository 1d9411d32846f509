"""The PostgreSQL side of the store: eventsourcing's PostgreSQL recorder (psycopg 3).

The recorder takes ``LOCK TABLE ... IN EXCLUSIVE MODE`` for every insert, so notification
ids are assigned in commit order and a reader tailing the log never skips one that
commits late; it also sends ``NOTIFY`` on the table's channel with every insert, which
is what followers (``LISTEN``) wait on instead of polling. Events, codec and topics are
those of the SQLite store: only the recorder differs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opeval.errors import StoreError
from opeval.store._location import PostgresURL
from opeval.store._location import psycopg as _psycopg

#: The events table: eventsourcing names it after the application (``opeval``).
TABLE = "opeval_events"
CHANNEL = TABLE
#: Aggregate ids as SQLite stores them (hex, no dashes), so both backends read alike.
HEX_ID = "replace(originator_id::text, '-', '')"


def recorder_env(location: PostgresURL, *, writable: bool, lock_timeout: float) -> dict[str, str]:
    """eventsourcing's settings for the database of ``location``."""
    info = location.conninfo()
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": info["dbname"],
        "POSTGRES_HOST": info.get("host", "localhost"),
        "POSTGRES_PORT": info.get("port", "5432"),
        "POSTGRES_USER": info.get("user", "postgres"),
        "POSTGRES_PASSWORD": info.get("password", ""),
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, int(lock_timeout))),
        # Seconds a writer waits for the table lock before it gives up (and retries).
        "POSTGRES_LOCK_TIMEOUT": str(max(1, int(lock_timeout))),
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y" if writable else "n",
        "AGGREGATE_CACHE_MAXSIZE": "",
    }


def connect(location: PostgresURL, *, autocommit: bool = True) -> Any:
    """A plain psycopg connection to the store's database (rows as tuples); a server
    that does not answer is a one-line StoreError."""
    psycopg = _psycopg()
    try:
        return psycopg.connect(location.url, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StoreError(f"cannot connect to store {location} ({first}): is the server up and the URL right?") from None


def _require_table(conn: Any, location: PostgresURL) -> None:
    if not table_exists(conn):
        raise StoreError(f"no store in {location} yet: run `opeval run` first or pass --store")


def table_exists(conn: Any) -> bool:
    """Has an opeval store been created in this database?"""
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,)).fetchone()[0]  # type: ignore[no-any-return]


#: The advisory lock that makes creating the events table one process's job.
_CREATE_LOCK = 0x6F70657661  # "opeva"


@contextlib.contextmanager
def creation_guard(location: PostgresURL, env: dict[str, str]) -> Iterator[None]:
    """Around opening a writable store: if the table exists, nothing is created (the
    recorder's ``IF NOT EXISTS`` statements, run by many processes at once, fail with
    "tuple concurrently updated"); if not, one process at a time creates it."""
    with connect(location) as conn:
        if table_exists(conn):
            env["CREATE_TABLE"] = "n"
            yield
            return
        conn.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK,))
        try:
            if table_exists(conn):  # another process made it while this one waited
                env["CREATE_TABLE"] = "n"
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))


def rows_after(location: PostgresURL, after: int, batch: int) -> Iterator[list[tuple[int, str, int, str, bytes]]]:
    """Every stored event after notification id ``after``, in order, ``batch`` at a time:
    ``(position, hex aggregate id, version, topic, state)`` (a server-side cursor)."""
    with connect(location, autocommit=False) as conn:
        _require_table(conn, location)
        with conn.cursor(name="opeval_rows") as cur:
            cur.execute(f"SELECT notification_id, {HEX_ID}, originator_version, topic, state FROM {TABLE} "
                        "WHERE notification_id > %s ORDER BY notification_id", (after,))
            while rows := cur.fetchmany(batch):
                yield [(r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows]


def first_event(location: PostgresURL) -> tuple[str, int] | None:
    """The first event's aggregate id (hex) and version: the log's identity."""
    with connect(location) as conn:
        _require_table(conn, location)
        row = conn.execute(f"SELECT {HEX_ID}, originator_version FROM {TABLE} "
                           "ORDER BY notification_id LIMIT 1").fetchone()
    return (row[0], row[1]) if row else None


def wait_for_insert(conn: Any, timeout: float) -> bool:
    """Block until the next insert's NOTIFY arrives on ``conn`` (which has run
    ``LISTEN``) or ``timeout`` passes; True if one arrived."""
    return any(True for _ in conn.notifies(timeout=timeout, stop_after=1))


class InsertListener:
    """One ``LISTEN`` connection shared by every waiter of a process: a background thread
    counts the inserts the server announces; :meth:`wait` blocks until the count passes
    what a waiter has seen. Nothing polls the table."""

    def __init__(self, location: PostgresURL) -> None:
        import threading

        self._conn = connect(location)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._count = 0
        self._changed = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="opeval-listen", daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        """Inserts announced since the listener started."""
        with self._changed:
            return self._count

    def _run(self) -> None:
        try:
            while not self._stopped:
                if wait_for_insert(self._conn, 0.5):
                    with self._changed:
                        self._count += 1
                        self._changed.notify_all()
        except Exception:  # the server went away: wake everyone, they will find out when they read
            with self._changed:
                self._stopped = True
                self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> bool:
        """Block until an insert after ``seen`` (a value of :attr:`count`) is announced,
        at most ``timeout`` seconds; True if one was."""
        with self._changed:
            return self._changed.wait_for(lambda: self._count > seen or self._stopped, timeout) and not (
                self._stopped and self._count <= seen)

    def close(self) -> None:
        """Stop listening."""
        self._stopped = True
        self._thread.join(timeout=2)
        with contextlib.suppress(Exception):
            self._conn.close()
