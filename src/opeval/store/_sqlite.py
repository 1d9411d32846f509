"""SQLite recorder tuned for bulk appends.

eventsourcing's SQLite application recorder inserts row by row to learn each row's
notification id, which it only needs to notify subscribers and process applications.
opeval has neither (its projections pull by notification id), so this recorder inserts
a transaction's rows with one ``executemany`` and returns no ids.
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
