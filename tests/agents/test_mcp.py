"""The trial's tools as an MCP server, through the real SDK client, over HTTP and through the
stdio relay; and the command agent running a real process against it (unisolated here:
the sandboxed runs are in test_command_integration)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from opeval.agents import TOOLS, AgentTools, CommandAgent, Incident, Sandbox, ToolServer, client_config
from opeval.agents import _mcp_relay
from opeval.errors import UsageError
from opeval.events import AgentSpec, Trial

Recorded = list[tuple[type, dict[str, Any]]]


def make_tools(tmp_path: Path, config: dict[str, Any] | None = None) -> tuple[AgentTools, Recorded]:
    recorded: Recorded = []
    spec = AgentSpec(name="command", config=config or {})
    tools = AgentTools(sandbox=Sandbox(tmp_path / "operator", "c" * 32, {}, tmp_path / "ctl.sock"),
                       record=lambda cls, **f: recorded.append((cls, f)), clock=lambda: 0.0, spec=spec,
                       recovered=anyio.Event(), prices={})
    return tools, recorded


def of(recorded: Recorded, cls: type) -> list[dict[str, Any]]:
    return [f for c, f in recorded if c is cls]


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def http_server(server: ToolServer) -> AsyncIterator[str]:
    sock = loopback_socket()
    try:
        async with server.serving(sock) as url:
            yield url
    finally:
        sock.close()


def test_the_sdk_client_sees_the_model_agents_tools_and_every_call_is_recorded(tmp_path: Path) -> None:
    tools, recorded = make_tools(tmp_path)
    server = ToolServer(tools)

    async def main() -> None:
        from mcp import Client

        async with Client(server.server) as client:
            listed = (await client.list_tools()).tools
            assert [(t.name, t.description, t.input_schema) for t in listed] == [
                (t.name, t.description, t.schema()) for t in TOOLS.values()]
            ok = await client.call_tool("shell", {"command": "echo hello; exit 3"})
            assert ok.is_error and "[exit code 3]" in ok.content[0].text and "hello" in ok.content[0].text
            bad = await client.call_tool("shell", {"cmd": "ls"})
            assert bad.is_error and "shell:" in bad.content[0].text and "command" in bad.content[0].text
            wrong_type = await client.call_tool("done", {"summary": "x", "resolved": "false"})
            assert wrong_type.is_error and "Expected `bool`" in wrong_type.content[0].text
            unknown = await client.call_tool("rm", {})
            assert unknown.is_error and "unknown tool 'rm'" in unknown.content[0].text
            assert server.result is None
            done = await client.call_tool("done", {"summary": "restarted etcd-2", "resolved": True})
            assert not done.is_error and done.content[0].text == "acknowledged"
            late = await client.call_tool("shell", {"command": "echo late"})
            assert late.is_error and "finished" in late.content[0].text

    anyio.run(main)
    assert server.result is not None and (server.result.reason, server.result.summary,
                                          server.result.declared_resolved) == ("done", "restarted etcd-2", True)
    (command,) = of(recorded, Trial.AgentCommandExecuted)
    assert (command["step"], command["command"], command["exit_code"]) == (1, "echo hello; exit 3", 3)
    errors = of(recorded, Trial.AgentToolError)
    assert [(e["step"], e["tool"], json.loads(e["arguments"])) for e in errors] == [
        (2, "shell", {"cmd": "ls"}), (3, "done", {"summary": "x", "resolved": "false"}), (4, "rm", {}),
        (5, "shell", {"command": "echo late"})]  # a call after done: refused, recorded
    assert all(e["error"] for e in errors) and "finished (done)" in errors[-1]["error"]
    assert tools.step == 5


def test_the_step_budget_ends_the_agent_through_mcp(tmp_path: Path) -> None:
    tools, recorded = make_tools(tmp_path, {"max_steps": 1})
    server = ToolServer(tools)

    async def main() -> None:
        from mcp import Client

        async with Client(server.server) as client:
            assert not (await client.call_tool("shell", {"command": "true"})).is_error
            over = await client.call_tool("shell", {"command": "true"})
            assert over.is_error and "budget" in over.content[0].text

    anyio.run(main)
    assert server.result is not None and server.result.reason == "max_steps"
    assert len(of(recorded, Trial.AgentCommandExecuted)) == 1


def test_the_approval_gate_reviews_mcp_shell_calls(tmp_path: Path) -> None:
    import uuid

    from opeval.agents import ApprovalGate, ApprovalPolicy

    tools, recorded = make_tools(tmp_path)
    tools.gate = ApprovalGate(ApprovalPolicy.parse("deny", "approval"), record=tools.record, clock=lambda: 0.0,
                              trial_id=uuid.uuid4())
    server = ToolServer(tools)

    async def main() -> None:
        from mcp import Client

        async with Client(server.server) as client:
            refused = await client.call_tool("shell", {"command": "rm -rf /members/etcd-1"})
            assert refused.is_error and "command refused, not run" in refused.content[0].text
            assert not (await client.call_tool("shell", {"command": "echo fine"})).is_error

    anyio.run(main)
    assert [f["command"] for f in of(recorded, Trial.CommandProposed)] == ["rm -rf /members/etcd-1"]
    assert [c["command"] for c in of(recorded, Trial.AgentCommandExecuted)] == ["echo fine"]


def relay_messages(url: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-I", _mcp_relay.__file__, url], capture_output=True, text=True,
                          input="".join(json.dumps(m) + "\n" for m in messages), timeout=60, check=True)
    return [json.loads(line) for line in proc.stdout.splitlines()]


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}


def test_http_endpoint_and_stdio_relay(tmp_path: Path) -> None:
    tools, recorded = make_tools(tmp_path)
    server = ToolServer(tools)

    async def main() -> None:
        from mcp import Client

        async with http_server(server) as url:
            assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
            async with Client(url) as client:  # the SDK's own streamable HTTP client
                r = await client.call_tool("shell", {"command": "echo over-http"})
                assert "over-http" in r.content[0].text
            answers = await anyio.to_thread.run_sync(lambda: relay_messages(url, [
                INITIALIZE,
                {"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
                {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                 "params": {"name": "shell", "arguments": {"command": "echo over-stdio"}}},
                {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                 "params": {"name": "shell", "arguments": {"command": 7}}},
                {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                 "params": {"name": "done", "arguments": {"summary": "s", "resolved": False}}},
            ]))
            assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]  # the notification has no answer
            assert [t["name"] for t in answers[1]["result"]["tools"]] == list(TOOLS)
            assert "over-stdio" in answers[2]["result"]["content"][0]["text"]
            assert answers[3]["result"]["isError"] is True
            assert answers[4]["result"]["content"][0]["text"] == "acknowledged"

    anyio.run(main)
    assert [c["command"] for c in of(recorded, Trial.AgentCommandExecuted)] == ["echo over-http", "echo over-stdio"]
    (error,) = of(recorded, Trial.AgentToolError)
    assert error["tool"] == "shell" and json.loads(error["arguments"]) == {"command": 7}
    assert server.result is not None and server.result.declared_resolved is False


def test_the_relay_answers_an_error_when_the_endpoint_is_gone() -> None:
    sock = loopback_socket()
    port = sock.getsockname()[1]
    sock.close()
    (answer,) = relay_messages(f"http://127.0.0.1:{port}/mcp", [INITIALIZE])
    assert answer["id"] == 1 and "unreachable" in answer["error"]["message"]


def test_client_config_is_claude_codes_shape() -> None:
    url = "http://127.0.0.1:9/mcp"
    assert client_config(url) == {"mcpServers": {"opeval": {"type": "http", "url": url}}}
    assert client_config(url, stdio_relay="/opt/operator/bin/opeval-mcp") == {"mcpServers": {
        "opeval": {"type": "stdio", "command": "/opt/operator/bin/opeval-mcp", "args": [url]}}}


INCIDENT = Incident(alert="etcd-2 unreachable", subject="etcd", members=["etcd-1", "etcd-2"], tools=["nodectl"])


def run_command_agent(tmp_path: Path, config: dict[str, Any]) -> tuple[Any, Recorded]:
    tools, recorded = make_tools(tmp_path, config)
    agent = CommandAgent(AgentSpec(name="command", config=config))
    return anyio.run(lambda: agent.run(INCIDENT, tools)), recorded


# A command agent written in bash: the stdio relay is its MCP client.
SCRIPTED = r"""
echo "paged: $(head -c 40 "$OPEVAL_PROMPT_FILE")"
test "$OPEVAL_PROMPT" = "$(cat "$OPEVAL_PROMPT_FILE")" && echo "prompt in env and file"
grep -q '"http"' "$OPEVAL_MCP_CONFIG" && grep -q opeval-mcp "$OPEVAL_MCP_STDIO_CONFIG" && echo "config at $OPEVAL_MCP_CONFIG"
printf '%s\n' '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sh","version":"1"}}}' \
  '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"shell","arguments":{"command":"echo from-the-agent"}}}' \
  '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"done","arguments":{"summary":"all good","resolved":true}}}' \
  | opeval-mcp > answers.jsonl
