"""The agent's network: a namespace of its own with only loopback, and the trial's member
endpoints forwarded into it by the harness at the addresses the cluster advertises.

Members on loopback are forwarded at their loopback address; a member with an address of
its own (a container's) gets that address on the namespace's loopback. The namespace is
made by a short-lived thread of the harness (``unshare(CLONE_NEWNET)``
changes only the calling thread), which binds the listening sockets inside it and opens
a handle on it, then exits. The harness's event loop accepts on those sockets and dials
the real endpoints from the host's namespace. Nothing runs in the namespace but the
agent's commands, and it ends with the harness's handle and sockets: a killed harness
leaves no proxy, route or firewall rule behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import subprocess
import threading
from collections.abc import AsyncIterator

import anyio
from anyio.abc import SocketListener, SocketStream

from opeval.errors import EnvironmentProblem

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
#: Connections the agent may hold open at once through the forwards (the rest are refused).
MAX_CONNECTIONS = 128


def _loopback_host(host: str) -> bool:
    try:
        return socket.inet_aton(host)[0] == 127
    except OSError:
        return False


def _add_addresses(hosts: list[str]) -> None:
    """A member with an address of its own (a container): the same address, on this
    namespace's loopback, so what the cluster advertises works as it is. The child process
    runs in the calling thread's namespace."""
    for host in sorted({h for h in hosts if not _loopback_host(h)}):
        r = subprocess.run(["ip", "addr", "add", f"{host}/32", "dev", "lo"], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0 and "File exists" not in r.stderr:
            raise OSError(f"ip addr add {host}: {r.stderr.strip()}")


def _listen(addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets in the calling thread's namespace (port 0: any free one)."""
    listeners = []
    try:
        for host, port in addresses:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listeners.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
    except OSError:
        for sock in listeners:
            sock.close()
        raise
    return listeners


def _make_namespace(forwards: list[tuple[str, int]], out: dict[str, object]) -> None:
    """Runs in its own thread: a new network namespace, lo up, the listeners, a handle."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            flags = struct.unpack("16sH", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH", b"lo", 0))[:18])[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | _IFF_UP))
        _add_addresses([h for h, _ in forwards])
        out["listeners"] = _listen(forwards)
        out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        out["error"] = e


def _listen_in(fd: int, addresses: list[tuple[str, int]], out: dict[str, object]) -> None:
    """Runs in its own thread: enter the namespace ``fd`` and listen there."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        _add_addresses([h for h, _ in addresses])
        out["listeners"] = _listen(addresses)
    except OSError as e:
        out["error"] = e


def _require_ipv4(addresses: list[tuple[str, int]], doing: str) -> None:
    """Each host an IPv4 address, or an EnvironmentProblem: "cannot <doing> the agent's network"."""
    for host, _ in addresses:
        try:
            socket.inet_aton(host)
        except OSError:
            raise EnvironmentProblem(f"cannot {doing.format(host)} the agent's network: an IPv4 address "
                                     "is needed") from None


class OperatorNetwork:
    """One trial's agent network: loopback only, plus ``forwards`` (host, port) pairs that
    reach the same address on the host. Use as ``async with OperatorNetwork(...).serving()``."""

    def __init__(self, forwards: list[tuple[str, int]]) -> None:
        _require_ipv4(forwards, "forward {} into")
        self.forwards = list(forwards)
        self.fd: int | None = None
        self._slots = anyio.Semaphore(MAX_CONNECTIONS)

    @property
    def path(self) -> str:
        """The namespace as a path a child process can enter (it must inherit :attr:`fd`)."""
        assert self.fd is not None, "the network is not serving"
        return f"/proc/self/fd/{self.fd}"

    async def _relay(self, src: SocketStream, dst: SocketStream) -> None:
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            async for chunk in src:
                await dst.send(chunk)
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await dst.send_eof()

    async def _forward(self, client: SocketStream, host: str, port: int) -> None:
        async with client:
            if self._slots.value == 0:
                return  # too many at once: refused, the harness's descriptors are not the agent's to spend
            async with self._slots:
                try:
                    with anyio.fail_after(5):
                        upstream = await anyio.connect_tcp(host, port)
                except (OSError, TimeoutError):
                    return  # the member is down: the agent sees the connection closed, as it would
                async with upstream, anyio.create_task_group() as tg:
                    tg.start_soon(self._relay, client, upstream)
                    tg.start_soon(self._relay, upstream, client)

    async def listen(self, addresses: list[tuple[str, int]]) -> list[socket.socket]:
        """Listening sockets inside the namespace (``port`` 0: any free one), for the harness
        to serve: only the agent's commands reach them. The caller closes them."""
        assert self.fd is not None, "the network is not serving"
        _require_ipv4(addresses, "listen on {} in")
        out: dict[str, object] = {}
        # A thread of its own, never a pool thread: it leaves the harness's namespace for good.
        t = threading.Thread(target=_listen_in, args=(self.fd, addresses, out), name="opeval-netns-listen")
        t.start()
        await anyio.to_thread.run_sync(t.join)
        if "error" in out:
            raise EnvironmentProblem(f"cannot listen in the agent's network ({out['error']})")
        return out["listeners"]  # type: ignore[return-value]

    @contextlib.asynccontextmanager
    async def forwarding(self, forwards: list[tuple[str, int]]) -> AsyncIterator[None]:
        """More endpoints (``host``, ``port``) forwarded into the namespace while the block runs
        (a model server an agent process calls, say)."""
        _require_ipv4(forwards, "forward {} into")
        socks = await self.listen(forwards)
        try:
            async with self._forwarding(socks, forwards):
                yield
        finally:
            for s in socks:
                s.close()

    @contextlib.asynccontextmanager
    async def _forwarding(self, socks: list[socket.socket], forwards: list[tuple[str, int]]) -> AsyncIterator[None]:
        listeners = [await SocketListener.from_socket(s) for s in socks]
        try:
            async with anyio.create_task_group() as tg:
                for listener, (host, port) in zip(listeners, forwards, strict=True):
                    tg.start_soon(listener.serve, lambda c, h=host, p=port: self._forward(c, h, p), tg)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
        finally:
            for listener in listeners:
                await listener.aclose()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[OperatorNetwork]:
        """Make the namespace, forward while the block runs, then drop every handle on it."""
        out: dict[str, object] = {}
        # A thread of its own, never a pool thread: its namespace must not be reused.
        t = threading.Thread(target=_make_namespace, args=(self.forwards, out), name="opeval-netns")
        t.start()
        await anyio.to_thread.run_sync(t.join)
        if "error" in out:
            raise EnvironmentProblem(f"cannot make the agent's network namespace ({out['error']}): the sandbox "
                                     "needs root; run as root or pass --sandbox none")
        socks: list[socket.socket] = out["listeners"]  # type: ignore[assignment]
        self.fd = out["fd"]  # type: ignore[assignment]
        try:
            async with self._forwarding(socks, self.forwards):
                yield self
        finally:
            for s in socks:
                s.close()
            os.close(self.fd)  # type: ignore[arg-type]
            self.fd = None
