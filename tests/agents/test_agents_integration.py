"""Agents repairing real faults on real etcd clusters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx  # the anthropic SDK's own HTTP client package
import pytest

from opeval.agents import AnthropicAgent
from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.projections import ReadModels, RuleSet, trial_scores
from opeval.runner import TrialRequest, run_single
from opeval.store import EventStore
from tests.runner.helpers import assert_nothing_left, of

pytestmark = pytest.mark.integration


def request(agent: AgentSpec, *, target: str = "follower", seed: int = 21, timeout: float = 40.0) -> TrialRequest:
    return TrialRequest(chaos=ChaosSpec(kind="node_kill", target=target), agent=agent, seed=seed,
                        config=TrialConfig(restart_policy="never", timeout_s=timeout, settle_s=1.0, warmup_s=0.5))


def run(store_path: Path, req: TrialRequest, agent: Any = None) -> tuple[Any, list[Any]]:
    with EventStore(store_path) as store:
        result = anyio.run(lambda: run_single(store, req, handle_signals=False, agent=agent))
        events = store.events(result.trial_id)
    assert_nothing_left(result, events)
    return result, events


def test_runbook_repairs_what_the_baseline_cannot(store_path: Path, tmp_path: Path, no_leaks: None) -> None:
    incremental = ReadModels(store_path, tmp_path / "incremental.duckdb")
    result, events = run(store_path, request(AgentSpec(name="runbook"), target="random"))
    incremental.update()
    assert result.outcome == "recovered", result.reason
    (injected,) = of(events, Trial.ChaosInjected)
    commands = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    assert commands[0] == "nodectl status"
    assert f"nodectl start {injected.target}" in commands
    status = of(events, Trial.AgentCommandExecuted)[0]
    assert f"{injected.target}" in status.stdout and "exited (signal 9)" in status.stdout
    assert of(events, Trial.AgentReasoning)
    (started,) = of(events, Trial.AgentStarted)
    assert "unreachable" in started.context and "node_kill" not in started.context  # symptom, not the fault
    (finished,) = of(events, Trial.AgentFinished)
    assert finished.reason in ("done", "recovered")
    restarted = [e for e in of(events, Trial.MemberProcessStarted) if e.reason == "nodectl start"]
    assert [e.member for e in restarted] == [injected.target]

    baseline, base_events = run(store_path, request(AgentSpec(name="none"), target="random", timeout=4.0))
    assert baseline.outcome == "not_recovered"
    assert of(base_events, Trial.ChaosInjected)[0].target == injected.target  # same seed, same victim
    assert of(base_events, Trial.AgentStarted) == []

    # the read models, updated after each real trial, equal a full rebuild of the log
    incremental.update()
    full = ReadModels(store_path, tmp_path / "full.duckdb")
    full.rebuild()
    assert incremental.content_hash() == full.content_hash()
    # these trials settle for 1 s; the default rules ask for 2 s before a recovery counts
    quick = RuleSet.parse(RuleSet.default().source.replace("min_settle_s: 2.0", "min_settle_s: 1.0"))
    full.score(quick)
    with full.connect() as con:
        rows = trial_scores(con, quick)
    assert [(r["agent"], r["recovered"]) for r in rows] == [("runbook", True), ("none", False)]
    assert rows[0]["first_remediation_s"] > rows[0]["first_diagnostic_s"] >= 0


def _message(content: list[dict[str, Any]], stop: str = "tool_use") -> httpx.Response:
    return httpx.Response(200, json={
        "id": "msg_test", "type": "message", "role": "assistant", "model": "claude-sonnet-4-6",
        "content": content, "stop_reason": stop, "stop_sequence": None,
        "usage": {"input_tokens": 1200, "output_tokens": 80},
    })


def _shell(n: int, command: str, text: str | None = None) -> httpx.Response:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    blocks.append({"type": "tool_use", "id": f"toolu_{n}", "name": "shell", "input": {"command": command}})
    return _message(blocks)


def _error(status: int, kind: str) -> httpx.Response:
    return httpx.Response(status, headers={"retry-after-ms": "10"},
                          json={"type": "error", "error": {"type": kind, "message": f"scripted {status}"}})


def test_a_scripted_claude_conversation_repairs_a_real_cluster(
    store_path: Path, no_leaks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-never-in-the-shell")
    script = [
        _error(429, "rate_limit_error"),
        _shell(1, "nodectl status", "Looking at the members first."),
        _error(500, "api_error"),
        _shell(2, "env; (setsid sleep 600 >/dev/null 2>&1 &); echo spawned"),
        _shell(3, "nodectl start etcd-2"),
        _shell(4, "for i in 1 2 3 4 5 6 7 8 9 10; do etcdctl endpoint health --cluster && break; sleep 0.5; done"),
        _message([{"type": "text", "text": "Healthy again."},
                  {"type": "tool_use", "id": "toolu_5", "name": "done",
                   "input": {"summary": "restarted etcd-2", "resolved": True}}]),
    ]
    requests: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        assert req.url.path == "/v1/messages"
        assert "sk-ant-test-never-in-the-shell" in (req.headers.get("x-api-key", "") + req.headers.get("authorization", ""))
        requests.append(json.loads(req.content))
        if not script:
            return _message([{"type": "text", "text": "nothing more"}], stop="end_turn")
        return script.pop(0)

    spec = AgentSpec(name="anthropic", config={"model": "claude-sonnet-4-6", "stop_on_recovery": False})
    agent = AnthropicAgent(spec, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    result, events = run(store_path, request(spec, target="etcd-2"), agent=agent)

    assert result.outcome == "recovered", result.reason
    assert script == []  # every scripted answer, errors included, was consumed
    assert len(requests) == 7  # 5 answered calls + the 429 and the 500 retried
    cmds = of(events, Trial.AgentCommandExecuted)
    assert [c.command.split()[0] for c in cmds] == ["nodectl", "env;", "nodectl", "for"]
    # the commands really ran against the cluster: their output went back to the model
    assert "etcd-2" in cmds[0].stdout and "exited (signal 9)" in cmds[0].stdout
    assert "sk-ant-test-never-in-the-shell" not in cmds[1].stdout and "spawned" in cmds[1].stdout
    assert cmds[2].stdout.startswith("started etcd-2") and cmds[3].exit_code == 0
    assert "is healthy" in cmds[3].stdout + cmds[3].stderr
    results_sent = [block for r in requests for m in r["messages"] if m["role"] == "user"
                    for block in (m["content"] if isinstance(m["content"], list) else [])]
    assert any("exited (signal 9)" in b.get("content", "") for b in results_sent)
    # usage and cost per answered call, reasoning from text blocks, the agent's own verdict
    usage = of(events, Trial.AgentUsage)
    assert [u.call for u in usage] == [1, 2, 3, 4, 5]
    assert all(u.cost_usd == pytest.approx((1200 * 3 + 80 * 15) / 1e6) for u in usage)
    assert [r.text for r in of(events, Trial.AgentReasoning)] == ["Looking at the members first.", "Healthy again."]
    (finished,) = of(events, Trial.AgentFinished)
    assert (finished.reason, finished.summary, finished.declared_resolved) == ("done", "restarted etcd-2", True)
    assert [e.member for e in of(events, Trial.MemberProcessStarted) if e.reason == "nodectl start"] == ["etcd-2"]


def test_an_unisolated_trial_runs_only_when_asked_and_is_marked_so(store_path: Path, no_leaks: None) -> None:
    from dataclasses import replace

    from opeval.events import describe

    req = replace(request(AgentSpec(name="runbook"), target="etcd-3"), sandbox="none")
    result, events = run(store_path, req)
    assert result.outcome == "recovered", result.reason
    (started,) = of(events, Trial.TrialStarted)
    assert started.sandbox is not None and started.sandbox.mechanism == "none" and not started.sandbox.isolated
    assert "UNISOLATED" in describe(started)
    with ReadModels(store_path).connect() as con:
        assert con.execute("SELECT unisolated, sandbox FROM trials").fetchall() == [(True, "none")]
    isolated, events = run(store_path, request(AgentSpec(name="runbook"), target="etcd-3"))
    (started,) = of(events, Trial.TrialStarted)
    assert started.sandbox is not None and started.sandbox.mechanism == "bubblewrap"
    assert started.sandbox.version.startswith("bubblewrap ") and "pid" in started.sandbox.namespaces
    assert "UNISOLATED" not in describe(started)