echo "relayed $(wc -l < answers.jsonl) answers"
sleep 60
"""


def test_command_agent_runs_a_process_whose_mcp_calls_are_recorded(tmp_path: Path) -> None:
    result, recorded = run_command_agent(tmp_path, {"command": SCRIPTED})
    assert (result.reason, result.summary, result.declared_resolved) == ("done", "all good", True)
    (command,) = of(recorded, Trial.AgentCommandExecuted)
    assert command["command"] == "echo from-the-agent" and command["stdout"] == "from-the-agent\n"
    said = "\n".join(n["text"] for n in of(recorded, Trial.AgentReasoning))
    assert "paged: You are the on-call operator" in said
    assert "prompt in env and file" in said and "config at " in said and "relayed 3 answers" in said
    steps = [f["step"] for c, f in recorded]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)


def test_command_agent_exit_status_ends_it(tmp_path: Path) -> None:
    result, recorded = run_command_agent(tmp_path, {"command": "echo giving up; exit 4"})
    assert result.reason == "error" and "exit code 4" in result.summary and "giving up" in result.summary
    assert [n["text"] for n in of(recorded, Trial.AgentReasoning)] == ["giving up"]
    result, _ = run_command_agent(tmp_path, {"command": "true"})
    assert result.reason == "exited"


def test_command_agent_output_is_recorded_in_chunks_up_to_its_cap(tmp_path: Path) -> None:
    result, recorded = run_command_agent(tmp_path, {"command": "for i in $(seq 1 2000); do echo line-$i; done",
                                                    "reasoning_cap_bytes": 5000})
    notes = [n["text"] for n in of(recorded, Trial.AgentReasoning)]
    assert len(notes) > 1 and notes[0].startswith("line-1\n")
    assert notes[-1].endswith("[... output beyond 5000 bytes not recorded]")
    assert sum(len(n) for n in notes) < 5000 + 200


@pytest.mark.parametrize(("config", "message"), [
    ({"forward": "db.internal:5432", "command": "x"}, "not host:port with an IPv4 address"),
    ({"forward": "127.0.0.1:0", "command": "x"}, "not host:port with an IPv4 address"),
    ({"forward": "127.0.0.1:70000", "command": "x"}, "not host:port with an IPv4 address"),
    ({"base_url": "http://model-server/v1", "model": "m"}, "agent setting base_url"),
    ({"pass_env": "API KEY", "command": "x"}, "not an environment variable's name"),
    ({"tool_choice": "any", "command": "x"}, "tool_choice"),
    ({}, "needs --base-url and --model"),
    ({"base_url": "http://127.0.0.1:8080/v1"}, "needs --base-url and --model"),
])
def test_command_agent_settings_are_checked(config: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        CommandAgent(AgentSpec(name="command", config=config))


def test_command_agent_settings_forward_the_model_server() -> None:
    agent = CommandAgent(AgentSpec(name="command", config={
        "base_url": "http://localhost:8080/v1", "forward": "127.0.0.1:9000,127.0.0.1:8080", "model": "m",
        "pass_env": "MY_KEY"}))
    assert agent.settings.forwards == (("127.0.0.1", 8080), ("127.0.0.1", 9000))
    assert dict(agent.settings.model_env)["OPEVAL_MODEL"] == "m"
    assert agent.settings.pass_env == ("MY_KEY",)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_campaign_files_check_command_settings(tmp_path: Path) -> None:
    from opeval.runner import load_campaign
    from opeval.runner._campaign_file import CampaignFileError

    head = "name: c\nchaos: [{kind: node_kill}]\nvariants:\n"
    plan = load_campaign(write(tmp_path, head + "  - {name: cli, agent: command, command: 'claude -p x', "
                                                "forward: '127.0.0.1:8080', reasoning_cap_bytes: 100}\n"))
    assert plan.trials[0].agent.config == {"command": "claude -p x", "forward": "127.0.0.1:8080",
                                           "reasoning_cap_bytes": 100}
    for bad, message in [("agent: command, comand: x", "did you mean 'command'"),
                         ("agent: runbook, command: x", "a setting of agent command"),
                         ("agent: command, reasoning_cap_bytes: -1", "reasoning_cap_bytes")]:
        with pytest.raises(CampaignFileError, match=message):
            load_campaign(write(tmp_path, head + f"  - {{name: v, {bad}}}\n"))


def test_run_refuses_command_flags_without_the_command_agent(capsys: Any, store_path: Path) -> None:
    from opeval.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["run", "--agent", "runbook", "--command", "claude", "--store", str(store_path)])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert "--command: settings of --agent command, not runbook" in err and "Traceback" not in err




def test_the_readmes_variant_templates_load_and_their_commands_parse(tmp_path: Path) -> None:
    import re

    from opeval.runner import load_campaign

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### MCP and command-line agents"):]
    (block,) = re.findall(r"```yaml\n(variants:\n.*?)```", section, re.S)[:1]
    plan = load_campaign(write(tmp_path, "name: templates\nchaos: [{kind: node_kill}]\n" + block))
    commands = {t.agent.variant: str(t.agent.config["command"]) for t in plan.trials}
    assert set(commands) == {"claude-code", "codex", "holmes"}
    for name, command in commands.items():
        syntax = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, check=False)
        assert syntax.returncode == 0, (name, syntax.stderr)
    holmes = subprocess.run(["bash", "-c", commands["holmes"].split(" &&")[0] + " && cat holmes.yaml"],
                            cwd=tmp_path, env={"OPEVAL_MCP_URL": "http://127.0.0.1:9/mcp", "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    import yaml

    assert yaml.safe_load(holmes.stdout) == {
        "mcp_servers": {"opeval": {"description": "operator tools", "config": {
            "type": "stdio", "command": "opeval-mcp", "args": ["http://127.0.0.1:9/mcp"]}}},
        "toolsets": {"bash": {"enabled": False}}}


def test_refused_calls_are_bounded_by_the_step_budget_and_capped_in_size(tmp_path: Path) -> None:
    # A hostile agent looping on malformed calls: as many as the step budget end it; past
    # 100 stored, later ones are answered but not written to the store.
    tools, recorded = make_tools(tmp_path, {"max_steps": 3})
    server = ToolServer(tools)

    async def main() -> None:
        for _ in range(150):
            answer = await server.call("shell", {"cmd": "x" * 100_000})
            assert answer.is_error

    anyio.run(main)
    errors = of(recorded, Trial.AgentToolError)
    assert len(errors) == 100
    assert all(len(e["arguments"]) < 4200 and "more characters not recorded" in e["arguments"] for e in errors)
    assert server.result is not None and server.result.reason == "max_steps"


def test_the_harnesss_own_failure_in_a_call_is_kept_for_the_trial_not_told_as_a_tool_error(tmp_path: Path) -> None:
    from opeval.errors import StoreError

    tools, recorded = make_tools(tmp_path)

    async def broken(command: str) -> Any:
        raise StoreError("cannot write to store x: disk full")

    tools.shell = broken  # type: ignore[method-assign]
    server = ToolServer(tools)
    answer = anyio.run(lambda: server.call("shell", {"command": "ls"}))
    assert answer.is_error and isinstance(server.failure, StoreError)
    assert server.result is not None and server.result.reason == "error"
    assert of(recorded, Trial.AgentToolError) == []


def test_output_without_a_pause_is_held_in_chunks_and_counted_past_the_cap(tmp_path: Path) -> None:
    from opeval.agents._command import CHUNK_CHARS, _Reasoning

    tools, recorded = make_tools(tmp_path)
    reasoning = _Reasoning(tools, cap=100_000)
    for _ in range(200):  # `yes` into a pipe: 64 KiB reads, never a quiet second
        reasoning.add("y\n" * 32_768)
        assert len(reasoning.pending) < 2 * CHUNK_CHARS
    reasoning.flush()
    notes = [f["text"] for f in of(recorded, Trial.AgentReasoning)]
    assert reasoning.total == 200 * 65_536
    assert sum(len(n.encode()) for n in notes) <= 100_000 + 200
    assert notes[-1].endswith("[... output beyond 100000 bytes not recorded]")
