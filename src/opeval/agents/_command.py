"""The command agent: an external agent's command line (Claude Code, the Codex CLI,
HolmesGPT, ``opeval-agent``...) run inside the trial's sandbox as one long-running process,
with the trial's tools as its MCP server.

What it is given: the page as ``$OPEVAL_PROMPT`` and as the file ``$OPEVAL_PROMPT_FILE`` in
its home; the MCP endpoint as ``$OPEVAL_MCP_URL`` (streamable HTTP), MCP client
configurations naming it ``opeval`` (Claude Code's ``mcpServers`` shape: over HTTP in
``$OPEVAL_MCP_CONFIG``, through the stdio relay ``opeval-mcp`` on its PATH in
``$OPEVAL_MCP_STDIO_CONFIG``); the model settings of the variant as ``OPEVAL_*``
variables (what the shipped ``opeval-agent`` reads); the endpoints it needs (its model
server, from ``base_url`` or ``forward``) forwarded into its network; and the harness's
variables ``pass_env`` names (its API key), nothing else of the harness's environment.

What is recorded: every MCP tool call, as the built-in agents' (:mod:`opeval.agents._mcp`);
its stdout and stderr as reasoning, in chunks, up to ``reasoning_cap_bytes``. Its process
tree dies with the trial (deadline, recovery, interruption) and when a budget ends it; a
``done`` call ends it (it gets a moment to exit by itself); its exit ends it otherwise.
Commands it runs by itself, not through the ``shell`` tool, stay inside the sandbox but are
not recorded: turn its built-in shell off where the agent allows it.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteReceiveStream

from opeval.agents import _mcp_relay, _reference_agent
from opeval.agents._loop import DEFAULT_SYSTEM_PROMPT, TOOL_CHOICES
from opeval.agents._mcp import ToolServer, client_config
from opeval.agents._protocol import AgentResult, AgentTools, Incident
from opeval.errors import UsageError
from opeval.events import AgentSpec
from opeval.sandbox import HOME, OPERATOR_GID, OPERATOR_UID, TOOLS, interpreter

#: The scripts the agent finds on its PATH: the stdio relay and the reference agent.
RELAY, REFERENCE = "opeval-mcp", "opeval-agent"
#: Seconds a process that called ``done`` has to exit by itself before it is killed.
EXIT_GRACE_S = 2.0
#: Recorded reasoning is cut into chunks of about this many characters, or after a quiet second.
CHUNK_CHARS = 2000


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def endpoint(text: str, what: str) -> tuple[str, int]:
    """``host:port`` (or a URL) as an IPv4 address and a port; ``localhost`` is 127.0.0.1."""
    parts = urlsplit(text if "//" in text else f"//{text}")
    host = parts.hostname or ""
    host = "127.0.0.1" if host == "localhost" else host
    try:
        socket.inet_aton(host)
        port = parts.port if parts.port is not None else (443 if parts.scheme == "https" else 80)
        if not 1 <= port <= 65535:
            raise ValueError(port)
    except (OSError, ValueError):
        raise UsageError(f"{what}: {text!r} is not host:port with an IPv4 address (e.g. 127.0.0.1:8080)") from None
    return host, port


@dataclass(frozen=True)
class CommandSettings:
    """The command agent's settings, from the variant's config (the CLI writes the same keys)."""

    command: str = REFERENCE
    forwards: tuple[tuple[str, int], ...] = ()
    pass_env: tuple[str, ...] = ()
    reasoning_cap_bytes: int = 65536
    model_env: tuple[tuple[str, str], ...] = ()  # OPEVAL_* variables for the agent's model

    @classmethod
    def from_spec(cls, spec: AgentSpec) -> CommandSettings:
        """Read and check the settings; a bad one is a UsageError naming it."""
        cfg = dict(spec.config)
        command = str(cfg.get("command") or REFERENCE).strip()
        if not command:
            raise UsageError("agent setting command: give the agent's command line")
        if command == REFERENCE and not (cfg.get("base_url") and cfg.get("model")):
            raise UsageError(f"agent command runs the reference agent ({REFERENCE}) unless given --command: it needs "
                             "--base-url and --model (an OpenAI-compatible server)")
        forwards = [endpoint(f, "agent setting forward") for f in _names(str(cfg.get("forward") or ""))]
        if cfg.get("base_url"):
            forwards.insert(0, endpoint(str(cfg["base_url"]), "agent setting base_url"))
        pass_env = _names(str(cfg.get("pass_env") or ""))
        if cfg.get("api_key_env"):
            pass_env.append(str(cfg["api_key_env"]))
        for name in pass_env:
            if not name.replace("_", "").isalnum() or name[0].isdigit():
                raise UsageError(f"agent setting pass_env: {name!r} is not an environment variable's name")
        tool_choice = str(cfg.get("tool_choice") or "auto")
        if tool_choice not in TOOL_CHOICES:
            raise UsageError(f"agent setting tool_choice: {tool_choice!r} is not one of {', '.join(TOOL_CHOICES)}")
        model_env = {"OPEVAL_TOOL_CHOICE": tool_choice,
                     "OPEVAL_SYSTEM_PROMPT": str(cfg.get("system_prompt") or DEFAULT_SYSTEM_PROMPT)}
        for key in ("model", "base_url", "max_turns", "max_tokens", "temperature", "request_timeout_s"):
            if cfg.get(key) is not None:
                model_env[f"OPEVAL_{key.upper()}"] = str(cfg[key])
        if cfg.get("api_key_env"):
            model_env["OPEVAL_API_KEY_ENV"] = str(cfg["api_key_env"])
        cap = cfg.get("reasoning_cap_bytes")
        return cls(command=command, forwards=tuple(dict.fromkeys(forwards)), pass_env=tuple(dict.fromkeys(pass_env)),
                   reasoning_cap_bytes=int(cap) if cap is not None else cls.reasoning_cap_bytes,  # type: ignore[arg-type]
                   model_env=tuple(model_env.items()))


class _Reasoning:
    """The process's output as recorded reasoning: chunks of lines, up to a cap."""

    def __init__(self, tools: AgentTools, cap: int) -> None:
        self.tools, self.cap = tools, cap
        self.pending = ""
        self.recorded = 0
        self.total = 0
        self.tail = ""  # the last output, for the result's summary
        self.marked = False  # the note that output went unrecorded has been written

    def add(self, text: str) -> None:
        self.total += len(text.encode())
        self.tail = (self.tail + text[-500:])[-500:]
        if self.recorded >= self.cap:
            self.pending = ""  # past the cap the output is only counted, never held
            self._mark()
            return
        self.pending += text
        # Whole chunks go out as they fill, so what is held stays below two chunks however
        # fast the process prints (a chunk ends at a line's end where one is near).
        while len(self.pending) >= CHUNK_CHARS and self.recorded < self.cap:
            cut = self.pending.rfind("\n", 0, CHUNK_CHARS * 2) + 1 or min(len(self.pending), CHUNK_CHARS * 2)
            self.flush(cut)
        if self.recorded >= self.cap:
            self.pending = ""

    def _mark(self) -> None:
        if not self.marked:
            self.marked = True
            self.tools.note(f"[... output beyond {self.cap} bytes not recorded]")

    def flush(self, upto: int | None = None) -> None:
        chunk, self.pending = (self.pending, "") if upto is None else (self.pending[:upto], self.pending[upto:])
        if not chunk.strip():
            return
        if self.recorded >= self.cap:
            self._mark()
            return
        room = self.cap - self.recorded
        data = chunk.encode()
        if len(data) > room:
            chunk = data[:room].decode(errors="ignore") + f"\n[... output beyond {self.cap} bytes not recorded]"
            self.marked = True
        self.recorded += min(len(data), room)
        self.tools.note(chunk.rstrip("\n"))

    async def drain(self, stream: ByteReceiveStream | None) -> None:
        if stream is None:
            return
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character cut in two waits
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            while True:
                with anyio.move_on_after(1.0) as quiet:
                    chunk = await stream.receive()
                if quiet.cancelled_caught:
                    self.flush()  # a quiet second: what it said so far is one thought
                    continue
                self.add(decoder.decode(chunk))


