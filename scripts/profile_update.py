"""Where one incremental update's time goes: every statement of an update after one new
trial, timed, on a synthetic store (median of --rounds); with the update and its anchor
(an update with nothing new) timed the same way as scripts/bench_projections.py.

    .venv/bin/python scripts/profile_update.py [--trials 850] [--rounds 12] [--dir DIR]

--dir keeps the store and read models between runs (built on the first).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opeval.projections import ReadModels, _engine
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore


class Timed:
    """A connection whose every ``execute`` is timed into ``log``."""

    def __init__(self, con: Any, log: list[tuple[float, str]]) -> None:
        self._con, self._log = con, log

    def execute(self, sql: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        result = self._con.execute(sql, *args)
        self._log.append(((time.perf_counter() - t0) * 1000, " ".join(sql.split())[:90]))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def __hash__(self) -> int:
        return id(self)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=850)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    tmp = args.dir or Path(tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    store = tmp / f"events-{args.trials}.db"
    if not store.exists():
        with EventStore(store) as s:
            write_campaign(s, "bench", args.trials, rng=random.Random(7))
    rm = ReadModels(store, tmp / f"rm-{args.trials}.duckdb")
    rm.update()

    log: list[tuple[float, str]] = []
    attach, release = ReadModels._attach, _engine._Host.release

    def timed_attach(self: ReadModels, path: Path) -> tuple[Any, dict[str, str]]:
        t0 = time.perf_counter()
        con, meta = attach(self, path)
        log.append(((time.perf_counter() - t0) * 1000, "attach, with meta (and any WAL replayed)"))
        return Timed(con, log), meta

    def timed_release(self: Any, con: Any) -> None:
        t0 = time.perf_counter()
        release(self, con._con if isinstance(con, Timed) else con)
        log.append(((time.perf_counter() - t0) * 1000, "release: detach (checkpoint past the WAL threshold)"))

    ReadModels._attach = timed_attach  # type: ignore[method-assign]
    _engine._Host.release = timed_release  # type: ignore[method-assign]
    per: dict[str, list[float]] = {}
    order: list[str] = []
    updates, anchors = [], []
    for k in range(args.rounds):
        with EventStore(store) as s:
            campaign = new_campaign("one more", 1)
            s.save(campaign, make_trial(campaign, 0, random.Random(99 + k)))
        log.clear()
        t0 = time.perf_counter()
        rm.update()
        updates.append((time.perf_counter() - t0) * 1000)
        for ms, sql in log:
            key = "CREATE ... scoped (new events of the touched aggregates)" if "TABLE scoped" in sql else sql
            if key not in per:
                order.append(key)
            per.setdefault(key, []).append(ms)
        t0 = time.perf_counter()
        rm.update()
        anchors.append((time.perf_counter() - t0) * 1000)
    for key in order:
        print(f"{statistics.median(per[key]):7.2f} ms  {key}")
    print(f"update median {statistics.median(updates):.1f} ms (min {min(updates):.1f}, max {max(updates):.1f}); "
          f"anchor (nothing new) median {statistics.median(anchors):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
