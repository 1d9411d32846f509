"""Running commands in a real isolated sandbox, without a cluster."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from opeval.sandbox import CommandResult, operator_sandbox


@contextmanager
def tcp_server(reply: bytes = b"hello\n") -> Iterator[tuple[int, list[int]]]:
    """A loopback server on a free port that answers every connection with ``reply``;
    yields the port and the list of connections it accepted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            accepted.append(1)
            with conn:
                conn.sendall(reply)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], accepted
    finally:
        stop.set()
        t.join()
        srv.close()


def run_isolated(root: Path, commands: list[str], *, forwards: list[str] = (), timeout_s: float = 20.0,  # type: ignore[assignment]
                 secrets: list[Path] = (), label: str = "b" * 32) -> list[CommandResult]:  # type: ignore[assignment]
    """Run ``commands`` one after another in one trial's isolated sandbox rooted at ``root``."""

    async def main() -> list[CommandResult]:
        root.mkdir(parents=True, exist_ok=True)
        sock = root / "ctl.sock"
        member = root / "etcd-1"
        (member / "data").mkdir(parents=True, exist_ok=True)
        (member / "member.log").write_text("member log line\n")
        listener = await anyio.create_unix_listener(sock)
        out = []
        async with listener, operator_sandbox(
            mechanism="bubblewrap", root=root / "operator", trial_id=label, tool_env={}, control_socket=sock,
            allowed_tools=None, client_urls=list(forwards), member_dirs={"etcd-1": member}, mount_capped=None,
            secrets=list(secrets),
        ) as sb:
            for c in commands:
                out.append(await sb.run(c, timeout_s=timeout_s, output_cap=1 << 20, clock=lambda: 0.0))
        return out

    return anyio.run(main)
