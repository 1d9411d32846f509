"""The model agents' loop overhead beside the model's own latency, in the same run.

Real trials (etcd, node_kill on a follower, sandboxed) with ``--agent openai`` and
``--agent anthropic`` pointed at llama.cpp's llama-server serving SmolLM2-135M, its output
constrained to tool calls. For every step where an answer led to a command:

- model latency: the call's ``latency_s`` (request sent to answer parsed), the anchor;
- harness overhead: from the answer (``AgentUsage.offset_s``, stamped as it is recorded)
  to the command's start in the sandbox (``AgentCommandExecuted.started_offset_s``):
  recording the usage and reasoning, validating the call, and starting the sandboxed shell.

Reports p50/p99 of both and the ratio of the p50s.

    PYTHONPATH=. .venv/bin/python scripts/bench_agent_loop.py [--trials 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import anyio

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, run_single
from opeval.store import EventStore
from tests.llm import MODEL_NAME, model_server


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def steps(events: list[Any]) -> list[tuple[float, float]]:
    """(model latency, harness overhead) of each answer that was followed by its command."""
    out: list[tuple[float, float]] = []
    answer: Any = None
    for e in events:
        if isinstance(e, Trial.AgentUsage):
            answer = e if not e.cut and e.latency_s is not None else None
        elif isinstance(e, Trial.AgentCommandExecuted) and answer is not None:
            out.append((answer.latency_s, e.started_offset_s - answer.offset_s))
            answer = None  # only the first command after an answer: later ones wait on earlier commands
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2, help="trials per agent kind")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, model_server(Path(tmp)) as server:
        store_path = Path(tmp) / "events.db"
        for kind, base_url in (("openai", server.openai_url), ("anthropic", server.url)):
            measured: list[tuple[float, float]] = []
            for seed in range(args.trials):
                spec = AgentSpec(name=kind, config={
                    "model": MODEL_NAME, "base_url": base_url, "tool_choice": "required", "max_tokens": 160,
                    "temperature": 0.0, "max_steps": 5, "output_cap_bytes": 1500, "max_retries": 0,
                    "stop_on_recovery": False})
                req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), agent=spec, seed=seed,
                                   config=TrialConfig(restart_policy="never", timeout_s=60.0, settle_s=1.0,
                                                      warmup_s=0.5))
                with EventStore(store_path) as es:
                    result = anyio.run(lambda: run_single(es, req, handle_signals=False))
                    measured += steps(es.events(result.trial_id))
            if not measured:
                print(f"{kind}: no step ran a command")
                continue
            latency = [m for m, _ in measured]
            overhead = [h for _, h in measured]
            print(f"{kind}: {len(measured)} steps; model latency p50 {1000 * statistics.median(latency):.1f} ms "
                  f"p99 {1000 * _pct(latency, 0.99):.1f} ms; harness overhead p50 "
                  f"{1000 * statistics.median(overhead):.1f} ms p99 {1000 * _pct(overhead, 0.99):.1f} ms; "
                  f"overhead/latency (p50) {statistics.median(overhead) / statistics.median(latency):.3f}")


if __name__ == "__main__":
    main()
