"""Cluster benchmarks on real etcd, each beside its anchor in the same run.

1. start-to-healthy: opeval's runtime + subject (spawn, supervise, probe) from the first
   spawn to every member healthy with a leader, beside the same etcd command lines started
   with bare ``subprocess.Popen`` and polled on ``/health`` every 5 ms.
2. recovery detection lag: node_kill trials (follower, restart on-failure); an independent
   probe polls the same recovery criteria every ~10 ms. Lag = the moment the monitor says
   the criteria first held (RecoveryDetected.criteria_met_offset_s) minus the moment the
   independent probe first saw them hold for good.
3. with ``--runtimes local,docker``: both figures for each runtime, interleaved in the same
   run, and the ratio of each runtime's to the local runtime's (the anchor).
4. with ``--subjects etcd,ratelimiter``: both figures for each subject, interleaved in the
   same run, and the ratio of each subject's to etcd's (the anchor). The rate limiter's lag
   trials kill a limiter node (``limiter-2``); etcd's a follower.

    .venv/bin/python scripts/bench_cluster.py [--starts 10] [--trials 10] [--runtimes local,docker]
                                              [--subjects etcd,ratelimiter]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import anyio
import httpx

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, TrialStatus, run_single
from opeval.runtimes import RUNTIMES, Journal, RestartPolicy, runtime_dir
from opeval.store import EventStore
from opeval.subjects import SUBJECTS


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.2) as r:  # noqa: S310 - loopback
            return b'"health":"true"' in r.read()
    except OSError:
        return False


#: What each subject's lag trials kill: a member the cluster can lose without a failover.
LAG_TARGET = {"etcd": "follower", "ratelimiter": "limiter-2"}


async def harness_start(tmp: Path, runtime: str = "local", subject_name: str = "etcd") -> tuple[float, list[list[str]]]:
    tid = uuid.uuid4().hex
    subject = SUBJECTS.get(subject_name)()
    rt = RUNTIMES.get(runtime)(trial_id=tid, workspace=runtime_dir() / "trials" / tid,
                               journal=Journal(tid, tmp / "x.db"), restart_policy=RestartPolicy.parse("never"),
                               on_event=lambda e: None)
    async with rt.session(), httpx.AsyncClient(trust_env=False) as http:
        await anyio.to_thread.run_sync(rt.prepare, subject.name, subject.container_definition())  # built once, cached
        specs = subject.plan(rt, 3, tid)
        t0 = time.perf_counter()
        for spec in specs:
            await rt.start_member(spec)
        await subject.wait_healthy(http, {s.name: True for s in specs})
        took = time.perf_counter() - t0
        argvs = [s.argv for s in specs]
    return took, argvs


def raw_start(argvs: list[list[str]], tmp: Path) -> float:
    # Same command lines, fresh data directories.
    fixed = []
    for i, argv in enumerate(argvs):
        d = tmp / f"raw{i}-{uuid.uuid4().hex[:6]}"
        fixed.append([a if not a.startswith("--data-dir=") else f"--data-dir={d}" for a in argv])
    urls = [next(a.split("=", 1)[1] for a in argv if a.startswith("--listen-client-urls=")) for argv in fixed]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for a in fixed]
    try:
        while not all(_healthy(u) for u in urls):
            time.sleep(0.005)
        return time.perf_counter() - t0
    finally:
        for p in procs:
            p.kill()
            p.wait()


async def lag_trial(store: EventStore, runtime: str = "local", subject_name: str = "etcd") -> tuple[float, float] | None:
    """One trial with an independent probe; returns (lag_s, recovery_event_delay_s)."""
    status: dict[str, uuid.UUID] = {}
    met_runs: list[list[float]] = []  # [start_wall, last_wall] of each continuous met run
    done = anyio.Event()

    def on_status(s: TrialStatus) -> None:
        status["id"] = s.trial_id

    async def probe() -> None:
        while "id" not in status:
            await anyio.sleep(0.005)
        subject = SUBJECTS.get(subject_name)()
        async with httpx.AsyncClient(trust_env=False) as http:
            while not done.is_set():
                events = store.events(status["id"])
                up = [e for e in events if isinstance(e, Trial.ClusterUp)]
                before = [e for e in events if isinstance(e, Trial.StateSnapshot) and e.phase == "before"]
                if up and before and any(isinstance(e, Trial.ChaosVerified) for e in events):
                    subject.attach(up[0].members)
                    baseline = before[0].state
                    break
                await anyio.sleep(0.005)
            while not done.is_set():
                t = time.time()
                state = await subject.observe(http, {})
                ok = not subject.recovery_unmet(baseline, state) and not await subject.write_read_probe(http)
                if ok and met_runs and met_runs[-1][1] >= 0:
                    met_runs[-1][1] = t
                elif ok:
                    met_runs.append([t, t])
                elif met_runs and met_runs[-1][1] >= 0:
                    met_runs.append([-1.0, -1.0])  # a break
                await anyio.sleep(0.01)

    req = TrialRequest(subject=subject_name, runtime=runtime, chaos=ChaosSpec(kind="node_kill",
                       target=LAG_TARGET[subject_name]), agent=AgentSpec(), seed=1,
                       config=TrialConfig(restart_policy="on-failure", settle_s=1.0, warmup_s=0.5, timeout_s=20))
    async with anyio.create_task_group() as tg:
        tg.start_soon(probe)
        result = await run_single(store, req, on_status=on_status, handle_signals=False)
        done.set()
    events = store.events(result.trial_id)
    if result.outcome != "recovered":  # reported, not hidden: the figures count recovered trials only
        print(f"  ({runtime} {subject_name} trial {result.trial_id.hex[:8]} {result.outcome}: {result.reason}; left out)")
        return None
    verified = next(e for e in events if isinstance(e, Trial.ChaosVerified))
    recovered = next(e for e in events if isinstance(e, Trial.RecoveryDetected))
    to_wall = verified.timestamp.timestamp() - verified.offset_s
    claimed = to_wall + recovered.criteria_met_offset_s
    recorded = recovered.timestamp.timestamp()
    runs = [r for r in met_runs if 0 <= r[0] <= recorded]
    truth = runs[-1][0]
    return claimed - truth, recorded - (truth + recovered.held_s)


async def main_async(starts: int, trials: int, tmp: Path, runtimes: list[str], subjects: list[str]) -> None:
    runs = [(r, sub) for r in runtimes for sub in subjects]  # "local/etcd" first: the anchor
    ours: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    raw = []
    for _ in range(starts):  # interleaved, so load on the machine hits every runtime and subject alike
        for r, sub in runs:
            took, argvs = await harness_start(tmp, r, sub)
            ours[r, sub].append(took)
            if (r, sub) == ("local", "etcd"):
                raw.append(await anyio.to_thread.run_sync(raw_start, argvs, tmp))
    print(f"cluster start-to-healthy, 3 members (ratelimiter: 3 nodes + 2 Redis + 3 Sentinels), {starts} runs each")
    for r, sub in runs:
        print(f"  opeval {r:<6} {sub:<11} runtime+subject: median {statistics.median(ours[r, sub]) * 1e3:.0f} ms  "
              f"max {max(ours[r, sub]) * 1e3:.0f} ms")
    if raw:
        print(f"  bare Popen + /health (etcd)  : median {statistics.median(raw) * 1e3:.0f} ms  max {max(raw) * 1e3:.0f} ms")
        print(f"  ratio bare/opeval local etcd: {statistics.median(raw) / statistics.median(ours['local', 'etcd']):.2f}")
    for r, sub in runs:
        if r != "local":
            print(f"  ratio {r}/local {sub}: {statistics.median(ours[r, sub]) / statistics.median(ours['local', sub]):.2f}")
        if sub != "etcd":
            print(f"  ratio {sub}/etcd on {r}: {statistics.median(ours[r, sub]) / statistics.median(ours[r, 'etcd']):.2f}")

    lags: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    delays: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    with EventStore(tmp / "lag.db") as store:
        for _ in range(trials):
            for r, sub in runs:
                measured = await lag_trial(store, r, sub)
                if measured is not None:
                    lags[r, sub].append(measured[0])
                    delays[r, sub].append(measured[1])
    print(f"recovery detection lag, {trials} node_kill trials each (etcd: a follower, ratelimiter: limiter-2; monitor "
          f"polls every 100 ms; probe ~10 ms; recovered: {', '.join(f'{r}/{s} {len(lags[r, s])}' for r, s in runs)})")
    for r, sub in runs:
        print(f"  {r:<6} {sub:<11} criteria-met lag : median {statistics.median(lags[r, sub]) * 1e3:.0f} ms  "
              f"max {max(lags[r, sub]) * 1e3:.0f} ms (all: {', '.join(f'{x * 1e3:.0f}' for x in lags[r, sub])})")
        print(f"  {r:<6} {sub:<11} RecoveryDetected recorded after truth+settle: median "
              f"{statistics.median(delays[r, sub]) * 1e3:.0f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--runtimes", default="local", help="comma-separated; the first figures are local's (the anchor)")
    ap.add_argument("--subjects", default="etcd", help="comma-separated; etcd's figures are the anchor")
    args = ap.parse_args()
    subjects = [x.strip() for x in args.subjects.split(",") if x.strip()]
    if "etcd" not in subjects:
        subjects.insert(0, "etcd")
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if "local" not in runtimes:
        runtimes.insert(0, "local")
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d}")
    with tempfile.TemporaryDirectory() as d:
        anyio.run(main_async, args.starts, args.trials, Path(d), runtimes, subjects)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
