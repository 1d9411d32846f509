"""Sandbox benchmarks, each beside its anchor in the same run.

1. per-command overhead: the same commands run through an isolated Sandbox (nsenter +
   bubblewrap + prlimit + setpriv, with the agent's network forwarding live) and through
   a bare ``bash -c`` spawned the same way (the unisolated Sandbox), interleaved so both
   see the same machine. Reports p50/p99 of each and the p50 overhead (target: <= 20 ms).
2. a runbook trial's time to recover (node_kill, follower, restart policy never),
   sandboxed and unisolated, alternating.

    .venv/bin/python scripts/bench_sandbox.py [--commands 200] [--trials 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import anyio

from opeval.events import AgentSpec, ChaosSpec, TrialConfig
from opeval.runner import TrialRequest, run_single
from opeval.sandbox import Sandbox, operator_sandbox
from opeval.store import EventStore

COMMANDS = ["true", "echo hello", "ls /usr/bin | wc -l", "cat /etc/os-release | head -1"]


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


async def _commands(n: int) -> tuple[list[float], list[float]]:
    root = Path(tempfile.mkdtemp(prefix="opeval-bench-sandbox-"))
    sock = root / "ctl.sock"
    member = root / "etcd-1"
    member.mkdir()
    listener = await anyio.create_unix_listener(sock)
    bare = Sandbox(root / "bare", "d" * 32, {}, sock)
    boxed_t: list[float] = []
    bare_t: list[float] = []
    async with listener, operator_sandbox(
        mechanism="bubblewrap", root=root / "boxed", trial_id="d" * 32, tool_env={}, control_socket=sock,
        allowed_tools=None, client_urls=["http://127.0.0.1:2379"], member_dirs={"etcd-1": member}, mount_capped=None,
    ) as boxed:
        for i in range(n):
            cmd = COMMANDS[i % len(COMMANDS)]
            for sb, out in ((boxed, boxed_t), (bare, bare_t)) if i % 2 else ((bare, bare_t), (boxed, boxed_t)):
                r = await sb.run(cmd, timeout_s=10, output_cap=65536, clock=lambda: 0.0)
                assert r.exit_code == 0, r.as_text()
                out.append(r.duration_s * 1000)
    return boxed_t, bare_t


def _trial(store: EventStore, sandbox: str, seed: int) -> float | None:
    req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), agent=AgentSpec(name="runbook"),
                       seed=seed, sandbox=sandbox,
                       config=TrialConfig(restart_policy="never", timeout_s=30, settle_s=1.0, warmup_s=0.5))
    result = anyio.run(lambda: run_single(store, req, handle_signals=False))
    return result.time_to_recover_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commands", type=int, default=200)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    boxed, bare = anyio.run(_commands, args.commands)
    print(f"per command ({args.commands} each, interleaved):")
    print(f"  sandboxed   p50 {_pct(boxed, 50):6.1f} ms  p99 {_pct(boxed, 99):6.1f} ms")
    print(f"  bare bash   p50 {_pct(bare, 50):6.1f} ms  p99 {_pct(bare, 99):6.1f} ms  (anchor)")
    print(f"  overhead    p50 {_pct(boxed, 50) - _pct(bare, 50):6.1f} ms  p99 {_pct(boxed, 99) - _pct(bare, 99):6.1f} ms"
          f"  ratio p50 {_pct(boxed, 50) / _pct(bare, 50):.2f}")
    if args.trials:
        ttr: dict[str, list[float]] = {"bubblewrap": [], "none": []}
        with tempfile.TemporaryDirectory() as tmp, EventStore(Path(tmp) / "events.db") as store:
            for i in range(args.trials):
                for mech in ("bubblewrap", "none") if i % 2 == 0 else ("none", "bubblewrap"):
                    t = _trial(store, mech, 40 + i)
                    if t is not None:
                        ttr[mech].append(t)
        print(f"runbook trial, time to recover ({args.trials} each, alternating):")
        for mech, values in ttr.items():
            if values:
                print(f"  {mech:<10}  median {statistics.median(values):5.2f} s  "
                      f"(min {min(values):.2f}, max {max(values):.2f}, {len(values)} recovered)")
        if ttr["bubblewrap"] and ttr["none"]:
            print(f"  ratio sandboxed/unisolated: {statistics.median(ttr['bubblewrap']) / statistics.median(ttr['none']):.2f}")


if __name__ == "__main__":
    main()
