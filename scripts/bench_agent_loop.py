"""The model agents' loop overhead beside the model's own latency, in the same run.

1. harness overhead: real trials (etcd, node_kill on a follower, sandboxed) with the
   ``openai`` agent whose answers are scripted at the SDK's HTTP edge (each answer a shell
   call), so every step runs a command: from the answer (``AgentUsage.offset_s``, stamped as
   it is recorded) to the command's start in the sandbox (``started_offset_s``): recording
   usage and reasoning, validating the call, starting the sandboxed shell.
2. the same overhead on real model steps, and the anchor, the model's latency: real trials
   with the same agent against llama.cpp's llama-server serving SmolLM2-135M, whose answers
   are forced into shell calls (``tool_choice: shell``, a prompt that spells the call out);
   latency is ``AgentUsage.latency_s`` (request sent to answer parsed), in the same trials.

Reports p50/p99 of each and the ratio of the p50s.

    PYTHONPATH=. .venv/bin/python scripts/bench_agent_loop.py [--trials 2] [--calls 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import anyio

from opeval.agents import OpenAIAgent
from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest, run_single
from opeval.store import EventStore
from tests.llm import FORCED_PROMPT, MODEL_NAME, model_server


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def overheads(events: list[Any]) -> list[float]:
    """Harness seconds from each answer to the start of the command it asked for."""
    out: list[float] = []
    answer: Any = None
    for e in events:
        if isinstance(e, Trial.AgentUsage):
            answer = e
        elif isinstance(e, Trial.AgentCommandExecuted) and answer is not None:
            out.append(e.started_offset_s - answer.offset_s)
            answer = None
    return out


def scripted(commands: list[str]) -> Any:
    """An HTTP client whose chat completions answer with these shell calls, then done."""
    import httpx2

    queue = list(commands)

    def handler(request: httpx2.Request) -> httpx2.Response:
        if queue:
            call = {"name": "shell", "arguments": json.dumps({"command": queue.pop(0)})}
        else:
            call = {"name": "done", "arguments": json.dumps({"summary": "benchmark", "resolved": False})}
        return httpx2.Response(200, json={
            "id": "c", "object": "chat.completion", "created": 0, "model": "scripted",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "call", "type": "function", "function": call}]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}})

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handler))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2, help="scripted trials (8 commands each)")
    ap.add_argument("--calls", type=int, default=4, help="most model calls (and commands) per model trial")
    ap.add_argument("--model-trials", type=int, default=2, help="trials driven by the local model")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "events.db"
        overhead: list[float] = []
        for seed in range(args.trials):
            spec = AgentSpec(name="openai", config={"model": "scripted", "base_url": "http://scripted.invalid/v1",
                                                    "stop_on_recovery": False})
            agent = OpenAIAgent(spec, http_client=scripted(["nodectl status", "etcdctl endpoint health --cluster",
                                                            "true", "echo hi", "nodectl logs etcd-2", "ls /",
                                                            "date", "uname -a"]))
            req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), agent=spec, seed=seed,
                               config=TrialConfig(restart_policy="never", timeout_s=60.0, settle_s=1.0, warmup_s=0.5))
            with EventStore(store_path) as es:
                result = anyio.run(lambda: run_single(es, req, handle_signals=False, agent=agent))
                overhead += overheads(es.events(result.trial_id))
        latency: list[float] = []
        real_overhead: list[float] = []
        with model_server(Path(tmp)) as server:
            for seed in range(args.model_trials):
                spec = AgentSpec(name="openai", config={
                    "model": MODEL_NAME, "base_url": server.openai_url, "tool_choice": "shell", "max_tokens": 96,
                    "temperature": 0.0, "max_retries": 0, "max_turns": args.calls, "max_steps": args.calls,
                    "system_prompt": FORCED_PROMPT, "stop_on_recovery": False})
                req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), agent=spec, seed=seed,
                                   config=TrialConfig(restart_policy="never", timeout_s=120.0, settle_s=1.0,
                                                      warmup_s=0.5))
                with EventStore(store_path) as es:
                    result = anyio.run(lambda: run_single(es, req, handle_signals=False))
                    events = es.events(result.trial_id)
                real_overhead += overheads(events)
                latency += [e.latency_s for e in events if isinstance(e, Trial.AgentUsage) and not e.cut]
    for label, values in (("harness overhead, scripted answers (answer -> command start)", overhead),
                          ("harness overhead, SmolLM2's answers (answer -> command start)", real_overhead)):
        print(f"{label}: {len(values)} steps, p50 {1000 * statistics.median(values):.1f} ms, "
              f"p99 {1000 * _pct(values, 0.99):.1f} ms")
    print(f"model latency (SmolLM2-135M, llama-server, 1 thread): {len(latency)} calls, p50 "
          f"{1000 * statistics.median(latency):.0f} ms, p99 {1000 * _pct(latency, 0.99):.0f} ms")
    print(f"overhead / latency (p50), scripted: {statistics.median(overhead) / statistics.median(latency):.4f}; "
          f"SmolLM2's steps: {statistics.median(real_overhead) / statistics.median(latency):.4f}")


if __name__ == "__main__":
    main()
