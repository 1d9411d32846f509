"""Command-line agents in real trials on real etcd clusters, inside the sandbox: the shipped
reference agent driven by a real local model through MCP, and a hostile agent that tries to
outlive its trial and to reach the harness."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest

from opeval.events import AgentSpec, Trial
from opeval.store import EventStore
from tests.agents.test_agents_integration import request, run
from tests.conftest import labelled_processes
from tests.llm import MODEL_NAME, ModelServer
from tests.runner.helpers import assert_nothing_left, of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return [p for p in found if p != os.getpid()]


def test_reference_agent_driven_by_a_real_model_through_mcp(
    llama_server: ModelServer, store_path: Path, no_leaks: None
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    # --base-url is forwarded into the agent's network: the sandboxed process reaches the model there.
    cmd = [sys.executable, "-m", "opeval", "run", "--agent", "command", "--command", "opeval-agent",
           "--base-url", llama_server.openai_url, "--model", MODEL_NAME, "--tool-choice", "shell",
           "--max-tokens", "160", "--temperature", "0", "--max-steps", "3",
           "--target", "follower", "--restart-policy", "never", "--timeout", "90", "--seed", "5",
           "--store", str(store_path), "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr  # recovered (0) or not (1): a real outcome either way
    out = json.loads(proc.stdout)
    assert out["outcome"] in ("recovered", "not_recovered")
    with EventStore(store_path) as store:
        events = store.events(UUID(out["trial_id"]))
    said = "\n".join(e.text for e in of(events, Trial.AgentReasoning))
    assert "tools: shell, done; offering shell" in said, said  # it listed the tools over MCP
    assert "tokens in" in said, said  # and reached the model server from inside the sandbox
    commands, refused = of(events, Trial.AgentCommandExecuted), of(events, Trial.AgentToolError)
    (finished,) = of(events, Trial.AgentFinished)
    # Every MCP call it made ("calling ...", printed before the call) is in the store, but one the
    # step budget stopped, which ends the agent as it ends the built-in ones. (A call whose
    # arguments the model left unfinished at the token limit is not JSON: it cannot go over MCP,
    # and the agent says so instead, "not calling ...".)
    calls = [line for line in said.splitlines() if line.startswith("calling ")]
    assert len(calls) == len(commands) + len(refused) + (finished.reason == "max_steps")
    assert commands, "the model ran no command through the MCP shell tool"
    for c in commands:
        assert json.dumps(c.command)[1:-1] in said or c.command in said
    assert finished.steps == len(commands) + len(refused) + len(of(events, Trial.AgentReasoning))
    assert finished.reason in ("done", "max_steps", "exited", "error", "time_budget", "recovered"), finished
    assert labelled_processes(UUID(out["trial_id"]).hex) == []
    assert processes_with("opeval-agent") == []


HOSTILE = r"""
echo "hostile agent up"
kill -9 -1 2>/dev/null; echo "kill -1: it survived its own signal storm"
# meant to outlive the agent: out of its process group and session, detached from its pipes
setsid bash -c 'exec -a {marker} sleep 1000' </dev/null >/dev/null 2>&1 &
nohup bash -c 'exec -a {marker} sleep 1000' </dev/null >/dev/null 2>&1 &
disown -a
cat {store} >/dev/null 2>&1 && echo "READ THE STORE" || echo "store: not visible"
ls {runtime}/journal >/dev/null 2>&1 && echo "SAW THE JOURNAL" || echo "journal: not visible"
(exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo "REACHED THE HARNESS PORT" || echo "harness port: unreachable"
# both have started (on a busy machine a background start takes a while) before they are counted
for i in $(seq 100); do [ "$(ps -e -o args= | grep -c '^{marker}')" -ge 2 ] && break; sleep 0.1; done
echo "meant to outlive it: $(ps -e -o args= | grep -c '^{marker}')"
exec -a {marker} sleep 1000
"""


def test_a_hostile_command_agent_escapes_nothing_and_leaves_nothing(
    store_path: Path, runtime_dir: Path, no_leaks: None
) -> None:
    marker = f"opeval-hostile-{os.getpid()}"
    with socket.socket() as harness_port:  # a port of the harness's own, on the host's loopback
        harness_port.bind(("127.0.0.1", 0))
        harness_port.listen(1)
        port = harness_port.getsockname()[1]
        script = HOSTILE.format(marker=marker, store=store_path, runtime=runtime_dir, port=port)
        spec = AgentSpec(name="command", config={"command": script, "stop_on_recovery": False})
        with EventStore(store_path):
            pass  # the store exists before the agent looks for it
        result, events = run(store_path, request(spec, target="etcd-2", timeout=12.0))
    assert result.outcome == "not_recovered", result.reason  # it repaired nothing
    said = "\n".join(e.text for e in of(events, Trial.AgentReasoning))
    assert "hostile agent up" in said and "meant to outlive it: 2" in said
    assert "store: not visible" in said and "READ THE STORE" not in said
    assert "journal: not visible" in said and "SAW THE JOURNAL" not in said
    assert "harness port: unreachable" in said and "REACHED THE HARNESS PORT" not in said
    (finished,) = of(events, Trial.AgentFinished)
    assert finished.reason == "time_budget"  # it never ended by itself: the trial's deadline ended it
    assert_nothing_left(result, events)
    assert processes_with(marker) == []


# A command agent scripted in bash whose MCP client is the stdio relay: it restarts the member
# the page names, then says it is done.
REPAIRING = r"""
member=$(printf '%s' "$OPEVAL_PROMPT" | grep -o 'etcd-[0-9]* unreachable' | head -1 | cut -d' ' -f1)
echo "paged about $member"
call() { printf '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"%s","arguments":%s}}\n' "$@"; }
{ printf '%s\n' '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sh","version":"1"}}}'
  call 1 shell '{"command":"nodectl status"}'
  call 2 shell "{\"command\":\"nodectl start $member\"}"
  call 3 shell '{"command":7}'
  call 4 done "{\"summary\":\"started $member\",\"resolved\":true}"
} | opeval-mcp | while read -r answer; do echo "answer: ${answer:0:120}"; done
sleep 600
"""


def test_a_command_agent_repairs_the_fault_through_the_stdio_relay(store_path: Path, no_leaks: None) -> None:
    spec = AgentSpec(name="command", config={"command": REPAIRING, "stop_on_recovery": False})
    result, events = run(store_path, request(spec, target="etcd-2", timeout=30.0))
    assert result.outcome == "recovered", result.reason
    commands = [e.command for e in of(events, Trial.AgentCommandExecuted)]
    assert commands == ["nodectl status", "nodectl start etcd-2"]
    (refused,) = of(events, Trial.AgentToolError)
    assert refused.tool == "shell" and json.loads(refused.arguments) == {"command": 7}
    (finished,) = of(events, Trial.AgentFinished)
    assert (finished.reason, finished.summary, finished.declared_resolved) == ("done", "started etcd-2", True)
    said = "\n".join(e.text for e in of(events, Trial.AgentReasoning))
    assert "paged about etcd-2" in said and said.count("answer: ") == 5
    assert finished.steps == len(commands) + 1 + len(of(events, Trial.AgentReasoning))
    assert processes_with("paged about $member") == []  # the script (its bash, its sleep) died with it
