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
        for host in sorted({h for h, _ in forwards if not _loopback_host(h)}):
            # A member with an address of its own (a container): the same address, on this
            # namespace's loopback, so what the cluster advertises works as it is. The child
            # process runs in this thread's namespace.
            r = subprocess.run(["ip", "addr", "add", f"{host}/32", "dev", "lo"], capture_output=True, text=True,
                               check=False)
            if r.returncode != 0:
                raise OSError(f"ip addr add {host}: {r.stderr.strip()}")
        listeners = []
        for host, port in forwards:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)
            sock.setblocking(False)
            listeners.append(sock)
        out["listeners"] = listeners
        out["fd"] = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        out["error"] = e


class OperatorNetwork:
    """One trial's agent network: loopback only, plus ``forwards`` (host, port) pairs that
    reach the same address on the host. Use as ``async with OperatorNetwork(...).serving()``."""

    def __init__(self, forwards: list[tuple[str, int]]) -> None:
        for host, _ in forwards:
            try:
                socket.inet_aton(host)
            except OSError:
                raise EnvironmentProblem(f"cannot forward {host} into the agent's network: an IPv4 address "
                                         "is needed") from None
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
            listeners = [await SocketListener.from_socket(s) for s in socks]
            async with anyio.create_task_group() as tg:
                for listener, (host, port) in zip(listeners, self.forwards, strict=True):
                    tg.start_soon(listener.serve, lambda c, h=host, p=port: self._forward(c, h, p), tg)
                try:
                    yield self
                finally:
                    tg.cancel_scope.cancel()
            for listener in listeners:
                await listener.aclose()
        finally:
            for s in socks:
                s.close()
            os.close(self.fd)
            self.fd = None
