"""Fast, deterministic stand-ins: a runtime whose members are records, not processes, and
a subject that reads them. Together they run whole trials in a second, with no cluster,
so the runner, the monitor and the workload can be tested for their own logic.

They honour the real contracts (the contract suites run against them too): a killed
member exits and its supervisor restarts it by the restart policy; a paused one answers
nothing; the cluster serves writes while a majority of members runs.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from opeval.errors import UsageError
from opeval.events import ClusterState, MemberEndpoint, MemberState
from opeval.runtimes import ContainerDefinition, Journal, MemberEvent, MemberSpec, PortLease, RestartPolicy, Runtime, supervisor_state
from opeval.subjects import SubjectBase
from opeval.workload import KeyValueWorkload, WorkloadWindow

# Far above any kernel's pid_max, so a fake pid never names a real process.
_PIDS = itertools.count(50_000_000)


@dataclass
class _FakeMember:
    spec: MemberSpec
    pid: int | None = None
    paused: bool = False
    wanted: bool = True
    restarts: int = 0
    last_exit: int | None = None
    log: list[str] = field(default_factory=list)


class FakeRuntime:
    """A runtime of records: ``start_member`` makes a member "run" at a fake pid.

    Signals act as on a process: SIGKILL/SIGTERM end it (and the supervisor restarts it
    with backoff under ``on-failure``), SIGSTOP pauses and SIGCONT resumes it. Ports are
    really reserved (so a fake member's port refuses connections, as a dead one's would),
    and the workspace and journal are created and released as a real runtime's are.
    """

    name = "fake"
    host = "127.0.0.1"

    def __init__(self, *, trial_id: str, workspace: Path, journal: Journal, restart_policy: RestartPolicy,
                 on_event: Callable[[MemberEvent], Any] = lambda e: None) -> None:
        self.trial_id = trial_id
        self.workspace = workspace
        self.journal = journal
        self.policy = restart_policy
        self.on_event = on_event
        self.ports = PortLease(self.host)
        self.mounts: list[Path] = []
        self._members: dict[str, _FakeMember] = {}
        self._tg: TaskGroup | None = None

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[FakeRuntime]:
        """Own the members while the block runs; leaving it stops them and releases everything."""
        self.journal.set_workspace(self.workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    yield self
                finally:
                    for m in self._members.values():
                        m.wanted = False
                        if m.pid is not None:
                            self._exit(m, -signal.SIGTERM)
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            self.ports.release()
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.journal.close()

    @staticmethod
    def preflight(subject: str, definition: ContainerDefinition | None) -> None:
        """Anything goes."""

    def prepare(self, subject: str, definition: ContainerDefinition | None) -> None:
        """Nothing to prepare."""

    def address(self, member: str) -> str:
        """Loopback, for every member."""
        return self.host

    def mount_capped(self, path: Path, size_bytes: int) -> None:
        """Recorded, not mounted (no filesystem is capped)."""
        self.mounts.append(path)

    def allocate_ports(self, count: int) -> list[int]:
        """Really reserved ports, never listened on."""
        return self.ports.take(count)

    def member_dir(self, name: str) -> Path:
        """``<workspace>/members/<name>``, created."""
        path = self.workspace / "members" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def start_member(self, spec: MemberSpec, *, reason: str = "initial") -> int:
        """Run the member at a new fake pid (a running one is left as it is)."""
        m = self._members.setdefault(spec.name, _FakeMember(spec))
        m.spec, m.wanted = spec, True
        if m.pid is not None:
            return m.pid
        m.pid, m.paused = next(_PIDS), False
        m.log.append(f"started ({reason})")
        self.on_event(MemberEvent(member=spec.name, kind="started", pid=m.pid, restarts=m.restarts, reason=reason))
        return m.pid

    def _exit(self, m: _FakeMember, rc: int) -> None:
        pid, m.pid, m.paused, m.last_exit = m.pid or 0, None, False, rc
        m.log.append(f"exited ({rc})")
        self.on_event(MemberEvent(member=m.spec.name, kind="exited", pid=pid, exit_code=rc if rc >= 0 else None,
                                  signal=-rc if rc < 0 else None))
        if m.wanted and self.policy.restarts_after(rc) and self._tg is not None:
            self._tg.start_soon(self._restart, m)

    async def _restart(self, m: _FakeMember) -> None:
        delay = min(self.policy.backoff_initial_s * 2 ** m.restarts, self.policy.backoff_max_s)
        await anyio.sleep(delay)
        if m.wanted and m.pid is None:
            m.restarts += 1
            await self.start_member(m.spec, reason=f"restart {m.restarts} by the supervisor")

    async def stop_member(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop on purpose: not restarted."""
        m = self._member(name)
        m.wanted = False
        if m.pid is not None:
            self._exit(m, 0)

    def signal_member(self, name: str, sig: int) -> int:
        """Act out ``sig`` on the member; return its pid."""
        m = self._member(name)
        if m.pid is None:
            raise UsageError(f"{name} is not running")
        pid = m.pid
        if sig == signal.SIGSTOP:
            m.paused = True
        elif sig == signal.SIGCONT:
            m.paused = False
        elif sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            self._exit(m, -sig)
        return pid

    def _member(self, name: str) -> _FakeMember:
        try:
            return self._members[name]
        except KeyError:
            raise UsageError(f"no member {name!r}") from None

    def is_running(self, name: str) -> bool:
        """Is the member "alive" (paused counts: a stopped process lives)?"""
        return name in self._members and self._members[name].pid is not None

    def is_paused(self, name: str) -> bool:
        """Was it SIGSTOPped and not yet continued?"""
        return self.is_running(name) and self._members[name].paused

    def pid(self, name: str) -> int | None:
        """Its fake pid while it runs."""
        return self._members[name].pid if name in self._members else None

    def last_exit(self, name: str) -> int | None:
        """Its last exit code (negative: the signal)."""
        return self._member(name).last_exit

    def state(self, name: str) -> str:
        """What ``nodectl status`` shows, in the local runtime's words."""
        m = self._member(name)
        return supervisor_state(running=m.pid is not None, paused=m.paused, wanted=m.wanted, last_exit=m.last_exit)

    def members(self) -> list[str]:
        """Every member, in start order."""
        return list(self._members)

    def spec(self, name: str) -> MemberSpec:
        """How the member is "run"."""
        return self._member(name).spec

    def restarts(self, name: str) -> int:
        """Restarts by the supervisor."""
        return self._member(name).restarts

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The member's starts and exits."""
        return "\n".join(self._member(name).log[-lines:])


