"""The agent's shell on real processes: scrubbed environment, timeouts, output caps, and
nothing it starts outliving its command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from opeval.agents import AgentTools, BudgetExhausted, CommandResult, Price, Sandbox, TokenCount
from opeval.events import AgentSpec, Trial
from tests.conftest import labelled_processes

LABEL = "a" * 32


def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path / "operator", LABEL, {"ETCDCTL_ENDPOINTS": "http://127.0.0.1:1"}, tmp_path / "ctl.sock")


def run(sb: Sandbox, command: str, timeout_s: float = 10.0, cap: int = 16384) -> CommandResult:
    return anyio.run(lambda: sb.run(command, timeout_s=timeout_s, output_cap=cap, clock=lambda: 0.0))


def test_the_shell_never_sees_api_keys_or_harness_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "also-secret")
    monkeypatch.setenv("OPEVAL_STORE", "/somewhere/events.db")
    r = run(sandbox(tmp_path), "env; cat /proc/self/environ | tr '\\0' '\\n'")
    assert r.exit_code == 0
    assert "sk-ant-do-not-leak" not in r.stdout and "also-secret" not in r.stdout
    assert "OPEVAL_STORE" not in r.stdout
    assert "ETCDCTL_ENDPOINTS=http://127.0.0.1:1" in r.stdout  # the subject's tool config is there
    assert f"HOME={tmp_path / 'operator' / 'home'}" in r.stdout


def test_commands_run_exactly_as_written_in_the_sandbox(tmp_path: Path) -> None:
    sb = sandbox(tmp_path)
    r = run(sb, "pwd; echo \"quoted  'text'\" && false || echo recovered; command -v nodectl")
    assert r.stdout.splitlines() == [str(tmp_path / "operator" / "home"), "quoted  'text'", "recovered", str(sb.bin / "nodectl")]
    r = run(sb, "echo out; echo err >&2; exit 7")
    assert (r.exit_code, r.stdout, r.stderr) == (7, "out\n", "err\n")


def test_a_hanging_command_is_killed_at_its_timeout(tmp_path: Path) -> None:
    t = time.monotonic()
    r = run(sandbox(tmp_path), "echo before; sleep 300 & sleep 200; echo never", timeout_s=0.5)
    assert time.monotonic() - t < 5
    assert r.timed_out and r.exit_code is None
    assert r.stdout == "before\n"  # what it printed before the kill is kept
    assert "[timed out, killed]" in r.as_text()
    assert labelled_processes(LABEL) == []  # the whole group died, background sleep included


def test_oversized_output_is_truncated_and_marked(tmp_path: Path) -> None:
    r = run(sandbox(tmp_path), "head -c 200000 /dev/zero | tr '\\0' x; echo tail >&2", cap=1000)
    assert r.exit_code == 0
    assert r.stdout == "x" * 1000 and r.stdout_bytes == 200000 and r.stdout_truncated
    assert not r.stderr_truncated and r.stderr == "tail\n"
    assert "[... truncated: 200000 bytes in all]" in r.as_text()


def test_a_background_job_does_not_outlive_its_command(tmp_path: Path) -> None:
    t = time.monotonic()
    r = run(sandbox(tmp_path), "sleep 300 & echo started", timeout_s=30)
    assert r.exit_code == 0 and r.stdout == "started\n" and not r.timed_out
    assert time.monotonic() - t < 5
    assert labelled_processes(LABEL) == []


def test_every_command_is_recorded_and_the_step_budget_holds(tmp_path: Path) -> None:
    recorded: list[tuple[type, dict[str, Any]]] = []
    tools = AgentTools(sandbox=sandbox(tmp_path), record=lambda cls, **f: recorded.append((cls, f)),
                       clock=lambda: 1.5, spec=AgentSpec(name="x", config={"max_steps": 2}),
                       recovered=anyio.Event(), prices={"m": Price.parse([3.0, 15.0])})

    async def main() -> None:
        await tools.shell("echo one")
        tools.note("thinking")
        await tools.shell("exit 3")
        with pytest.raises(BudgetExhausted) as exc:
            await tools.shell("echo three")
        assert exc.value.reason == "max_steps"
        tools.usage("m-2025", TokenCount(input=1000, output=100, cache_read=2000, cache_write=400))

    anyio.run(main)
    kinds = [cls for cls, _ in recorded]
    assert kinds == [Trial.AgentCommandExecuted, Trial.AgentReasoning, Trial.AgentCommandExecuted, Trial.AgentUsage]
    first, second = recorded[0][1], recorded[2][1]
    assert (first["command"], first["exit_code"], first["stdout"], first["step"]) == ("echo one", 0, "one\n", 1)
    assert (second["exit_code"], second["step"]) == (3, 3)
    # a two-rate price counts cache tokens at the input rate; the budget counts every token
    assert recorded[3][1]["cost_usd"] == pytest.approx((3400 * 3.0 + 100 * 15.0) / 1e6)
    assert (recorded[3][1]["cache_read_tokens"], recorded[3][1]["cache_write_tokens"]) == (2000, 400)
    assert tools.tokens == 3500


def test_a_variant_can_hand_the_agent_fewer_tools(tmp_path: Path) -> None:
    (tmp_path / "operator" / "bin").mkdir(parents=True)
    (tmp_path / "operator" / "bin" / "etcdctl").symlink_to("/bin/true")
    sb = Sandbox(tmp_path / "operator", LABEL, {}, tmp_path / "ctl.sock", allowed_tools={"etcdctl"})
    assert sb.tools == ["etcdctl"]
    r = run(sb, "command -v nodectl || echo missing; command -v etcdctl")
    assert r.stdout.splitlines() == ["missing", str(sb.bin / "etcdctl")]
