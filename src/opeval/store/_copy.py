"""Moving a log between stores (SQLite <-> PostgreSQL), event for event.

The stored events are copied as they are (aggregate id, version, topic, state bytes: no
decoding, no re-encoding) and in log order, so the copy projects to the same read models
and replays to the same aggregates.
"""

from __future__ import annotations

from collections.abc import Callable

from eventsourcing.persistence import StoredEvent

from opeval.errors import StoreError
from opeval.store._store import EventStore


def copy_events(src: EventStore, dst: EventStore, *, batch: int = 5000,
                on_progress: Callable[[int], object] = lambda n: None) -> int:
    """Append every event of ``src`` to the empty store ``dst``, in order, ``batch`` per
    transaction; how many were copied. A non-empty ``dst`` is refused (a log is one
    history: merging two would interleave them)."""
    if dst.position():
        raise StoreError(f"store {dst.path} already holds events: copy into a new, empty store")
    copied, start = 0, 1
    while True:
        page = src.notifications(start, batch)
        if not page:
            break
        rows = [StoredEvent(originator_id=n.originator_id, originator_version=n.originator_version,
                            topic=n.topic, state=n.state) for n in page]
        try:
            dst.recorder.insert_events(rows)
        except Exception as e:  # sqlite3/psycopg errors, wrapped by eventsourcing
            raise StoreError(f"cannot write to store {dst.path}: {e}") from e
        copied += len(rows)
        on_progress(copied)
        start = page[-1].id + 1
    return copied
