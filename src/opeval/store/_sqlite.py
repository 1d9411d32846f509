"""The SQLite side of the store: a recorder tuned for bulk appends, and raw reads of the
log for the projections.

eventsourcing's SQLite application recorder inserts row by row to learn each row's
notification id, which it only needs to notify subscribers and process applications.
opeval has neither (its projections pull by notification id), so this recorder inserts
a transaction's rows with one ``executemany`` and returns no ids.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor


class BulkSQLiteRecorder(SQLiteApplicationRecorder):
    """Application recorder that inserts a transaction's events in one statement."""

    def construct_create_table_statements(self) -> list[str]:
        statements = super().construct_create_table_statements()
        # Listing trials and finding unfinished ones filter by topic.
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {self.events_table_name}_topic "
            f"ON {self.events_table_name} (topic)"
        )
        return statements

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        c.executemany(
            self.insert_events_statement,
            [
                (
                    s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id,
                    s.originator_version,
                    s.topic,
                    s.state,
                )
                for s in stored_events
            ],
        )
        return None


def _open_readonly(path: Path) -> sqlite3.Connection:
    from opeval.errors import StoreError

    if not path.exists():
        raise StoreError(f"no store at {path} yet: run `opeval run` first or pass --store")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM stored_events LIMIT 1")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"cannot read store {path} ({e}): is it an opeval store?") from None
    return conn


def rows_after(path: Path, after: int, batch: int) -> Iterator[list[tuple[int, str, int, str, bytes]]]:
    """Every stored event after row ``after``, in order, ``batch`` at a time:
    ``(position, hex aggregate id, version, topic, state)``, on a read-only connection."""
    conn = _open_readonly(path)
    try:
        cur = conn.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                           "WHERE rowid > ? ORDER BY rowid", (after,))
        while rows := cur.fetchmany(batch):
            yield rows
    finally:
        conn.close()


def first_event(path: Path) -> tuple[str, int] | None:
    """The first event's aggregate id (hex) and version: the log's identity."""
    conn = _open_readonly(path)
    try:
        row = conn.execute("SELECT originator_id, originator_version FROM stored_events "
                           "ORDER BY rowid LIMIT 1").fetchone()
    finally:
        conn.close()
    return (row[0], row[1]) if row else None
