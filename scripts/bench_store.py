"""Event store benchmarks, each beside its anchor in the same run.

1. live append: one durable event per transaction (how a trial records), p50/p99 latency,
   beside raw sqlite3 inserting and committing the same payload row by row.
2. bulk append: many trial-shaped aggregates saved per transaction, in events/s, beside
   raw sqlite3 ``executemany`` of the very same encoded payloads into the same schema.

    .venv/bin/python scripts/bench_store.py [--events 200000] [--live 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from opeval.events import AgentSpec, ChaosSpec, HarnessInfo, TimeWindow, Trial, TrialConfig
from opeval.store import EventStore

HARNESS = HarnessInfo(host="bench", pid=1, start_ticks=1, version="bench")


def new_trial() -> Trial:
    return Trial._create(Trial.TrialStarted, id=uuid.uuid4(), campaign_id=uuid.uuid4(), index=0, subject="etcd",
                         runtime="local", chaos=ChaosSpec(kind="node_kill", target="leader"), agent=AgentSpec(),
                         seed=7, config=TrialConfig(), harness=HARNESS, offset_s=0.0)


def add_sample(trial: Trial, i: int) -> None:
    trial.record(Trial.WorkloadSampled, offset_s=i + 0.5, window=TimeWindow(float(i), i + 1.0), writes_ok=25,
                 writes_failed=i % 3, reads_ok=25, reads_failed=0, latency_p50_ms=3.1, latency_p99_ms=9.7)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_saves(store: EventStore, n: int) -> list[float]:
    """Milliseconds of each of ``n`` saves of one new event (one durable transaction each)."""
    trial = new_trial()
    store.save(trial)
    lat = []
    for i in range(n):
        add_sample(trial, i)
        t = time.perf_counter()
        store.save(trial)
        lat.append((time.perf_counter() - t) * 1e3)
    return lat


def bulk_trials(n: int, per_trial: int = 200) -> list[Trial]:
    """Trial-shaped aggregates holding about ``n`` pending events in all."""
    trials = []
    for _ in range(n // per_trial):
        trial = new_trial()
        for i in range(per_trial - 1):
            add_sample(trial, i)
        trials.append(trial)
    return trials


def live_append(tmp: Path, n: int) -> None:
    store = EventStore(tmp / "live.db")
    lat = timed_saves(store, n)
    row = store.recorder.select_notifications(2, 1)[0]
    store.close()

    raw = sqlite3.connect(tmp / "raw-live.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
                "state BLOB, PRIMARY KEY (originator_id, originator_version))")
    raw_lat = []
    oid = uuid.uuid4().hex
    for i in range(n):
        t = time.perf_counter()
        raw.execute("BEGIN")
        raw.execute("INSERT INTO stored_events VALUES (?,?,?,?)", (oid, i, row.topic, row.state))
        raw.execute("COMMIT")
        raw_lat.append((time.perf_counter() - t) * 1e3)
    raw.close()
    sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[sqlite3.connect(tmp / "live.db").execute("PRAGMA synchronous").fetchone()[0]]
    print(f"live append, {n} events, one durable transaction each (WAL, synchronous={sync})")
    print(f"  opeval store : p50 {statistics.median(lat):.3f} ms  p99 {pct(lat, 0.99):.3f} ms")
    print(f"  raw sqlite3  : p50 {statistics.median(raw_lat):.3f} ms  p99 {pct(raw_lat, 0.99):.3f} ms")
    print(f"  ratio (p50 raw/opeval): {statistics.median(raw_lat) / statistics.median(lat):.2f}")


def bulk_append(tmp: Path, n: int, per_trial: int = 200, trials_per_txn: int = 50) -> None:
    trials = bulk_trials(n, per_trial)
    total = sum(len(t.pending_events) for t in trials)
    store = EventStore(tmp / "bulk.db")
    # Encode the same payloads up front for the anchor (not timed).
    payloads = [store.app.mapper.to_stored_event(e) for t in trials for e in t.pending_events]
    t0 = time.perf_counter()
    for k in range(0, len(trials), trials_per_txn):
        store.save(*trials[k : k + trials_per_txn])
    opeval_s = time.perf_counter() - t0
    store.close()

    raw = sqlite3.connect(tmp / "raw-bulk.db", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE stored_events (originator_id TEXT, originator_version INTEGER, topic TEXT, "
                "state BLOB, PRIMARY KEY (originator_id, originator_version))")
    raw.execute("CREATE INDEX stored_events_topic ON stored_events (topic)")
    rows = [(p.originator_id.hex, p.originator_version, p.topic, p.state) for p in payloads]
    batch = per_trial * trials_per_txn
    t0 = time.perf_counter()
    for k in range(0, len(rows), batch):
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO stored_events VALUES (?,?,?,?)", rows[k : k + batch])
        raw.execute("COMMIT")
    raw_s = time.perf_counter() - t0
    raw.close()
    ours, anchor = total / opeval_s, total / raw_s
    print(f"bulk append, {total} events in {len(trials)} trials, {trials_per_txn} trials per transaction")
    print(f"  opeval store (encode + insert): {ours:,.0f} events/s")
    print(f"  raw sqlite3 executemany       : {anchor:,.0f} events/s (same payloads, same schema and index)")
    print(f"  ratio opeval/raw: {ours / anchor:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--live", type=int, default=2_000)
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {dt.datetime.now(dt.UTC):%Y-%m-%d}")
    with tempfile.TemporaryDirectory() as d:
        live_append(Path(d), args.live)
        bulk_append(Path(d), args.events)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
