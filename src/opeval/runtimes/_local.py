"""The local runtime: each member a process of this machine, in its own process group,
supervised with a restart policy as systemd or a container engine would."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup

from opeval.errors import UsageError
from opeval.runtimes._journal import TRIAL_ENV, Journal, mount_tmpfs, sweep_labelled, unmount
from opeval.runtimes._ports import PortLease
from opeval.runtimes._proc import process_state
from opeval.runtimes._protocol import ContainerDefinition, MemberEvent, MemberSpec, RestartPolicy, supervisor_state


@dataclass


class _Member:
    spec: MemberSpec
    proc: Process | None = None
    pid: int | None = None
    restarts: int = 0
    wanted: bool = True  # False once an operator or teardown stops it
    exited: anyio.Event = field(default_factory=anyio.Event)
    supervising: bool = False
    last_exit: int | None = None


class LocalRuntime:
    """Runs members as local processes. Use as ``async with LocalRuntime(...) as rt``."""

    name = "local"
    host = "127.0.0.1"

    def __init__(
        self,
        *,
        trial_id: str,
        workspace: Path,
        journal: Journal,
        restart_policy: RestartPolicy,
        on_event: Callable[[MemberEvent], Any] = lambda e: None,
    ) -> None:
        self.trial_id = trial_id
        self.workspace = workspace
        self.journal = journal
        self.policy = restart_policy
        self.on_event = on_event
        self.ports = PortLease(self.host)
        self._members: dict[str, _Member] = {}
        self._tg: TaskGroup | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[LocalRuntime]:
        """Own the trial's members for the duration of the ``async with`` block.

        Leaving it (normally, by an exception or by cancellation) stops every member and
        releases the ports, the workspace and the journal.
        """
        self.journal.set_workspace(self.workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    yield self
                finally:
                    with anyio.CancelScope(shield=True):
                        await self.teardown()
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The supervisors never fail on their own: a lone error is the caller's, unwrapped.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            sweep_labelled(self.trial_id)
            self.ports.release()
            for mount in reversed(self.journal.entry.mounts):  # never delete through a mount
                unmount(Path(mount))
            shutil.rmtree(self.workspace, ignore_errors=True)
            self.journal.close()


    @staticmethod
    def preflight(subject: str, definition: ContainerDefinition | None) -> None:
        """Any subject runs as local processes."""

    def prepare(self, subject: str, definition: ContainerDefinition | None) -> None:
        """Nothing to prepare: members are this machine's processes."""

    def address(self, member: str) -> str:
        """Every member listens on loopback."""
        return self.host

    def mount_capped(self, path: Path, size_bytes: int) -> None:
        """Put a tmpfs of ``size_bytes`` at ``path`` (journaled first; root only)."""
        mount_tmpfs(self.journal, path, size_bytes, self.trial_id)

    def allocate_ports(self, count: int) -> list[int]:
        """Ports no other trial on this machine will get until this one ends."""
        return self.ports.take(count)

    # --- members -----------------------------------------------------------------
    def member_dir(self, name: str) -> Path:
        """The member's own directory in the trial workspace."""
        path = self.workspace / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def start_member(self, spec: MemberSpec, *, reason: str = "initial") -> int:
        """Start ``spec`` under supervision; return its pid."""
        m = self._members.get(spec.name)
        if m is None:
            m = self._members[spec.name] = _Member(spec)
        if m.proc is not None and m.proc.returncode is None:
            return m.pid or 0
        m.wanted = True
        await self._spawn(m, reason)
        if not m.supervising:
            m.supervising = True
            assert self._tg is not None
            self._tg.start_soon(self._supervise, m)
        return m.pid or 0

    def _check_links(self, m: _Member) -> None:
        """Refuse to start a member whose directory holds a link leading out of it: an
        operator (or agent) with write access there must not steer the member's writes,
        made with the harness's rights, anywhere else on the machine."""
        home = os.path.realpath(self.member_dir(m.spec.name))
        for dirpath, dirnames, filenames in os.walk(home):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                if os.path.islink(p):
                    target = os.path.realpath(p)
                    if target != home and not target.startswith(home + os.sep):
                        raise UsageError(f"refusing to start {m.spec.name}: {p} links to {target}, outside the "
                                         "member's directory; remove the link first")

    async def _spawn(self, m: _Member, reason: str) -> None:
        self._check_links(m)
        fd = os.open(m.spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        log = os.fdopen(fd, "ab")
        try:
            env = {**m.spec.env, TRIAL_ENV: self.trial_id}
            proc = await anyio.open_process(
                m.spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=m.spec.cwd,
                env=env,
                start_new_session=True,
            )
        finally:
            log.close()
        m.proc, m.pid, m.exited = proc, proc.pid, anyio.Event()
        self.journal.add_process(m.spec.name, proc.pid, proc.pid)
        self.on_event(MemberEvent(member=m.spec.name, kind="started", pid=proc.pid,
                                  restarts=m.restarts, reason=reason))

    async def _supervise(self, m: _Member) -> None:
        delay = self.policy.backoff_initial_s
        try:
            while True:
                assert m.proc is not None
                rc = await m.proc.wait()
                m.last_exit = rc
                m.exited.set()
                self.on_event(MemberEvent(
                    member=m.spec.name, kind="exited", pid=m.pid or 0,
                    exit_code=rc if rc >= 0 else None, signal=-rc if rc < 0 else None,
                ))
                if self._closing or not m.wanted or not self.policy.restarts_after(rc):
                    return
                await anyio.sleep(delay)
                delay = min(delay * 2, self.policy.backoff_max_s)
                if self._closing or not m.wanted:
                    return
                m.restarts += 1
                try:
                    await self._spawn(m, f"restart policy {self.policy.name} (restart {m.restarts})")
                except (UsageError, OSError):
                    return  # the member stays down, as a supervisor that cannot start it leaves it

        finally:
            m.supervising = False

    def _member(self, name: str) -> _Member:
        try:
            return self._members[name]
        except KeyError:
            raise UsageError(f"no member {name!r}: choose one of {', '.join(self._members)}") from None

    def is_running(self, name: str) -> bool:
        """True while the member's process has not exited."""
        m = self._member(name)
        return m.proc is not None and m.proc.returncode is None

    def is_paused(self, name: str) -> bool:
        """Is the member's process stopped (SIGSTOP): alive, but running nothing?"""
        pid = self.pid(name)
        return pid is not None and process_state(pid) == "T"

    def pid(self, name: str) -> int | None:
        """The member's current pid, if running."""
        m = self._member(name)
        return m.pid if self.is_running(name) else None

    def last_exit(self, name: str) -> int | None:
        """The return code of the member's last exit (negative: killed by that signal)."""
        return self._member(name).last_exit

    def state(self, name: str) -> str:
        """``running``, ``paused (stopped)`` (SIGSTOP), ``stopped`` (on purpose),
        ``exited (signal 9)`` or ``exited (code 1)``."""
        m = self._member(name)
        return supervisor_state(running=self.is_running(name), paused=self.is_paused(name), wanted=m.wanted,
                                last_exit=m.last_exit)

    def members(self) -> list[str]:
        """Every member started so far, in start order."""
        return list(self._members)

    def spec(self, name: str) -> MemberSpec:
        """How the member is run (to start it again)."""
        return self._member(name).spec

    def restarts(self, name: str) -> int:
        """How many times the supervisor restarted the member."""
        return self._member(name).restarts

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last ``lines`` lines of the member's log."""
        try:
            fd = os.open(self._member(name).spec.log_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                data = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        except OSError as e:  # ELOOP: the log was replaced by a link; never follow it
            return f"(cannot read the log: {e.strerror})"
        return "\n".join(data.splitlines()[-lines:])

    def signal_member(self, name: str, sig: int) -> int:
        """Send ``sig`` to the member's process, as a crash or a fault would; return pid.

        Unlike :meth:`stop_member`, the supervisor sees the result as a failure.
        """
        m = self._member(name)
        if m.pid is None or not self.is_running(name):
            raise UsageError(f"member {name} is not running")
        os.kill(m.pid, sig)
        return m.pid

    async def stop_member(self, name: str, timeout_s: float = 5.0) -> None:
        """Stop the member on purpose (no restart): SIGTERM, then SIGKILL."""
        m = self._member(name)
        m.wanted = False
        await self._terminate(m, timeout_s)

    async def _terminate(self, m: _Member, timeout_s: float) -> None:
        if m.proc is None or m.pid is None:
            return
        for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
            if m.proc.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(m.pid, sig)
                os.killpg(m.pid, signal.SIGCONT)  # a paused (SIGSTOPped) member must wake to die
            with anyio.move_on_after(wait_s):
                await m.proc.wait()
        # The group may hold children of the member even after the leader exited.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(m.pid, signal.SIGKILL)

    async def teardown(self) -> None:
        """Stop every member (no restarts) and wait for their processes to end."""
        self._closing = True
        for m in self._members.values():
            m.wanted = False
        async with anyio.create_task_group() as tg:
            for m in self._members.values():
                tg.start_soon(self._terminate, m, 0.5)
