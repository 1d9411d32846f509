"""Process identity on Linux: a pid plus its start time, so a recycled pid is never
mistaken for the process we started."""

from __future__ import annotations

import os
from pathlib import Path


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
        return None
    return int(fields[19])


def is_same_process(pid: int, ticks: int) -> bool:
    """True if ``pid`` is alive and is the process that started at ``ticks``."""
    return pid > 0 and start_ticks(pid) == ticks


def pids_with_env(name: str, value: str) -> list[int]:
    """Processes whose environment has ``name=value`` (ownership label, not a name)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            env = Path(entry.path, "environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append(int(entry.name))
    return found


def self_identity() -> tuple[int, int]:
    """This process's ``(pid, start_ticks)``."""
    pid = os.getpid()
    return pid, start_ticks(pid) or 0


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``T``: stopped by a signal), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:][:1].decode()
