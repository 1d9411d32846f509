"""What a runtime is: where a subject's members run, and how they are restarted."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import msgspec

from opeval.errors import UsageError

if TYPE_CHECKING:
    from opeval.runtimes._journal import Journal


class MemberSpec(msgspec.Struct, kw_only=True):
    """How to run one member: its command line, environment and files."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: str
    data_dir: str = ""  # where the member keeps its data (disk faults fill it); empty: nowhere known


class MemberEvent(msgspec.Struct, kw_only=True):
    """A member's process started or exited (reported by the runtime's supervisor)."""

    member: str
    kind: Literal["started", "exited"]
    pid: int
    restarts: int = 0
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None


class RestartPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """``never``, or ``on-failure`` with exponential backoff (like systemd's Restart=)."""

    name: Literal["never", "on-failure"] = "on-failure"
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 5.0

    @classmethod
    def parse(cls, name: str) -> RestartPolicy:
        """The policy called ``name``, or a UsageError."""
        if name not in ("never", "on-failure"):
            raise UsageError(f"unknown restart policy {name!r}: choose never or on-failure")
        return cls(name=name)  # type: ignore[arg-type]

    def restarts_after(self, returncode: int) -> bool:
        """Does the supervisor restart a process that ended with ``returncode``?"""
        return self.name == "on-failure" and returncode != 0


class ContainerDefinition(msgspec.Struct, frozen=True, kw_only=True):
    """How a subject's members run as containers: a Compose file (its ``member`` service:
    the image, how to build it, container settings) and the files its build copies in."""

    compose: Path
    files: dict[str, Path] = msgspec.field(default_factory=dict)


def supervisor_state(*, running: bool, paused: bool, wanted: bool, last_exit: int | None) -> str:
    """A member's state in a supervisor's words, the same for every runtime (``nodectl status``
    shows it and runbooks read it): ``running``, ``paused (stopped)``, ``stopped`` (on
    purpose), ``starting``, ``exited (signal 9)`` or ``exited (code 1)``."""
    if running:
        return "paused (stopped)" if paused else "running"
    if not wanted:
        return "stopped"
    if last_exit is None:
        return "starting"
    return f"exited (signal {-last_exit})" if last_exit < 0 else f"exited (code {last_exit})"


@runtime_checkable
class Runtime(Protocol):
    """Where members run: :class:`~opeval.runtimes.LocalRuntime` (processes),
    :class:`~opeval.runtimes.DockerRuntime` (containers), or a plugin's.

    Made by a :class:`RuntimeFactory` for one trial. Inside :meth:`session` it starts,
    signals, stops and supervises members (reporting each start and exit through the
    factory's ``on_event``), and every resource it takes is journaled first, so that a
    later run or ``opeval cleanup`` can reap it if the harness is killed.
    """

    name: str
    host: str
    workspace: Path

    def session(self) -> contextlib.AbstractAsyncContextManager[Runtime]:
        """Own the members while the block runs; leaving it stops and releases everything."""
        ...

    def prepare(self, subject: str, definition: ContainerDefinition | None) -> None:
        """Before any member of ``subject`` starts (inside :meth:`session`): a container runtime
        finds or builds its image from ``definition`` (EnvironmentProblem if it cannot)."""
        ...

    def address(self, member: str) -> str:
        """The address ``member`` listens on, as the harness reaches it (its own, for containers)."""
        ...

    def mount_capped(self, path: Path, size_bytes: int) -> None:
        """A size-capped filesystem at ``path`` for the trial's lifetime (journaled)."""
        ...

    def allocate_ports(self, count: int) -> list[int]:
        """Ports reserved for this trial."""
        ...

    def member_dir(self, name: str) -> Path:
        """A directory owned by one member."""
        ...

    async def start_member(self, spec: MemberSpec, *, reason: str = "initial") -> int:
        """Start (or restart) a member under supervision."""
        ...

    async def stop_member(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop a member on purpose; it is not restarted."""
        ...

    def signal_member(self, name: str, sig: int) -> int:
        """Deliver a signal as a fault would; the supervisor treats the result as a failure."""
        ...

    def is_running(self, name: str) -> bool:
        """Is the member's process alive?"""
        ...

    def is_paused(self, name: str) -> bool:
        """Is the member's process alive but stopped (SIGSTOP, a frozen cgroup)?"""
        ...

    def pid(self, name: str) -> int | None:
        """The member's pid while it runs."""
        ...

    def last_exit(self, name: str) -> int | None:
        """Return code of the member's last exit."""
        ...

    def state(self, name: str) -> str:
        """``running``, ``stopped``, ``exited (...)``: what a supervisor would show."""
        ...

    def members(self) -> list[str]:
        """Every member, in start order."""
        ...

    def spec(self, name: str) -> MemberSpec:
        """How the member is run."""
        ...

    def restarts(self, name: str) -> int:
        """How many times the supervisor restarted it."""
        ...

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The end of the member's log."""
        ...


@runtime_checkable
class LinkCutter(Protocol):
    """A runtime that can cut links between members itself (the docker runtime: iptables in
    each member's network namespace); ``partition`` then needs no fault proxy."""

    def cut(self, groups: list[set[str]]) -> None:
        """Drop all traffic between members of different groups."""
        ...

    def heal(self) -> bool:
        """Restore every link (idempotent); True if any was cut."""
        ...


class RuntimeFactory(Protocol):
    """How the runner makes a runtime for one trial (a runtime class's constructor), and how it
    checks, before anything starts, that the runtime can run a subject (a class-level method)."""

    def preflight(self, subject: str, definition: ContainerDefinition | None) -> None:
        """Raise UsageError or EnvironmentProblem if members of ``subject`` cannot run here."""
        ...

    def __call__(self, *, trial_id: str, workspace: Path, journal: Journal, restart_policy: RestartPolicy,
                 on_event: Callable[[MemberEvent], Any]) -> Runtime:
        """A runtime owning ``workspace`` for trial ``trial_id``, journaling into ``journal``."""
        ...
