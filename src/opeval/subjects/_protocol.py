"""What a subject is: the distributed system under test, and its health rules."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import httpx

from opeval.events import ClusterState, MemberEndpoint
from opeval.runtimes import MemberSpec, Runtime


class KeyValueClient(Protocol):
    """The client a workload drives: acknowledged writes and reads by key."""

    async def put(self, key: str, value: str) -> None:
        """Write; returning means the subject acknowledged it."""
        ...

    async def get(self, key: str) -> str | None:
        """Linearizable read; None if the key does not exist."""
        ...

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` with its value."""
        ...


class Subject(Protocol):
    """A distributed system opeval can start, observe and judge.

    The subject is the one place that knows its own health rules: what a snapshot holds
    and when the cluster counts as recovered.
    """

    name: str
    default_members: int

    def member_names(self, count: int) -> list[str]:
        """Names of a ``count``-member cluster, in order."""
        ...

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        """Allocate addresses and build each member's command line (``peer_fronts``: members
        reach each other through the fault proxy at :attr:`peer_routes`)."""
        ...

    @property
    def peer_routes(self) -> dict[str, tuple[int, int]]:
        """Member -> (proxy front port, real peer port) when planned with ``peer_fronts``."""
        ...

    @property
    def endpoints(self) -> list[MemberEndpoint]:
        """Where each planned member listens."""
        ...

    def endpoint(self, name: str) -> MemberEndpoint:
        """One member's endpoint."""
        ...

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """A snapshot of every member, with short timeouts."""
        ...

    def recovery_unmet(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Which recovery criteria ``now`` fails (empty: all met), judged against ``baseline``."""
        ...

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        """Write then read back through different members; an error message or None."""
        ...

    def operator_tools(self, bin_dir: Path) -> dict[str, str]:
        """Put the subject's operator CLIs in ``bin_dir``; return the environment they need."""
        ...

    def client(self, http: httpx.AsyncClient) -> KeyValueClient:
        """A client over every member, failing over as a real client would."""
        ...
