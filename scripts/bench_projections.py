"""Projection benchmarks, each beside its anchor in the same run.

1. full rebuild of >= 1M synthetic events shaped like real trials (events/s), beside the
   anchor: the same rows read from SQLite, turned into Arrow and loaded into a DuckDB
   table (no derivation), in the same process (on the largest store of --sizes).
2. incremental update after one more trial is appended (ms; median of --updates), on a
   store of each size in --sizes (trials; 850 ~ 100k events, 8500 ~ 1M), beside its
   anchor measured alternately in the same run: opening the read models and catching up
   when nothing is new. The update's cost should not grow with the store.
3. rescoring 10k trials under a changed rule set (s).

    .venv/bin/python scripts/bench_projections.py [--sizes 850,8500] [--updates 10] [--score-trials 10000]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa

from opeval.projections import ReadModels, RuleSet
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore


def anchor(store: Path, db: Path) -> tuple[int, float]:
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE events (position BIGINT, aggregate_id VARCHAR, version INTEGER, topic VARCHAR, "
                "state VARCHAR)")
    src = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    cur = src.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")
    n = 0
    con.execute("BEGIN")
    while rows := cur.fetchmany(200_000):
        pos, ids, versions, topics, states = (list(c) for c in zip(*rows, strict=True))
        batch = pa.table({"position": pa.array(pos, pa.int64()), "aggregate_id": pa.array(ids, pa.string()),
                          "version": pa.array(versions, pa.int32()), "topic": pa.array(topics, pa.string()),
                          "state": pa.array(states, pa.binary())})
        con.register("b", batch)
        con.execute("INSERT INTO events SELECT position, aggregate_id, version, topic, decode(state) FROM b")
        con.unregister("b")
        n += len(rows)
    con.execute("COMMIT")
    con.execute("CHECKPOINT")
    con.close()
    src.close()
    return n, time.perf_counter() - t0


def incremental(store_path: Path, rm: ReadModels, updates: int) -> tuple[list[float], list[float], int]:
    """One trial appended then one update, ``updates`` times: what `opeval run` pays per
    trial; each followed by the anchor, an update with nothing new (open, catch up, close)."""
    times, anchors, got = [], [], 0
    rm.update()  # the first open after a rebuild pays for reading the new file
    for k in range(updates):
        with EventStore(store_path) as store:
            campaign = new_campaign("one more", 1)
            store.save(campaign, make_trial(campaign, 0, random.Random(99 + k)))
        t0 = time.perf_counter()
        got = rm.update()
        times.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        assert rm.update() == 0
        anchors.append((time.perf_counter() - t0) * 1000)
    return times, anchors, got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="850,8500", help="trials in each store, comma-separated (default 850,8500)")
    ap.add_argument("--score-trials", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=10)
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        medians: dict[int, tuple[int, float]] = {}
        for trials in sizes:
            store_path = tmp / f"events-{trials}.db"
            t0 = time.perf_counter()
            with EventStore(store_path) as store:
                write_campaign(store, "bench", trials, rng=random.Random(7))
                total = store.recorder.max_notification_id()
            print(f"synthetic store: {total:,} events in {trials:,} trials "
                  f"(written in {time.perf_counter() - t0:.1f}s)")

            rm = ReadModels(store_path, tmp / f"rm-{trials}.duckdb")
            t0 = time.perf_counter()
            n = rm.rebuild()
            ours = time.perf_counter() - t0
            if trials == sizes[-1]:
                n_anchor, anchor_s = anchor(store_path, tmp / "anchor.duckdb")
                print(f"  full rebuild       : {n:,} events in {ours:.2f}s = {n / ours:,.0f} events/s")
                print(f"  anchor (load only) : {n_anchor:,} rows in {anchor_s:.2f}s = {n_anchor / anchor_s:,.0f} rows/s "
                      "(SQLite -> Arrow -> DuckDB, same rows)")
                print(f"  ratio rebuild/anchor: {(n / ours) / (n_anchor / anchor_s):.2f}")
            else:
                print(f"  full rebuild       : {n:,} events in {ours:.2f}s = {n / ours:,.0f} events/s")

            times, anchors, got = incremental(store_path, rm, args.updates)
            med, amed = statistics.median(times), statistics.median(anchors)
            medians[trials] = (total, med)
            print(f"  incremental update after one trial (~{got} new events), {args.updates} times: "
                  f"median {med:.0f} ms, min {min(times):.0f}, max {max(times):.0f}")
            print(f"  anchor, update with nothing new (open + catch up + close): median {amed:.0f} ms, "
                  f"min {min(anchors):.0f}, max {max(anchors):.0f}; update - anchor: {med - amed:.0f} ms")
        if len(sizes) > 1:
            (small_n, small), (big_n, big) = medians[sizes[0]], medians[sizes[-1]]
            print(f"incremental at {big_n:,} events / at {small_n:,} events: {big / small:.2f}")

        if args.score_trials:
            score_store = tmp / "score.db"
            with EventStore(score_store) as store:
                write_campaign(store, "score", args.score_trials, rng=random.Random(3), seconds=8)
            srm = ReadModels(score_store, tmp / "score.duckdb")
            srm.rebuild()
            text = RuleSet.default().source.replace("thrashing_threshold: 2", "thrashing_threshold: 3")
            rules = RuleSet.parse(text, "bench")
            t0 = time.perf_counter()
            srm.score(rules)
            print(f"rescoring {args.score_trials:,} trials under a changed rule set: {time.perf_counter() - t0:.2f}s")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
