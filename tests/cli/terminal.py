"""Run ``opeval`` as a person does: in a terminal (a pseudo-terminal) of a given width."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_terminal(*args: str, columns: int = 80, env: dict[str, str] | None = None,
                timeout: float = 120) -> tuple[int, str]:
    """``python -m opeval ARGS`` with standard output and error on a terminal ``columns``
    wide; its exit code and what it printed, colours removed."""
    return run_in_terminal([sys.executable, "-m", "opeval", *args], columns=columns, env=env, timeout=timeout)


def run_in_terminal(argv: list[str], *, columns: int = 80, env: dict[str, str] | None = None,
                    cwd: str | None = None, timeout: float = 120) -> tuple[int, str]:
    """``argv`` on a terminal ``columns`` wide: its exit code and output, colours removed."""
    leader, follower = os.openpty()
    environ = {**os.environ, **(env or {}), "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    environ.pop("NO_COLOR", None)
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, env=environ, close_fds=True,
                            cwd=cwd)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # the terminal closed: the process is gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return code, ANSI.sub("", text)
