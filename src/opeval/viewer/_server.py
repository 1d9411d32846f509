"""Serving the viewer with uvicorn on a socket we bind ourselves (so ``--port 0`` can
say which port it got, and a port in use is one clear sentence)."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from pathlib import Path

import uvicorn

from opeval.errors import EnvironmentProblem, UsageError
from opeval.store import StoreLocation
from opeval.viewer._app import create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port} is not a TCP port (0 to 65535; 0 picks a free one)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UsageError(f"cannot resolve --host {host!r}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise EnvironmentProblem(
                f"port {port} on {host} is in use: pass another --port (0 picks a free one)") from None
        if e.errno == errno.EACCES:
            raise EnvironmentProblem(f"not allowed to listen on {host}:{port}: pick a port above 1023") from None
        raise EnvironmentProblem(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://host:port/`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def is_loopback(host: str) -> bool:
    """True if ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(store_path: StoreLocation, sock: socket.socket, *, on_ready: Callable[[str], None] | None = None,
          token: str | None = None) -> None:
    """Serve the viewer of ``store_path`` on ``sock`` until interrupted (Ctrl-C, SIGTERM);
    with ``token``, locked."""
    app = create_app(store_path, token=token)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(url_of(sock))
    server.run(sockets=[sock])
