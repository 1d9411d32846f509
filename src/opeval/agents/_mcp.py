"""One trial's tools as an MCP server, for agents that bring their own loop.

The tools are the model agents' own (:mod:`opeval.agents._tools`: names, descriptions,
schemas, strict validation), and every call is recorded as the built-in loop records it
(:func:`opeval.agents._loop.run_loop`): a ``shell`` call goes through
:meth:`AgentTools.shell` (the approval gate, the step budget, ``AgentCommandExecuted``); a
refused or malformed call is an ``AgentToolError`` and comes back as a tool error that says
what was wrong; ``done`` ends the agent with its summary. A call made after the end (before
the agent's process is stopped) is refused and recorded too; the one call over the step
budget ends the agent, as it does the built-in ones.

Transports: streamable HTTP (stateless, JSON answers) on a socket the harness binds inside
the agent's network namespace (so only the agent's sandbox reaches it) and serves from its
own event loop; and stdio through ``opeval-mcp``, a small relay on the sandbox's PATH
(:mod:`opeval.agents._mcp_relay`) that carries newline-delimited JSON-RPC between its stdin
and stdout and that HTTP endpoint.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

import opeval
from opeval.agents._protocol import AgentResult, AgentTools, BudgetExhausted
from opeval.agents._tools import TOOLS, ShellArgs, ToolArgumentError, parse_call

#: Where the endpoint answers (``http://127.0.0.1:PORT/mcp``).
MCP_PATH = "/mcp"
#: The server's name, as the agent's MCP configuration names it.
SERVER_NAME = "opeval"


def _arguments_text(arguments: dict[str, Any] | None) -> str:
    return json.dumps(arguments if arguments is not None else {})


#: Refused tool calls stored per trial at least (see ToolServer._refuse).
MAX_RECORDED_REFUSALS = 100


class ToolServer:
    """The MCP server of one trial's tools. :attr:`result` is set (and :attr:`ended` fires)
    when the agent calls ``done`` or a budget ends it."""

    def __init__(self, tools: AgentTools) -> None:
        from mcp.server.lowlevel import Server

        self.tools = tools
        self.result: AgentResult | None = None
        self.failure: Exception | None = None  # the harness's own error during a call: the trial's to raise
        self.refused = 0  # tool calls refused so far (bounded by the step budget)
        self.ended = anyio.Event()
        self._one_at_a_time = anyio.Lock()  # calls run in order, as the built-in loop runs them
        self.server: Any = Server(SERVER_NAME, version=opeval.__version__,
                                  instructions="The on-call operator's tools for this incident.",
                                  on_list_tools=self._list_tools, on_call_tool=self._call_tool)

    def end(self, result: AgentResult) -> None:
        """The agent has finished (the first reason wins)."""
        if self.result is None:
            self.result = result
            self.ended.set()

    @staticmethod
    def tool_list() -> Any:
        """The tools as MCP lists them."""
        import mcp.types as types

        return types.ListToolsResult(tools=[types.Tool(name=t.name, description=t.description,
                                                       input_schema=t.schema()) for t in TOOLS.values()])

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        return self.tool_list()

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        return await self.call(params.name, params.arguments)

    async def call(self, name: str, arguments: dict[str, Any] | None) -> Any:
        """Run one tool call and record it; the answer is an MCP ``CallToolResult``."""
        async with self._one_at_a_time:
            if self.result is not None:  # a call after the end (made before its process was stopped)
                error = f"the agent has finished ({self.result.reason}): no more tool calls"
                return self._refuse(name, arguments, error)
            try:
                args = parse_call(name, arguments)
            except ToolArgumentError as e:
                return self._refuse(name, arguments, str(e))
            if isinstance(args, ShellArgs):
                try:
                    r = await self.tools.shell(args.command)
                except BudgetExhausted as e:
                    self.end(AgentResult(e.reason, str(e)))
                    return _answer(f"{e}: the harness has stopped the agent", error=True)
                except Exception as e:  # the harness's own failure: it ends the trial, not a tool error
                    self.failure = e
                    self.end(AgentResult("error", f"the harness failed during a tool call: {e}"))
                    return _answer("the harness failed; the trial ends", error=True)
                return _answer(r.as_text(), error=r.exit_code != 0)
            self.end(AgentResult("done", args.summary, args.resolved))
            return _answer("acknowledged", error=False)

    def _refuse(self, name: str, arguments: dict[str, Any] | None, error: str) -> Any:
        """A refused call: recorded (a step). As many refusals as the step budget end the
        agent; past :data:`MAX_RECORDED_REFUSALS` (or ten times the budget, if more) they are
        answered but no longer stored, so a looping agent cannot fill the log."""
        self.refused += 1
        if self.refused <= max(MAX_RECORDED_REFUSALS, 10 * self.tools.max_steps):
            self.tools.tool_error(name, _arguments_text(arguments), error)
        if self.refused >= self.tools.max_steps and self.result is None:
            self.end(AgentResult("max_steps", f"{self.refused} refused tool calls: as many as the step budget "
                                 f"({self.tools.max_steps})"))
        return _answer(error, error=True)

    def http_app(self) -> Any:
        """The streamable HTTP endpoint (stateless, JSON answers) as an ASGI app."""
        return self.server.streamable_http_app(streamable_http_path=MCP_PATH, json_response=True,
                                               stateless_http=True, host="127.0.0.1")

    @contextlib.asynccontextmanager
    async def serving(self, sock: socket.socket) -> AsyncIterator[str]:
        """Serve the HTTP endpoint on ``sock`` (bound and listening) while the block runs;
        yields its URL. Leaving the block stops it, in-flight calls included."""
        import uvicorn

        class _Embedded(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:  # the harness handles its own signals
                yield

        config = uvicorn.Config(self.http_app(), log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=1)
        server = _Embedded(config)
        host, port = sock.getsockname()[:2]
        stopped = anyio.Event()
        # Shielded: a trial's cancellation stops it through uvicorn's own shutdown, below.
        shield = anyio.CancelScope(shield=True)

        async def serve() -> None:
            try:
                with shield:
                    await server.serve([sock])
            finally:
                stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            try:  # from here on, leaving (a cancelled trial too) stops the server
                while not server.started:
                    if stopped.is_set():
                        raise RuntimeError("the MCP endpoint did not start")
                    await anyio.sleep(0.01)
                yield f"http://{host}:{port}{MCP_PATH}"
            finally:
                server.should_exit = True  # uvicorn's own shutdown: in-flight calls get a second
                with anyio.move_on_after(5, shield=True):
                    await stopped.wait()
                shield.cancel()


def _answer(text: str, *, error: bool) -> Any:
    import mcp.types as types

    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error)


def client_config(url: str, *, stdio_relay: str | None = None) -> dict[str, Any]:
    """An MCP client configuration naming the trial's server as ``opeval`` (Claude Code's
    ``mcpServers`` shape): over streamable HTTP at ``url``, or, given ``stdio_relay`` (the
    relay's path), as a stdio server for clients that only spawn those."""
    if stdio_relay is not None:
        return {"mcpServers": {SERVER_NAME: {"type": "stdio", "command": stdio_relay, "args": [url]}}}
    return {"mcpServers": {SERVER_NAME: {"type": "http", "url": url}}}
