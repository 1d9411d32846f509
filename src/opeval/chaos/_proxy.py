"""The fault proxy: a TCP proxy in front of every member's peer port.

This kernel has no netem, so network faults between members are made here. Fronting
only the victim's port would not partition a member (an etcd member also dials out to
its peers), so every member's advertised peer address is the proxy, and each connection
is attributed to its sender by the subject, from the connection's first bytes
(``Subject.peer_sender``: etcd's peer traffic carries an ``X-Server-From`` header).
Then a link between two members can be cut (partition) or slowed (latency), in both
directions. The proxy lives in the harness process: nothing of it outlives a trial.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import SocketStream

_HEADER_LIMIT = 16 * 1024


@dataclass(eq=False)
class _Link:
    head: bytes  # the connection's first bytes, from which the subject names its sender
    dest: str
    sender: str | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class PeerProxy:
    """Forwards each member's peer traffic; cuts or delays links on request."""

    def __init__(self, host: str, routes: dict[str, tuple[int, str, int]],
                 identify: Callable[[bytes], str | None]) -> None:
        """``host``: where the fronts listen (where members reach the harness); ``routes``: member
        name -> (front port the cluster dials, the member's real peer host and port);
        ``identify``: the member that opened a connection, from its first bytes."""
        self.host = host
        self.routes = routes
        self.identify = identify
        self._cut: set[frozenset[str]] = set()
        self._delay: dict[str, float] = {}
        self._links: set[_Link] = set()
        self.refused = 0
        self.forwarded = 0

    # --- rules -----------------------------------------------------------------------
    def sender(self, link: _Link) -> str | None:
        """The member a connection comes from, once the subject can tell (asked again until then:
        a subject learns its members' ids only after they first answer)."""
        if link.sender is None:
            link.sender = self.identify(link.head)
        return link.sender

    def _is_cut(self, sender: str | None, dest: str) -> bool:
        if sender is None:  # unattributed traffic into a cut-off member is cut too
            return any(dest in pair for pair in self._cut)
        return frozenset((sender, dest)) in self._cut

    def partition(self, groups: list[set[str]]) -> None:
        """Cut every link between members of different groups, open connections included."""
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                self._cut.update(frozenset((x, y)) for x in a for y in b)
        for link in list(self._links):
            if self._is_cut(self.sender(link), link.dest):
                link.scope.cancel()

    def heal(self) -> bool:
        """Restore every cut link; True if there was one."""
        had = bool(self._cut)
        self._cut.clear()
        return had

    def add_latency(self, member: str, seconds: float) -> None:
        """Delay every byte to and from ``member`` by ``seconds`` (each direction)."""
        self._delay[member] = seconds

    def clear_latency(self, member: str) -> bool:
        """Remove ``member``'s delay; True if it had one."""
        return self._delay.pop(member, None) is not None

    def _delay_for(self, link: _Link) -> float:
        sender = self.sender(link)
        return max(self._delay.get(link.dest, 0.0), self._delay.get(sender or "", 0.0))

    # --- forwarding --------------------------------------------------------------------
    async def _pump(self, src: SocketStream, dst: SocketStream, link: _Link) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[float, bytes]](max_buffer_size=4096)

        async def read() -> None:
            async with send:
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    while True:
                        chunk = await src.receive(65536)
                        await send.send((anyio.current_time(), chunk))

        async def write() -> None:
            async with receive:
                async for arrived, chunk in receive:
                    delay = self._delay_for(link)
                    if delay:  # in order: each chunk leaves `delay` after it arrived
                        await anyio.sleep_until(arrived + delay)
                    await dst.send(chunk)

        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            tg.start_soon(write)

    async def _handle(self, dest: str, client: SocketStream) -> None:
        async with client:
            head = b""
            with anyio.move_on_after(2.0):
                # until the sender can be told (a header block ends, or the subject names it)
                while b"\r\n\r\n" not in head and len(head) < _HEADER_LIMIT and self.identify(head) is None:
                    try:
                        head += await client.receive(65536)
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        return
            link = _Link(head, dest)
            if self._is_cut(self.sender(link), dest):
                self.refused += 1
                return
            try:
                _, peer_host, peer_port = self.routes[dest]
                upstream = await anyio.connect_tcp(peer_host, peer_port)
            except OSError:
                return  # the member is down: the caller sees a refused peer, as it would directly
            self._links.add(link)
            self.forwarded += 1
            try:
                async with upstream:
                    with link.scope:
                        await upstream.send(head)
                        async with anyio.create_task_group() as tg:

                            async def both(a: SocketStream, b: SocketStream) -> None:
                                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                                    await self._pump(a, b, link)
                                tg.cancel_scope.cancel()  # one side closed: close the other

                            tg.start_soon(both, client, upstream)
                            tg.start_soon(both, upstream, client)
            finally:
                self._links.discard(link)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[PeerProxy]:
        """Listen on every front port while the block runs."""
        async with anyio.create_task_group() as tg:
            for name, (front, _, _) in self.routes.items():
                listener = await anyio.create_tcp_listener(local_host=self.host, local_port=front)

                async def serve(listener: anyio.abc.SocketListener = listener, name: str = name) -> None:
                    async with listener:
                        await listener.serve(lambda s: self._handle(name, s))

                tg.start_soon(serve)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
