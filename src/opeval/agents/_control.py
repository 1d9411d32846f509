"""The harness side of ``nodectl``: requests over a Unix socket, acted out on the runtime."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from anyio.abc import SocketStream

from opeval.runtimes import Runtime


#: Requests served at once; more are closed unanswered (a flood must not exhaust the harness).
MAX_CONNECTIONS = 32


class NodeControl:
    """Serves nodectl for one trial, acting on its members as a supervisor would."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._slots = anyio.Semaphore(MAX_CONNECTIONS)

    async def execute(self, op: str, member: str | None, lines: int = 40) -> tuple[int, str]:
        """Carry out one request; return ``(exit code, output)``."""
        rt = self.runtime
        names = rt.members()
        if member is not None and member not in names:
            return 1, f"nodectl: no member {member!r} (members: {', '.join(names)})"
        if op == "status":
            rows = [f"{'MEMBER':<10} {'STATE':<20} {'PID':>8} {'RESTARTS':>8}"]
            for n in [member] if member else names:
                pid = rt.pid(n)
                rows.append(f"{n:<10} {rt.state(n):<20} {pid if pid else '-':>8} {rt.restarts(n):>8}")
            return 0, "\n".join(rows)
        assert member is not None
        if op == "logs":
            return 0, rt.log_tail(member, max(1, min(lines, 500)))
        if op == "start":
            if rt.is_running(member):
                return 0, f"{member} is already running (pid {rt.pid(member)})"
            pid = await rt.start_member(rt.spec(member), reason="nodectl start")
            return 0, f"started {member} (pid {pid})"
        if op == "stop":
            await rt.stop_member(member)
            return 0, f"stopped {member}"
        if op == "restart":
            await rt.stop_member(member)
            pid = await rt.start_member(rt.spec(member), reason="nodectl restart")
            return 0, f"restarted {member} (pid {pid})"
        return 2, f"nodectl: unknown operation {op!r}"

    async def _handle(self, stream: SocketStream) -> None:
        if self._slots.value == 0:
            await stream.aclose()
            return
        async with stream, self._slots:
            data = b""
            with anyio.move_on_after(10):
                while not data.endswith(b"\n") and len(data) < 65536:  # a request is one short line
                    chunk = await stream.receive(65536)
                    if not chunk:
                        break
                    data += chunk
            try:
                req = json.loads(data)
                code, output = await self.execute(req["op"], req.get("member"), int(req.get("lines", 40)))
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                code, output = 2, f"nodectl: bad request ({e})"
            except Exception as e:  # noqa: BLE001 - whatever the agent asks, the harness carries on
                code, output = 1, f"nodectl: {req.get('op')} failed ({e})"
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await stream.send(json.dumps({"code": code, "output": output}).encode())

    @asynccontextmanager
    async def serving(self, path: Path) -> AsyncIterator[Path]:
        """Listen on ``path`` while the block runs."""
        listener = await anyio.create_unix_listener(path)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._handle)
            try:
                yield path
            finally:
                tg.cancel_scope.cancel()
