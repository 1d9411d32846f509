"""Projection benchmarks, each beside its anchor in the same run.

1. full rebuild of >= 1M synthetic events shaped like real trials (events/s), beside the
   anchor: the same rows read from SQLite, turned into Arrow and loaded into a DuckDB
   table (no derivation), in the same process (on the largest store of --sizes).
2. incremental update after one more trial is appended (ms; median of --updates), on a
   store of each size in --sizes (trials; 850 ~ 100k events, 8500 ~ 1M), beside its
   anchor measured alternately in the same run: opening the read models and catching up
   when nothing is new. The update's cost should not grow with the store.
3. rescoring 10k trials under a changed rule set (s).

    .venv/bin/python scripts/bench_projections.py [--sizes 850,8500] [--updates 10] [--rebuilds 3] [--score-trials 10000]
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


def append_trial(store_path: Path, k: int) -> None:
    with EventStore(store_path) as store:
        campaign = new_campaign("one more", 1)
        store.save(campaign, make_trial(campaign, 0, random.Random(99 + k)))


def timed_update(rm: ReadModels) -> tuple[float, int]:
    t0 = time.perf_counter()
    got = rm.update()
    return (time.perf_counter() - t0) * 1000, got


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="850,8500", help="trials in each store, comma-separated (default 850,8500)")
    ap.add_argument("--score-trials", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=10)
    ap.add_argument("--rebuilds", type=int, default=3, help="rebuild/anchor rounds on the largest store")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        models: dict[int, tuple[Path, ReadModels, int]] = {}
        for trials in sizes:
            store_path = tmp / f"events-{trials}.db"
            t0 = time.perf_counter()
            with EventStore(store_path) as store:
                write_campaign(store, "bench", trials, rng=random.Random(7))
                total = store.recorder.max_notification_id()
            print(f"synthetic store: {total:,} events in {trials:,} trials "
                  f"(written in {time.perf_counter() - t0:.1f}s)")

            rm = ReadModels(store_path, tmp / f"rm-{trials}.duckdb")
            if trials == sizes[-1]:
                # Rebuild and anchor alternate, so that the machine's load hits both alike.
                ratios = []
                for _ in range(args.rebuilds):
                    t0 = time.perf_counter()
                    n = rm.rebuild()
                    ours = time.perf_counter() - t0
                    for leftover in tmp.glob("anchor.duckdb*"):
                        leftover.unlink()
                    n_anchor, anchor_s = anchor(store_path, tmp / "anchor.duckdb")
                    ratios.append((n / ours) / (n_anchor / anchor_s))
                    print(f"  full rebuild       : {n:,} events in {ours:.2f}s = {n / ours:,.0f} events/s")
                    print(f"  anchor (load only) : {n_anchor:,} rows in {anchor_s:.2f}s = "
                          f"{n_anchor / anchor_s:,.0f} rows/s (SQLite -> Arrow -> DuckDB, same rows)")
                    print(f"  ratio rebuild/anchor: {ratios[-1]:.2f}")
                if len(ratios) > 1:
                    print(f"  ratio rebuild/anchor, median of {len(ratios)}: {statistics.median(ratios):.2f}")
            else:
                t0 = time.perf_counter()
                n = rm.rebuild()
                ours = time.perf_counter() - t0
                print(f"  full rebuild       : {n:,} events in {ours:.2f}s = {n / ours:,.0f} events/s")

            models[trials] = (store_path, rm, total)
            rm.update()  # the first open after a rebuild pays for reading the new file

        # One trial appended then one update, --updates times per store: what `opeval run`
        # pays per trial; each followed by its anchor, an update with nothing new (open,
        # catch up, close). The stores take turns, so that the machine's load hits all alike.
        times: dict[int, list[float]] = {t: [] for t in sizes}
        anchors: dict[int, list[float]] = {t: [] for t in sizes}
        got = 0
        for k in range(args.updates):
            for trials in sizes:
                store_path, rm, _ = models[trials]
                append_trial(store_path, k)
                ms, got = timed_update(rm)
                times[trials].append(ms)
                ms, nothing = timed_update(rm)
                assert nothing == 0
                anchors[trials].append(ms)
        medians = {}
        for trials in sizes:
            ts, an, total = times[trials], anchors[trials], models[trials][2]
            med, amed = statistics.median(ts), statistics.median(an)
            medians[trials] = med
            print(f"{total:,} events: incremental update after one trial (~{got} new events), {args.updates} times: "
                  f"median {med:.0f} ms, min {min(ts):.0f}, max {max(ts):.0f}")
            print(f"{total:,} events: anchor, update with nothing new (open + catch up + close): "
                  f"median {amed:.0f} ms, min {min(an):.0f}, max {max(an):.0f}; update - anchor: {med - amed:.0f} ms")
        if len(sizes) > 1:
            big, small = models[sizes[-1]][2], models[sizes[0]][2]
            print(f"incremental at {big:,} events / at {small:,} events: "
                  f"{medians[sizes[-1]] / medians[sizes[0]]:.2f}")

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