def _script(path: Path, module_file: str, python: str) -> Path:
    path.write_text(f"#!{python} -I\n" + Path(module_file).read_text())
    path.chmod(0o755)
    return path


class CommandAgent:
    """An external agent's command line, run in the sandbox, its tools served over MCP."""

    name = "command"

    def __init__(self, spec: AgentSpec | None = None) -> None:
        self.spec = spec or AgentSpec(name="command")
        self.settings = CommandSettings.from_spec(self.spec)

    def _env(self, base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
        env = {**base, **dict(self.settings.model_env), **extra}
        for name in self.settings.pass_env:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """Serve the tools, start the command, record what it says, end it with the trial."""
        sandbox, s = tools.sandbox, self.settings
        server = ToolServer(tools)
        isolation = sandbox.isolation
        agent_bin = sandbox.root / "agent-bin"
        agent_bin.mkdir(parents=True, exist_ok=True)
        python = interpreter()[0] if isolation is not None else sys.executable
        scripts = {RELAY: _script(agent_bin / RELAY, _mcp_relay.__file__, python),
                   REFERENCE: _script(agent_bin / REFERENCE, _reference_agent.__file__, python)}
        async with contextlib.AsyncExitStack() as stack:
            # The endpoint listens on the harness's loopback; an isolated agent reaches it at the
            # same address through its network's forwarding, which caps the connections it may
            # hold open (a flood of idle ones cannot use up the harness's descriptors).
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            stack.callback(sock.close)
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            sock.setblocking(False)
            url = await stack.enter_async_context(server.serving(sock))
            if isolation is not None:
                forwards = [sock.getsockname()[:2], *s.forwards]
                await stack.enter_async_context(isolation.network.forwarding(list(dict.fromkeys(forwards))))
                home, bin_dir = HOME, TOOLS
                policy = dataclasses.replace(isolation, tools={**isolation.tools, **scripts})
            else:
                home, bin_dir = str(sandbox.home), str(agent_bin)
                policy = None
            prompt = incident.prompt()
            files = {"prompt.md": prompt, "mcp.json": json.dumps(client_config(url), indent=2),
                     "mcp-stdio.json": json.dumps(client_config(url, stdio_relay=f"{bin_dir}/{RELAY}"), indent=2)}
            for name, text in files.items():
                path = sandbox.home / name
                path.write_text(text)
                if isolation is not None:
                    os.chown(path, OPERATOR_UID, OPERATOR_GID)
            env = self._env(sandbox.env, {
                "OPEVAL_PROMPT": prompt, "OPEVAL_PROMPT_FILE": f"{home}/prompt.md", "OPEVAL_MCP_URL": url,
                "OPEVAL_MCP_CONFIG": f"{home}/mcp.json", "OPEVAL_MCP_STDIO_CONFIG": f"{home}/mcp-stdio.json"})
            if policy is None:
                env["PATH"] = f"{agent_bin}:{env['PATH']}"
                argv, fds = ["bash", "-c", s.command], ()
            else:
                argv, fds = policy.argv(s.command), (policy.network_fd,)
            return await self._run_process(argv, fds, env, sandbox.cwd, server, tools)
        raise AssertionError("unreachable")  # pragma: no cover - the block returns

    async def _run_process(self, argv: list[str], fds: tuple[int, ...], env: dict[str, str], cwd: Path,
                           server: ToolServer, tools: AgentTools) -> AgentResult:
        reasoning = _Reasoning(tools, self.settings.reasoning_cap_bytes)
        started = time.monotonic()
        proc = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True,
                                        pass_fds=fds)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(reasoning.drain, proc.stdout)

                async def ended_by_harness() -> None:
                    await server.ended.wait()
                    with anyio.move_on_after(EXIT_GRACE_S):  # done: a moment to say goodbye
                        await proc.wait()
                    _kill(proc.pid)

                tg.start_soon(ended_by_harness)
                await proc.wait()
                _kill(proc.pid)  # whatever it left in its group (isolated: its whole PID namespace)
                # The output ends with the process tree; a child that left the group gets a second.
                tg.cancel_scope.deadline = min(tg.cancel_scope.deadline, anyio.current_time() + 1.0)
        finally:
            _kill(proc.pid)
            with anyio.CancelScope(shield=True):
                await proc.wait()
                await proc.aclose()
                reasoning.flush()
        if server.failure is not None:
            raise server.failure  # the harness's own failure during a call, not the agent's
        if server.result is not None:
            return server.result
        code = proc.returncode
        took = f"after {time.monotonic() - started:.1f}s"
        if code == 0:
            return AgentResult("exited", f"the agent's command exited (code 0) {took} without calling done: "
                               f"{reasoning.tail.strip()[-300:]}")
        return AgentResult("error", f"the agent's command failed (exit code {code}) {took}: "
                           f"{reasoning.tail.strip()[-300:]}")


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
