"""Both model agents driven by a real local model (SmolLM2-135M under llama.cpp's
llama-server) through real trials on real etcd clusters, and the model's own failings
(prose, truncation) against the same server.

A model this small does not repair anything: these tests assert that everything it did was
recorded (every call's usage, cache tokens included, and every command), that the trial
ends with a real outcome, and that nothing is left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import httpx
import pytest

from opeval.agents import AgentTools, AnthropicAgent, Incident, OpenAIAgent, Price, Sandbox
from opeval.events import AgentSpec, Trial
from opeval.store import EventStore
from tests.agents.test_agents_integration import request, run
from tests.conftest import port_is_bound
from tests.llm import FORCED_PROMPT, MODEL_NAME, ModelServer, model_server
from tests.runner.helpers import of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
#: Small answers and few steps: the model is slow on two cores and its context is short.
#: ``tool_choice: shell`` offers only the shell tool, so llama.cpp's grammar makes every answer a
#: shell call: the trial runs real commands the model wrote.
LOCAL = {"tool_choice": "shell", "max_tokens": 96, "temperature": 0.0, "max_steps": 3, "max_turns": 4,
         "system_prompt": FORCED_PROMPT,
         "output_cap_bytes": 1500, "request_timeout_s": 60.0, "max_retries": 0, "stop_on_recovery": False}


def assert_usage_recorded(events: list[Any], *, asked: str) -> list[Any]:
    usage = of(events, Trial.AgentUsage)
    assert usage, "no model call was recorded"
    assert [u.call for u in usage] == list(range(1, len(usage) + 1))
    for u in usage:
        assert u.model == asked and u.served_model  # the model asked for, the server's name beside it
        assert u.cut or (u.input_tokens + u.cache_read_tokens > 0 and u.stop_reason)
        assert u.cost_usd is None  # a local model has no price
    answered = [u for u in usage if not u.cut and u.stop_reason != "unparsable_output"]
    if len(answered) > 1:  # the server reuses the conversation's prefix: later calls read it from cache
        assert any(u.cache_read_tokens > 0 for u in answered[1:]), [(u.input_tokens, u.cache_read_tokens)
                                                                  for u in answered]
    return usage


def test_openai_agent_runs_real_commands_from_the_command_line(
    llama_server: ModelServer, store_path: Path, no_leaks: None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    cmd = [sys.executable, "-m", "opeval", "run", "--agent", "openai", "--base-url", llama_server.openai_url,
           "--model", MODEL_NAME, "--tool-choice", "shell", "--max-tokens", "160", "--temperature", "0",
           "--max-steps", "3", "--max-retries", "0", "--target", "follower", "--restart-policy", "never",
           "--timeout", "90", "--seed", "5", "--store", str(store_path), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode in (0, 1), proc.stderr  # recovered (0) or not (1): a real outcome either way
    out = json.loads(proc.stdout)
    with EventStore(store_path) as store:
        events = store.events(UUID(out["trial_id"]))
    assert out["outcome"] in ("recovered", "not_recovered")
    assert_usage_recorded(events, asked=MODEL_NAME)
    commands = of(events, Trial.AgentCommandExecuted)
    assert commands, "the model ran no command through the shell tool"  # it could call nothing else
    (finished,) = of(events, Trial.AgentFinished)
    steps = len(commands) + len(of(events, Trial.AgentReasoning)) + len(of(events, Trial.AgentToolError))
    assert finished.steps == steps


def test_anthropic_agent_runs_real_commands_against_the_messages_api(
    llama_server: ModelServer, store_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    spec = AgentSpec(name="anthropic", config={"model": MODEL_NAME, "base_url": llama_server.url, **LOCAL})
    result, events = run(store_path, request(spec, target="etcd-2", timeout=90.0))
    assert result.outcome in ("recovered", "not_recovered"), result.reason
    assert_usage_recorded(events, asked=MODEL_NAME)
    # SmolLM2 makes several shell calls in one answer until the token limit; the last is cut
    # (input {}): it is refused, recorded, a step; the others run.
    commands, refused = of(events, Trial.AgentCommandExecuted), of(events, Trial.AgentToolError)
    assert commands, "the model ran no command through the shell tool"
    assert all(r.tool == "shell" for r in refused)  # shell is the only tool offered
    (finished,) = of(events, Trial.AgentFinished)
    assert finished.steps == len(commands) + len(refused) + len(of(events, Trial.AgentReasoning))
    assert finished.reason in ("done", "max_steps", "time_budget", "recovered", "end_turn", "truncated", "max_turns")


def _solo(tmp_path: Path, agent_cls: type, config: dict[str, Any]) -> tuple[Any, list[tuple[type, dict[str, Any]]]]:
    """One agent run against the server without a cluster: its shell is a plain (unisolated) one."""
    recorded: list[tuple[type, dict[str, Any]]] = []
    spec = AgentSpec(name=agent_cls.name, config=config)
    tools = AgentTools(sandbox=Sandbox(tmp_path / "operator", "c" * 32, {}, tmp_path / "ctl.sock"),
                       record=lambda cls, **f: recorded.append((cls, f)), clock=lambda: 0.0, spec=spec,
                       recovered=anyio.Event(), prices={"other": Price(1, 1, 1, 1)})
    incident = Incident(alert="etcd-2 unreachable", subject="etcd", members=["etcd-1", "etcd-2"], tools=["nodectl"])
    result = anyio.run(lambda: agent_cls(spec).run(incident, tools))
    return result, recorded


@pytest.mark.timeout(600)
def test_prose_from_a_real_model_is_recorded_and_handled(
    llama_server: ModelServer, tmp_path: Path
) -> None:
    # tool_choice auto: SmolLM2 answers in prose; it is reminded once, then the agent ends.
    result, recorded = _solo(tmp_path / "prose", OpenAIAgent, {
        "model": MODEL_NAME, "base_url": llama_server.openai_url, "tool_choice": "auto", "max_tokens": 60,
        "temperature": 0.0, "max_retries": 0})
    kinds = [cls for cls, _ in recorded]
    usage = [f for cls, f in recorded if cls is Trial.AgentUsage]
    # under tool_choice auto this llama.cpp's Functionary grammar may fail on the server ("empty grammar
    # stack", HTTP 500): the agent then ends in error, recorded, and the harness carries on
    assert result.reason in ("end_turn", "truncated", "done", "max_turns", "error"), result
    if result.reason == "error":
        assert "Error code: 500" in result.summary
    unparsable = [f for cls, f in recorded if cls is Trial.AgentUsage and f["stop_reason"] == "unparsable_output"]
    assert len(unparsable) == len([f for cls, f in recorded if cls is Trial.AgentToolError and not f["tool"]
                                   and "could not parse" in f["error"]])  # each one told, none retried
    if result.reason == "end_turn" and not unparsable:
        assert Trial.AgentToolError in kinds and len(usage) == 2  # prose, one reminder, prose again
        assert [f for cls, f in recorded if cls is Trial.AgentToolError][0]["tool"] == ""


def test_the_model_server_is_gone_after_its_block(tmp_path: Path) -> None:
    with model_server(tmp_path) as server:
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert not port_is_bound(server.url)
