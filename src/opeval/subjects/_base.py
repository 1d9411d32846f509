"""Defaults a subject may inherit: endpoint bookkeeping, waiting for health, the shared
symptoms, and a runbook that restarts members that are down.

A subject class inherits :class:`SubjectBase` and writes what only it can know: ``plan``,
``observe``, ``recovery_unmet``, ``write_read_probe`` and ``workload`` (see
:class:`~opeval.subjects.Subject` for the whole contract). Everything here may be
overridden.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

from opeval.commands import CommandRule
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ClusterState, MemberEndpoint
from opeval.runtimes import ContainerDefinition
from opeval.workload import Words
from opeval.subjects._symptoms import member_symptoms

if TYPE_CHECKING:
    from opeval.agents import AgentResult, AgentTools, Incident


class SubjectBase:
    """Shared defaults of a :class:`~opeval.subjects.Subject`."""

    name = ""
    default_members = 3
    chaos_kinds: tuple[str, ...] = ("node_kill", "pause", "quorum_loss")
    tools: tuple[str, ...] = ()
    start_timeout_s = 30.0
    max_members = 9
    #: How its workload's counts and its leader read on screens (the key-value defaults).
    words = Words()

    def __init__(self) -> None:
        self._endpoints: list[MemberEndpoint] = []

    # --- shape ---------------------------------------------------------------------
    def member_names(self, count: int) -> list[str]:
        """``<name>-1`` ... ``<name>-N``, for 1 to :attr:`max_members` members."""
        if not 1 <= count <= self.max_members:
            raise UsageError(f"--members must be between 1 and {self.max_members} for {self.name}, not {count}")
        return [f"{self.name}-{i}" for i in range(1, count + 1)]

    @property
    def peer_routes(self) -> dict[str, tuple[int, str, int]]:
        """No fault proxy routes unless the subject plans them."""
        return {}

    @property
    def endpoints(self) -> list[MemberEndpoint]:
        """Where each planned member listens (set ``self._endpoints`` in ``plan``)."""
        return list(self._endpoints)

    def endpoint(self, name: str) -> MemberEndpoint:
        """One member's endpoint."""
        for e in self._endpoints:
            if e.name == name:
                return e
        raise UsageError(f"no {self.name} member {name!r}")

    def attach(self, endpoints: list[MemberEndpoint]) -> None:
        """Observe a cluster that is already running at ``endpoints``."""
        self._endpoints = list(endpoints)

    # --- observation -----------------------------------------------------------------
    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Every member's state (the subject writes this)."""
        raise NotImplementedError

    async def wait_healthy(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Poll :meth:`observe` until every member is healthy, for at most :attr:`start_timeout_s`."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            state = await self.observe(http, running)
            if state.healthy == state.expected:
                return state
            if time.monotonic() > deadline:
                bad = ", ".join(f"{m.name}: {m.error}" for m in state.members if not m.healthy)
                raise EnvironmentProblem(f"{self.name} not healthy after {self.start_timeout_s:.0f}s ({bad})")
            await anyio.sleep(0.05)

    def symptoms(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Members unreachable, unhealthy or raising alarms."""
        return member_symptoms(now)

    async def answers(self, http: httpx.AsyncClient, member: str, timeout_s: float) -> bool:
        """Is the member reachable in a fresh observation? (``timeout_s`` bounds it.)"""
        with anyio.move_on_after(timeout_s):
            state = await self.observe(http, {member: True})
            return any(m.name == member and m.reachable for m in state.members)
        return False

    async def timed_write(self, http: httpx.AsyncClient, member: str) -> float | None:
        """No write path through one member is known: None."""
        return None

    def peer_sender(self, head: bytes) -> str | None:
        """Peer traffic is not attributed (the subject supports no network faults)."""
        return None

    # --- the operator's side -------------------------------------------------------------
    def container_definition(self) -> ContainerDefinition | None:
        """None: members run only as local processes."""
        return None

    def operator_tools(self, bin_dir: Path) -> dict[str, str]:
        """No tools of its own (the agent still has ``nodectl``)."""
        bin_dir.mkdir(parents=True, exist_ok=True)
        return {}

    def operator_guide(self) -> str:
        """Nothing beyond the harness's ``nodectl``."""
        return ""

    async def runbook(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """Restart the members that are down (:func:`~opeval.agents.restart_down_members`)."""
        from opeval.agents import restart_down_members

        return await restart_down_members(incident, tools)

    def command_rules(self) -> dict[str, CommandRule]:
        """No tools, no rules."""
        return {}
