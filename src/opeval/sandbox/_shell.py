"""The agent's shell: commands run exactly as written (``bash -c``) in an operator sandbox.

The sandbox has its own home, a PATH with the subject's operator tools (``etcdctl``
preconfigured, ``nodectl``), and an environment built from nothing: no API key or
harness secret can leak into it. Isolated (``bubblewrap``, see ``_bwrap``), a command
sees and reaches nothing of the harness; unisolated (``none``, only when asked), it runs
beside the harness in its own process group. Either way whatever it starts is killed at
the command's timeout and when the command ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream

from opeval.runtimes import TRIAL_ENV
from opeval.sandbox import _nodectl as nodectl_client
from opeval.sandbox._bwrap import HOME, MEMBERS, NODECTL_SOCKET, TOOLS, Bubblewrap, interpreter


@dataclass(frozen=True)
class CommandResult:
    """What one command did, as recorded and as shown to the agent."""

    command: str
    exit_code: int | None
    timed_out: bool
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    stdout_truncated: bool
    stderr_truncated: bool
    started_offset_s: float
    duration_s: float

    def as_text(self) -> str:
        """The result as a model or a person reads it."""
        head = "[timed out, killed]" if self.timed_out else f"[exit code {self.exit_code}]"
        parts = [head]
        for name, text, total, cut in (("stdout", self.stdout, self.stdout_bytes, self.stdout_truncated),
                                       ("stderr", self.stderr, self.stderr_bytes, self.stderr_truncated)):
            if text:
                parts.append(f"{name}:\n{text}" + (f"\n[... truncated: {total} bytes in all]" if cut else ""))
        return "\n".join(parts)


class _Captured:
    """One output stream, kept up to ``cap`` bytes and counted in full, as it arrives
    (so a command killed at its timeout still shows what it printed)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    async def drain(self, stream: ByteReceiveStream | None) -> None:
        if stream is None:
            return
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            async for chunk in stream:
                self.total += len(chunk)
                if len(self.kept) < self.cap:
                    self.kept += chunk[: self.cap - len(self.kept)]

    @property
    def text(self) -> str:
        return self.kept.decode(errors="replace")


class Sandbox:
    """Where an agent's commands run for one trial.

    ``root`` holds the harness's side: ``bin/`` (the tools) and ``home/`` (the operator's
    home). With ``isolation`` (a :class:`Bubblewrap` policy) every command runs inside it;
    without, beside the harness (``--sandbox none``).
    """

    def __init__(self, root: Path, trial_id: str, tool_env: dict[str, str], control_socket: Path,
                 allowed_tools: set[str] | None = None, *,
                 isolation: Bubblewrap | None = None) -> None:
        self.root = root
        self.bin = root / "bin"
        self.home = root / "home"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        # nodectl runs once per command: a standalone script (socket + json only) starts in
        # ~20 ms, where importing opeval would take ten times that.
        python, python_dir = interpreter() if isolation is not None else (sys.executable, None)
        nodectl = self.bin / "nodectl"
        nodectl.write_text(f"#!{python} -I\n" + Path(nodectl_client.__file__).read_text())
        nodectl.chmod(0o755)
        if allowed_tools is not None:  # a variant may hand the agent fewer of the harness's tools
            for p in self.bin.iterdir():
                if p.name not in allowed_tools:
                    p.unlink()
        self.tools = sorted(p.name for p in self.bin.iterdir())
        self.isolation: Bubblewrap | None = None
        self.cwd = self.home
        if isolation is not None:
            self.isolation = dataclasses.replace(
                isolation, home=self.home, tools={p.name: p.resolve() for p in self.bin.iterdir()},
                extra_ro=(python_dir,) if python_dir else ())
            path, home, socket_path = f"{TOOLS}:/usr/local/bin:/usr/bin:/bin", HOME, NODECTL_SOCKET
        else:
            path, home, socket_path = f"{self.bin}:/usr/local/bin:/usr/bin:/bin", str(self.home), str(control_socket)
        self.env = {
            "PATH": path,
            "HOME": home,
            "USER": "operator",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "OPEVAL_NODECTL_SOCKET": socket_path,
            TRIAL_ENV: trial_id,  # ownership label: whatever escapes its group dies with the trial
            **tool_env,
        }

    @property
    def member_dirs(self) -> dict[str, str]:
        """Each member's directory as the agent's commands see it."""
        if self.isolation is None:
            return {}
        return {name: f"{MEMBERS}/{name}" for name in self.isolation.members}

    def argv(self, command: str) -> tuple[list[str], tuple[int, ...]]:
        """The command line of one command, and the descriptors it must inherit."""
        if self.isolation is None:
            return ["bash", "-c", command], ()
        return self.isolation.argv(command), (self.isolation.network_fd,)

    async def run(self, command: str, *, timeout_s: float, output_cap: int, clock: Callable[[], float]) -> CommandResult:
        """Run ``command`` with ``bash -c``; kill everything it started at ``timeout_s``."""
        started_offset = clock()
        t0 = time.monotonic()
        out, err = _Captured(output_cap), _Captured(output_cap)
        timed_out = False
        argv, fds = self.argv(command)
        proc = await anyio.open_process(argv, stdin=subprocess.DEVNULL, cwd=self.cwd, env=self.env,
                                        start_new_session=True, pass_fds=fds)
        try:
            with anyio.move_on_after(timeout_s) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(out.drain, proc.stdout)
                    tg.start_soon(err.drain, proc.stderr)
                    await proc.wait()
                    # Background jobs end with the command, closing the pipes they hold;
                    # one that left the group (setsid) gets a second to let go of them.
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    tg.cancel_scope.deadline = min(tg.cancel_scope.deadline, anyio.current_time() + 1.0)
            timed_out = scope.cancelled_caught and proc.returncode is None
        finally:
            # The command's group dies with it: background jobs included (and, isolated,
            # bwrap's death takes its whole PID namespace).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with anyio.CancelScope(shield=True):
                await proc.wait()
                await proc.aclose()
        return CommandResult(
            command=command,
            exit_code=None if timed_out else proc.returncode,
            timed_out=timed_out,
            stdout=out.text, stderr=err.text, stdout_bytes=out.total, stderr_bytes=err.total,
            stdout_truncated=out.total > output_cap, stderr_truncated=err.total > output_cap,
            started_offset_s=started_offset, duration_s=round(time.monotonic() - t0, 6),
        )
