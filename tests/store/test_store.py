"""Opening the store: bad files fail with one sentence and are never modified."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from pathlib import Path

import pytest

from opeval.errors import NotFoundError, StoreError
from opeval.store import EventStore, default_store_path, resolve_store_path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    path.write_bytes(b"this is not sqlite, it is somebody's notes\n" * 200)
    before = digest(path)
    with pytest.raises(StoreError, match="corrupt or not a SQLite file"):
        EventStore(path)
    assert digest(path) == before
    assert not Path(str(path) + "-wal").exists()


def test_a_sqlite_file_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE recipes (name TEXT)")
    with pytest.raises(StoreError, match="not an opeval store"):
        EventStore(path)


def test_a_locked_store_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    EventStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked by another process"):
            EventStore(path, lock_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    EventStore(path).close()  # usable again once released


def test_a_store_under_a_file_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        EventStore(blocker / "events.db")


def test_a_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a file"):
        EventStore(tmp_path)


def test_reading_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(StoreError, match="no store at"):
        EventStore(path, writable=False)
    assert not path.exists()


def test_ids_resolve_by_unique_prefix(store_path: Path) -> None:
    from tests.events.test_codec import make_event
    from opeval.events import Trial

    with EventStore(store_path) as store:
        events = []
        for _ in range(3):
            e = make_event(Trial.TrialStarted)
            object.__setattr__(e, "originator_version", 1)
            events.append(e)
        store.app.events.put(events)
        first = events[0].originator_id
        assert store.resolve(first.hex[:12]) == ("trial", first)
        assert store.resolve(str(first)[:13]) == ("trial", first)  # dashes are fine
        with pytest.raises(NotFoundError, match="no campaign or trial"):
            store.resolve("ffffffffffff0")
        with pytest.raises(NotFoundError, match="not an id"):
            store.resolve("xyz")
        with pytest.raises(NotFoundError):
            store.trial(uuid.uuid4())


def test_store_location_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPEVAL_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_store_path() == tmp_path / "xdg" / "opeval" / "events.db"
    monkeypatch.setenv("OPEVAL_STORE", str(tmp_path / "env.db"))
    assert resolve_store_path(None) == tmp_path / "env.db"
    assert resolve_store_path(tmp_path / "flag.db") == tmp_path / "flag.db"
