"""The PostgreSQL store against a real server: the same log as SQLite (events, codec,
topics), safe appends from many processes, followers woken by NOTIFY, and copies
between backends event for event."""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from opeval.cli import main
from opeval.errors import StoreError
from opeval.events import Campaign
from opeval.projections import ReadModels
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore, PostgresURL, copy_events, parse_store, read_model_path

pytestmark = pytest.mark.integration


def _sqlite_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT originator_id, originator_version, topic, state FROM stored_events "
                            "ORDER BY rowid").fetchall()


def test_a_url_names_a_database_and_prints_without_its_password() -> None:
    loc = parse_store("postgresql://me:s3cret@db.example:5433/opeval")
    assert isinstance(loc, PostgresURL)
    assert "s3cret" not in str(loc) and "db.example:5433/opeval" in str(loc)
    assert isinstance(parse_store("events.db"), Path)
    assert read_model_path(loc).suffix == ".duckdb" and "s3cret" not in str(read_model_path(loc))


def test_the_log_round_trips_and_projects_like_sqlite(postgres_url: str, tmp_path: Path) -> None:
    sqlite_path = tmp_path / "events.db"
    with EventStore(sqlite_path) as es:
        write_campaign(es, "a", 12, rng=random.Random(1), seconds=15)
        write_campaign(es, "none", 4, rng=random.Random(2), seconds=15, agent="none")
    with EventStore(sqlite_path, writable=False) as src, EventStore(postgres_url) as dst:
        assert copy_events(src, dst, batch=97) == src.position() == dst.position()
        first_campaign = next(e.originator_id for _, e in src.iter_events(topics=["opeval.campaign:CampaignStarted"]))
        tid = src.campaign(first_campaign).trial_ids[0]
        assert dst.trial(tid).outcome == src.trial(tid).outcome
        assert dst.resolve(tid.hex[:10]) == ("trial", tid)
        assert dst.is_finished(tid) == src.is_finished(tid)
        assert dst.unfinished_trials() == src.unfinished_trials()
    on_sqlite = ReadModels(sqlite_path, tmp_path / "s.duckdb")
    on_postgres = ReadModels(postgres_url, tmp_path / "p.duckdb")
    on_sqlite.rebuild()
    on_postgres.rebuild()
    assert on_postgres.content_hash() == on_sqlite.content_hash()
    # and back into a file: the same rows, in the same order
    back = tmp_path / "back.db"
    with EventStore(postgres_url, writable=False) as src, EventStore(back) as dst:
        copy_events(src, dst)
    assert _sqlite_rows(back) == _sqlite_rows(sqlite_path)


def test_copy_refuses_a_store_that_has_events(postgres_url: str, tmp_path: Path) -> None:
    with EventStore(postgres_url) as es:
        write_campaign(es, "a", 1, rng=random.Random(1), seconds=5)
    with EventStore(tmp_path / "x.db") as src:
        write_campaign(src, "b", 1, rng=random.Random(1), seconds=5)
        with EventStore(postgres_url) as dst, pytest.raises(StoreError, match="already holds events"):
            copy_events(src, dst)


def _append_trials(url: str, campaign_id: str, worker: int, count: int) -> None:
    rng = random.Random(worker)
    with EventStore(url) as es:
        campaign = new_campaign(f"w{worker}", count)
        es.save(campaign)
        for i in range(count):
            es.save(make_trial(campaign, i, rng, seconds=5))


def test_many_processes_append_and_a_follower_misses_nothing(postgres_url: str) -> None:
    with EventStore(postgres_url) as es:
        es.save(new_campaign("first", 0))  # creates the table before the writers race
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        with EventStore(postgres_url, writable=False) as reader:
            last = 0
            while not done.is_set() or reader.position() > last:
                if reader.wait_for_new(last, 0.5):
                    for n in reader.notifications(last + 1, 1000):
                        seen.append(n.id)
                        last = n.id

    follower = threading.Thread(target=follow)
    follower.start()
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_trials, args=(postgres_url, "", w, 6)) for w in range(4)]
    try:
        for p in writers:
            p.start()
        for p in writers:
            p.join(120)
            assert p.exitcode == 0
    finally:
        done.set()
        follower.join(60)
        for p in writers:
            if p.is_alive():
                p.kill()
    with EventStore(postgres_url, writable=False) as es:
        total = es.position()
        ids = [n.id for n in es.notifications(1, 100_000)]
        campaigns = [e for _, e in es.iter_events(topics=["opeval.campaign:CampaignStarted"])]
    assert len(campaigns) == 5
    assert seen == ids == list(range(1, total + 1))  # in order, no gap, nothing missed


def test_many_processes_opening_a_new_database_at_once_all_start(postgres_url: str) -> None:
    # No table yet: each process would create it; one does, the others wait and use it.
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=_append_trials, args=(postgres_url, "", w, 1)) for w in range(6)]
    try:
        for p in writers:
            p.start()
        for p in writers:
            p.join(120)
        assert [p.exitcode for p in writers] == [0] * len(writers)
    finally:
        for p in writers:
            if p.is_alive():
                p.kill()
    with EventStore(postgres_url, writable=False) as es:
        campaigns = [e for _, e in es.iter_events(topics=["opeval.campaign:CampaignStarted"])]
    assert len(campaigns) == len(writers)


def test_a_second_writer_of_the_same_aggregate_loses_the_race(postgres_url: str) -> None:
    with EventStore(postgres_url) as a, EventStore(postgres_url) as b:
        campaign = new_campaign("race", 1)
        a.save(campaign)
        mine, theirs = a.campaign(campaign.id), b.campaign(campaign.id)
        mine.trigger_event(Campaign.TrialScheduled, trial_id=uuid.uuid4(), index=0)
        theirs.trigger_event(Campaign.TrialScheduled, trial_id=uuid.uuid4(), index=0)
        a.save(mine)
        with pytest.raises(IntegrityError):
            b.save(theirs)
        assert len(b.campaign(campaign.id).trial_ids) == 1


def test_cli_commands_take_a_url(postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    sqlite_path = tmp_path / "events.db"
    with EventStore(sqlite_path) as es:
        campaign = write_campaign(es, "cli", 3, rng=random.Random(4), seconds=5)
    with pytest.raises(SystemExit) as exited:
        main(["store", "copy", str(sqlite_path), postgres_url])
    assert exited.value.code == 0
    assert "copied" in capsys.readouterr().out
    monkeypatch.setenv("OPEVAL_STORE", postgres_url)
    with pytest.raises(SystemExit) as exited:
        main(["list", "--json"])
    assert exited.value.code == 0
    assert str(campaign.id) in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["store", "copy", str(sqlite_path), postgres_url])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "already holds events" in err and "Traceback" not in err and "opeval:opeval@" not in err


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SystemExit) as exited:
        main(["list", "--store", f"postgresql://u:pw@127.0.0.1:{port}/opeval"])
    assert exited.value.code == 3
    err = capsys.readouterr().err.strip()
    assert "cannot connect to store" in err and len(err.splitlines()) == 1 and ":pw@" not in err
