"""What a subject is: the distributed system under test, and everything that knows it.

A subject owns its shape (members, addresses, command lines), its state model and
health rules (what an operator would see as wrong, when it counts as recovered), its
client workload and that workload's safety check, the operator tools and the page's
words about them, its runbook, how its tools' commands are classified, and which chaos
kinds it supports. The runner, the monitor and the chaos kinds call only what is
declared here (and in the small capability protocols below, for faults that need them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import httpx

from opeval.commands import CommandRule
from opeval.events import ClusterState, MemberEndpoint, Scalar
from opeval.runtimes import ContainerDefinition, MemberSpec, Runtime
from opeval.workload import Workload, WorkloadWindow

if TYPE_CHECKING:
    from opeval.agents import AgentResult, AgentTools, Incident



@runtime_checkable
class Subject(Protocol):
    """A distributed system opeval can start, observe, load, break and judge."""

    name: str
    default_members: int
    #: The chaos kinds this subject supports (``none``, the no-fault control, always is).
    chaos_kinds: tuple[str, ...]
    #: The operator CLIs it puts on the agent's PATH (``nodectl`` is the harness's own).
    tools: tuple[str, ...]

    # --- shape ---------------------------------------------------------------------
    def member_names(self, count: int) -> list[str]:
        """Names of a cluster whose scalable tier has ``count`` members, in start order (a subject
        may add a fixed tier: the rate limiter's Redis and Sentinels); UsageError if the size is
        not allowed."""
        ...

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        """Allocate addresses and build each member's command line (``peer_fronts``: members
        reach each other through the fault proxy at :attr:`peer_routes`)."""
        ...

    @property
    def peer_routes(self) -> dict[str, tuple[int, str, int]]:
        """Member -> (proxy front port, real peer host, real peer port) when planned with
        ``peer_fronts`` (the fronts listen at the runtime's ``host``)."""
        ...

    @property
    def endpoints(self) -> list[MemberEndpoint]:
        """Where each planned member listens."""
        ...

    def endpoint(self, name: str) -> MemberEndpoint:
        """One member's endpoint."""
        ...

    def attach(self, endpoints: list[MemberEndpoint]) -> None:
        """Observe a cluster already running at ``endpoints`` (no plan needed)."""
        ...

    # --- observation and judgement --------------------------------------------------
    async def wait_healthy(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Return the first fully healthy state; EnvironmentProblem after the start timeout."""
        ...

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """A snapshot of every member, with short timeouts (a dead member must not stall it)."""
        ...

    def symptoms(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """What an operator would see as wrong in ``now`` (empty: nothing)."""
        ...

    def recovery_unmet(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Which recovery criteria ``now`` fails (empty: all met), judged against ``baseline``:
        the *same* cluster back, not a new one."""
        ...

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        """Use the system end to end once; an error message or None."""
        ...

    # --- what faults need -----------------------------------------------------------
    async def answers(self, http: httpx.AsyncClient, member: str, timeout_s: float) -> bool:
        """Does ``member`` answer its own health probe within ``timeout_s``?"""
        ...

    async def timed_write(self, http: httpx.AsyncClient, member: str) -> float | None:
        """Milliseconds one write through ``member`` took (None: it failed)."""
        ...

    def peer_sender(self, head: bytes) -> str | None:
        """The member that opened a peer connection, from its first bytes (for the fault
        proxy; None if unknown)."""
        ...

    # --- the workload ----------------------------------------------------------------
    def workload(self, http: httpx.AsyncClient, *, rate_hz: float, clock: Callable[[], float], seed: int,
                 on_sample: Callable[[WorkloadWindow, float], Any]) -> Workload:
        """Client traffic at ``rate_hz`` and its ledger of promises (see :mod:`opeval.workload`)."""
        ...

    # --- the operator's side ---------------------------------------------------------
    def container_definition(self) -> ContainerDefinition | None:
        """How its members run as containers (``subjects/<name>/compose.yaml`` and the files
        its image needs); None: only as local processes."""
        ...

    def operator_tools(self, bin_dir: Path) -> dict[str, str]:
        """Put the subject's operator CLIs in ``bin_dir``; return the environment they need."""
        ...

    def operator_guide(self) -> str:
        """What the page tells the agent about this system's tools (one or two sentences)."""
        ...

    async def runbook(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """The scripted on-call engineer's procedure for this system (the ``runbook`` agent)."""
        ...

    def command_rules(self) -> dict[str, CommandRule]:
        """How commands of this system's tools are classified: tool name -> rule."""
        ...


@runtime_checkable
class SpaceQuota(Protocol):
    """A subject whose storage has a quota that raises an alarm and refuses writes when
    exhausted (etcd's NOSPACE): what ``disk_pressure`` mode ``nospace`` needs."""

    quota_alarm: str  # the alarm's name in :attr:`MemberState.alarms` entries

    def with_quota(self, specs: list[MemberSpec], quota_bytes: int) -> list[MemberSpec]:
        """The members' specs, started with a storage quota of ``quota_bytes``."""
        ...

    async def fill_quota(self, http: httpx.AsyncClient) -> dict[str, Scalar]:
        """Write until the quota trips; say what was written."""
        ...

    async def clear_quota(self, http: httpx.AsyncClient, running: list[str]) -> str | None:
        """Free the space and disarm the alarm (idempotent); say what was done."""
        ...


#: A subject class: constructed with no arguments (its settings come from its definition).
SubjectFactory = Callable[[], Subject]


@runtime_checkable
class SharedStore(Protocol):
    """A subject whose nodes keep their shared state in a replicated store with a primary
    (the rate limiter's Redis): what the store faults (``write_pause``, ``store_cut``,
    ``store_latency``, ``memory_pressure``, ``traffic_burst``, ``config_drift``) need."""

    def store_clients(self) -> list[str]:
        """The members that use the store (the faults' targets: limiter nodes)."""
        ...

    def store_members(self) -> list[str]:
        """The store's own members (servers and their failover monitors)."""
        ...

    async def store_primary(self, http: httpx.AsyncClient) -> str | None:
        """The store member that is primary now (None: none agreed)."""
        ...

    async def store_command(self, member: str, *args: Scalar) -> Any:
        """Run one command on a store member (a Redis command, say) and return its reply."""
        ...

    async def admit(self, http: httpx.AsyncClient, member: str, key: str) -> bool | None:
        """One request on ``key`` through client ``member``: admitted, rejected, or None (no answer)."""
        ...

    def set_configured_limit(self, member: str, limit: int | None) -> int:
        """Write client ``member``'s configured limit (None: the subject's own); return the old one.
        It takes effect when the member next starts."""
        ...

    async def live_limit(self, http: httpx.AsyncClient, member: str) -> int | None:
        """The limit client ``member`` applies now (None: it does not answer)."""
        ...
