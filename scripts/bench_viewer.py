"""Viewer benchmarks: page render times over a campaign of 1,000 trials, each beside its
anchor measured in the same run.

1. campaign page (1,000-row score table, aggregates, three charts, baseline comparison)
   through the real ASGI app (Litestar's test client, in process): p50/p95 of --requests
   renders, each opening the read models (as while the store changes), and reloads over
   an unchanged store (answered from memory); and over HTTP from a running
   ``opeval view``. The first render is reported apart: it bootstraps the baseline
   comparison, which is then kept until the log moves.
2. anchor: the same trials fetched with the same SQL and no rendering, from read models
   opened the way every request opens them (``ReadModels.connect``: open, catch up,
   close); and bare (``duckdb.connect(read_only=True)``, no catch-up).
3. trial page (timeline, members, workload, every command) beside its anchor: reading the
   trial's events from the event store.

    .venv/bin/python scripts/bench_viewer.py [--trials 1000] [--baseline 100] [--requests 50]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import duckdb
import httpx
from litestar.testing import TestClient

from opeval.projections import ReadModels, RuleSet, campaign_rows, read_model_path, trial_scores
from opeval.projections.synthetic import write_campaign
from opeval.store import EventStore
from opeval.viewer import create_app


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Milliseconds of ``n`` calls."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def interleaved(fns: list[Callable[[], object]], n: int) -> list[list[float]]:
    """Milliseconds of ``n`` rounds of every function in turn, one list per function."""
    out: list[list[float]] = [[] for _ in fns]
    for _ in range(n):
        for fn, ms in zip(fns, out, strict=True):
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1000)
    return out


def pct(ms: list[float], q: float) -> float:
    return statistics.quantiles(ms, n=100, method="inclusive")[int(q) - 1] if len(ms) > 1 else ms[0]


def line(what: str, ms: list[float]) -> str:
    return f"{what:<58} p50 {pct(ms, 50):7.1f} ms   p95 {pct(ms, 95):7.1f} ms   (n={len(ms)})"


def serve(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``opeval view`` on a free port; its URL once it says it is ready."""
    proc = subprocess.Popen([sys.executable, "-m", "opeval", "view", "--store", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ,
                                                                                     "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    seen, deadline = b"", time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.1)[0]:
            seen += os.read(proc.stdout.fileno(), 4096)
            if m := re.search(rb"http://[\d.]+:\d+/", seen):
                return proc, m.group(0).decode()
    proc.kill()
    raise SystemExit(f"opeval view did not start: {seen!r}")


def main() -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the figures
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=100, help="baseline (no agent) trials on the same chaos")
    ap.add_argument("--requests", type=int, default=50)
    args = ap.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "events.db"
        t0 = time.perf_counter()
        with EventStore(store) as es:
            campaign = write_campaign(es, "bench", args.trials, rng=random.Random(7))
            if args.baseline:
                write_campaign(es, "self-healing", args.baseline, rng=random.Random(8), agent="none")
            events = es.recorder.max_notification_id()
        ReadModels(store).update()
        cid = campaign.id.hex
        print(f"store: {events:,} events; campaign of {args.trials:,} trials + {args.baseline} baseline trials "
              f"(written and projected in {time.perf_counter() - t0:.1f} s)")
        rules = RuleSet.default()

        models = ReadModels(store)

        def anchor_connect() -> None:
            with models.connect() as con:
                assert len(campaign_rows(con, rules, cid)) == args.trials

        def anchor_bare() -> None:
            con = duckdb.connect(str(read_model_path(store)), read_only=True)
            try:
                assert len(trial_scores(con, rules, campaign_id=cid)) == args.trials
            finally:
                con.close()

        # Every request opens the read models (cache_size=0), as when the store is changing;
        # and the default, which answers a reload over an unchanged store from memory.
        with TestClient(create_app(store, cache_size=0)) as client, TestClient(create_app(store)) as cached:
            def campaign_page(c: TestClient[Any] = client) -> None:
                r = c.get(f"/campaigns/{cid}")
                assert r.status_code == 200 and r.text.count('href="/trials/') == args.trials

            t0 = time.perf_counter()
            campaign_page()
            first = (time.perf_counter() - t0) * 1000
            campaign_page(cached)
            tid = client.get(f"/api/campaigns/{cid}").json()["trials"][args.trials // 2]["trial_id"]

            def anchor_trial() -> None:
                with EventStore(store, writable=False) as es:
                    es.events(UUID(tid))

            # Interleaved, so that whatever else the machine does weighs on each alike.
            page, page_cached, a_connect, a_bare, api, trial, a_trial = interleaved(
                [campaign_page, lambda: campaign_page(cached), anchor_connect, anchor_bare,
                 lambda: client.get(f"/api/campaigns/{cid}").raise_for_status(),
                 lambda: client.get(f"/trials/{tid}").raise_for_status(), anchor_trial], n)

        proc, url = serve(store)
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                http.get(f"/campaigns/{cid}").raise_for_status()  # its own first render
                over_http = timed(lambda: http.get(f"/campaigns/{cid}").raise_for_status(), n)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()

    print(f"first campaign render (bootstraps the baseline comparison): {first:.0f} ms")
    print(line("campaign page, in process, read models opened per request", page))
    print(line("campaign page, in process, reload over an unchanged store", page_cached))
    print(line("campaign page, over HTTP (opeval view + httpx), reload", over_http))
    print(line("campaign JSON (/api/campaigns/ID), opened per request", api))
    print(line("anchor: ReadModels.connect + the same SQL, no rendering", a_connect))
    print(line("anchor: bare read-only DuckDB + the same SQL", a_bare))
    print(line("trial page, in process, opened per request", trial))
    print(line("anchor: the trial's events from the event store", a_trial))
    print(f"ratio campaign page p95 / anchor (connect) p95: {pct(page, 95) / pct(a_connect, 95):.2f}")
    print(f"ratio campaign page p95 / anchor (bare) p95:    {pct(page, 95) / pct(a_bare, 95):.2f}")
    print(f"ratio trial page p95 / anchor p95:              {pct(trial, 95) / pct(a_trial, 95):.2f}")
    print(f"target: campaign page p95 < 100 ms: {'met' if pct(page, 95) < 100 else 'NOT met'} (opened per request), "
          f"{'met' if pct(page_cached, 95) < 100 else 'NOT met'} (reload), "
          f"{'met' if pct(over_http, 95) < 100 else 'NOT met'} (over HTTP)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
