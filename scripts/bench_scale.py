"""Scale-out benchmarks: the PostgreSQL store beside SQLite, and the Ray executor beside
the local one, each pair in the same run.

1. live append (one durable event per transaction, as a trial records): p50/p99, SQLite
   file vs PostgreSQL (a throwaway local server: loopback TCP, fsync off, as the doc's figures say).
2. bulk append: trial-shaped aggregates, 50 per transaction, events/s, both backends.
3. projection rebuild: the same synthetic log read into DuckDB from each backend.
4. scheduling overhead per trial: the same small etcd campaign run by the local executor
   and by Ray (a local instance with 2 CPUs); overhead = from the coordinator starting a
   trial to its TrialStarted, plus from its TrialFinished to the coordinator hearing of it.

    .venv/bin/python scripts/bench_scale.py [--live 1000] [--events 100000] [--trials 400] [--campaign 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_store import bulk_trials, pct, timed_saves  # noqa: E402 - the same trial shapes as bench_store

from opeval.projections import ReadModels  # noqa: E402
from opeval.projections.synthetic import write_campaign  # noqa: E402
from opeval.store import EventStore, StoreLocation, copy_events  # noqa: E402
from opeval.testing import fresh_database, postgres_server  # noqa: E402

CAMPAIGN = """\
name: bench-scale
subject: etcd
repetitions: {n}
seed: 3
parallel: 2
trial:
  restart_policy: on-failure
  timeout_s: 15
chaos:
  - kind: node_kill
    target: follower
variants:
  - name: baseline
    agent: none
"""


def live(location: StoreLocation, n: int) -> list[float]:
    with EventStore(location) as store:
        return timed_saves(store, n)


def bulk(location: StoreLocation, n: int, per_txn: int = 50) -> float:
    trials = bulk_trials(n)
    total = sum(len(t.pending_events) for t in trials)
    with EventStore(location) as store:
        t0 = time.perf_counter()
        for k in range(0, len(trials), per_txn):
            store.save(*trials[k : k + per_txn])
        return total / (time.perf_counter() - t0)


def rebuild(location: StoreLocation, db: Path) -> tuple[int, float]:
    models = ReadModels(location, db)
    t0 = time.perf_counter()
    count = models.rebuild()
    return count, time.perf_counter() - t0


def campaign_overhead(file: Path, location: StoreLocation, ray: Any) -> dict[str, float]:
    import anyio

    from opeval.runner import cleanup, load_campaign, run_campaign

    plan = load_campaign(file)
    began: dict[int, float] = {}
    heard: dict[int, tuple[Any, float]] = {}
    t0 = time.time()
    with EventStore(location) as store:
        cleanup(store)
        run = anyio.run(lambda: run_campaign(
            store, plan, handle_signals=False, ray=ray,
            on_trial_start=lambda t: began.__setitem__(t.index, time.time()),
            on_trial_done=lambda t, r: heard.__setitem__(t.index, (r.trial_id, time.time()))))
        wall = time.time() - t0
        overheads, durations, parts = [], [], []
        for index, (tid, done_at) in sorted(heard.items(), key=lambda kv: began[kv[0]]):
            events = store.events(tid)
            started, finished = events[0].timestamp.timestamp(), events[-1].timestamp.timestamp()
            overheads.append((started - began[index]) + (done_at - finished))
            parts.append(f"{started - began[index]:.2f}+{done_at - finished:.2f}")
            durations.append(finished - started)
    assert run.finished and len(heard) == len(plan.trials), (run, heard)
    return {"wall": wall, "overhead_median": statistics.median(overheads), "overhead_max": max(overheads),
            "trial_median": statistics.median(durations), "parts": " ".join(parts)}


def store_benchmarks(tmp: Path, pg: dict[str, str], args: argparse.Namespace) -> None:
    """Sections 1-3: append latency, bulk append, projection rebuild, on both backends."""
    lat_s, lat_p = live(tmp / "live.db", args.live), live(pg["live"], args.live)
    print(f"live append, {args.live} events, one durable transaction each")
    print(f"  SQLite     : p50 {statistics.median(lat_s):.3f} ms  p99 {pct(lat_s, 0.99):.3f} ms")
    print(f"  PostgreSQL : p50 {statistics.median(lat_p):.3f} ms  p99 {pct(lat_p, 0.99):.3f} ms")
    print(f"  ratio p50 PostgreSQL/SQLite: {statistics.median(lat_p) / statistics.median(lat_s):.2f}")

    bs, bp = bulk(tmp / "bulk.db", args.events), bulk(pg["bulk"], args.events)
    print(f"bulk append, {args.events} events, 50 trial-shaped aggregates per transaction")
    print(f"  SQLite     : {bs:,.0f} events/s")
    print(f"  PostgreSQL : {bp:,.0f} events/s  ({bp / bs:.2f} of SQLite)")

    log = tmp / "log.db"
    with EventStore(log) as es:
        write_campaign(es, "bench", args.trials, rng=random.Random(1), seconds=60)
    with EventStore(log, writable=False) as src, EventStore(pg["log"]) as dst:
        copy_events(src, dst)
    n, ts = rebuild(log, tmp / "s.duckdb")
    _, tp = rebuild(pg["log"], tmp / "p.duckdb")
    print(f"projection rebuild, {n} events in {args.trials} trials")
    print(f"  from SQLite     : {n / ts:,.0f} events/s ({ts:.2f} s)")
    print(f"  from PostgreSQL : {n / tp:,.0f} events/s ({tp:.2f} s)  ({ts / tp:.2f} of SQLite's rate)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live", type=int, default=1_000, help="events timed one by one (0: skip sections 1-3)")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--trials", type=int, default=400, help="synthetic trials in the rebuilt log")
    ap.add_argument("--campaign", type=int, default=4, help="etcd trials per executor (0: skip)")
    args = ap.parse_args()
    from importlib.metadata import version

    print(f"python {sys.version.split()[0]}, eventsourcing {version('eventsourcing')}, psycopg {version('psycopg')}, "
          f"ray {version('ray')}, "
          f"{dt.datetime.now(dt.UTC):%Y-%m-%d}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as d, postgres_server() as server:
        tmp = Path(d)
        os.environ["XDG_DATA_HOME"] = str(tmp / "data")
        pg = {name: fresh_database(server, name) for name in ("live", "bulk", "log", "runs")}

        if args.live:
            store_benchmarks(tmp, pg, args)
        if args.campaign:
            from opeval.runner import RayOptions

            file = tmp / "campaign.yaml"
            file.write_text(CAMPAIGN.format(n=args.campaign))
            local = campaign_overhead(file, tmp / "runs.db", None)
            t0 = time.time()
            import ray as ray_module

            ray_module.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="warning")
            start_s = time.time() - t0
            try:
                on_ray = campaign_overhead(file, pg["runs"], RayOptions(cpus_per_trial=1))
            finally:
                ray_module.shutdown()
            print(f"scheduling overhead per trial, {args.campaign} etcd node_kill trials, 2 at a time")
            for name, r in (("local executor, SQLite", local), ("Ray (local, 2 CPUs), PostgreSQL", on_ray)):
                print(f"  {name:32}: median {r['overhead_median']:.3f} s, max {r['overhead_max']:.3f} s; "
                      f"trial median {r['trial_median']:.1f} s; campaign wall {r['wall']:.1f} s")
                print(f"    each trial in start order, to its TrialStarted + from its TrialFinished (s): {r['parts']}")
            print(f"  Ray instance start (once per campaign): {start_s:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
