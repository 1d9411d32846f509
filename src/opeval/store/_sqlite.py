"""SQLite recorder tuned for bulk appends.

eventsourcing's SQLite application recorder inserts row by row to learn each row's
notification id. Inside one write transaction nobody else inserts, and SQLite gives a
new row the largest rowid plus one, so the ids are known up front and the rows can go
in with a single ``executemany``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        c.execute(self.select_max_notification_id_statement)
        last = c.fetchone()[0] or 0
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
        return list(range(last + 1, last + 1 + len(stored_events)))