class _FakeStore:
    """The fake cluster's data: served while a majority of members answers."""

    def __init__(self, subject: FakeSubject) -> None:
        self.subject = subject
        self.data: dict[str, str] = {}

    def _check(self) -> None:
        if not self.subject.has_quorum():
            raise ConnectionError("no quorum: a majority of members does not answer")

    async def put(self, key: str, value: str) -> None:
        self._check()
        self.data[key] = value

    async def get(self, key: str) -> str | None:
        self._check()
        return self.data.get(key)

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        self._check()
        return {k: v for k, v in self.data.items() if k.startswith(prefix)}


class FakeSubject(SubjectBase):
    """A cluster that lives in a :class:`FakeRuntime`: a member answers while its record runs
    unpaused; the first answering member leads while a majority answers."""

    name = "fake"
    default_members = 3
    chaos_kinds = ("node_kill", "pause", "quorum_loss")

    def __init__(self) -> None:
        super().__init__()
        self.runtime: Runtime | None = None
        self.store = _FakeStore(self)
        self._names: list[str] = []

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        """One reserved port per member; the "command line" only names it."""
        self.runtime = runtime
        self._names = self.member_names(count)
        ports = runtime.allocate_ports(len(self._names))
        self._endpoints = [MemberEndpoint(name=n, client_url=f"http://{runtime.host}:{p}", peer_url="")
                           for n, p in zip(self._names, ports, strict=True)]
        specs = []
        for n in self._names:
            d = runtime.member_dir(n)
            specs.append(MemberSpec(name=n, argv=["fake-member", n], env={}, cwd=str(d),
                                    log_path=str(d / "member.log"), data_dir=str(d / "data")))
        return specs

    def _answering(self) -> list[str]:
        rt = self.runtime
        if rt is None:
            return []
        return [n for n in self._names if rt.is_running(n) and not rt.is_paused(n)]

    def has_quorum(self) -> bool:
        """Does a majority of the members answer?"""
        return len(self._answering()) > len(self._names) // 2

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Answering members are reachable; they are healthy while a majority answers."""
        answering, quorum = self._answering(), self.has_quorum()
        leader = answering[0] if quorum and answering else None
        members = [MemberState(name=n, process_up=running.get(n, False), reachable=n in answering,
                               healthy=n in answering and quorum,
                               role=("leader" if n == leader else "follower") if n in answering else None,
                               error=None if n in answering and quorum else "no quorum" if n in answering else None)
                   for n in self._names]
        return ClusterState(members=members, leader=leader, healthy=sum(m.healthy for m in members),
                            expected=len(members))

    def symptoms(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """The shared member symptoms, and no leader."""
        return super().symptoms(baseline, now) + ([] if now.leader else ["no leader"])

    def recovery_unmet(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Every member of the baseline healthy again, with a leader."""
        by_name = {m.name: m for m in now.members}
        unmet = [f"{m.name} unhealthy" for m in baseline.members
                 if m.name not in by_name or not by_name[m.name].healthy]
        return unmet + ([] if now.leader else ["no leader"])

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        """A write and a read of the fake store."""
        try:
            await self.store.put("opeval/probe", "1")
            return None if await self.store.get("opeval/probe") == "1" else "probe read back something else"
        except ConnectionError as e:
            return f"probe failed: {e}"

    async def answers(self, http: httpx.AsyncClient, member: str, timeout_s: float) -> bool:
        """Running and not paused."""
        return member in self._answering()

    async def timed_write(self, http: httpx.AsyncClient, member: str) -> float | None:
        """Writes take no time here (None without quorum)."""
        return 0.0 if self.has_quorum() else None

    def workload(self, http: httpx.AsyncClient, *, rate_hz: float, clock: Callable[[], float], seed: int,
                 on_sample: Callable[[WorkloadWindow, float], Any]) -> KeyValueWorkload:
        """The key-value workload over the fake store."""
        return KeyValueWorkload(self.store, rate_hz=rate_hz, clock=clock, seed=seed, on_sample=on_sample)

    def operator_guide(self) -> str:
        """The page's words."""
        return "This cluster has no tools of its own; use nodectl."
