"""The resource journal: what a trial owns, written before and as it is acquired.

One file per trial in ``<runtime dir>/journal``. If the harness dies (``kill -9``), the
next ``opeval run`` or ``opeval cleanup`` finds the file, sees that its harness is gone,
and reaps what it lists. Processes are found by the pid+start-time recorded here, and by
the ``OPEVAL_TRIAL_ID`` label in their environment; never by process name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import msgspec

from opeval.runtimes._dirs import runtime_dir
from opeval.runtimes._proc import is_same_process, pids_with_env, self_identity, start_ticks

TRIAL_ENV = "OPEVAL_TRIAL_ID"


class ProcessRecord(msgspec.Struct, kw_only=True):
    """A process a trial started: enough to kill it, and only it, later."""

    pid: int
    pgid: int
    start_ticks: int


class JournalEntry(msgspec.Struct, kw_only=True):
    """Everything one trial owns on this machine."""

    trial_id: str
    store: str
    harness_pid: int
    harness_start_ticks: int
    workspace: str = ""
    processes: dict[str, ProcessRecord] = msgspec.field(default_factory=dict)
    mounts: list[str] = msgspec.field(default_factory=list)
    #: Docker objects carry the label ``opeval.trial=<trial_id>``; their names, as created.
    docker: list[str] = msgspec.field(default_factory=list)


class Reaped(msgspec.Struct, kw_only=True):
    """What cleanup found and removed for one dead trial."""

    trial_id: str
    store: str
    killed: list[int]
    removed: list[str]


def journal_dir() -> Path:
    """The directory of journal files."""
    path = runtime_dir() / "journal"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Journal:
    """The journal file of one live trial, rewritten atomically on every change."""

    def __init__(self, trial_id: str, store: Path | str) -> None:
        pid, ticks = self_identity()
        self.entry = JournalEntry(
            trial_id=trial_id, store=str(store), harness_pid=pid, harness_start_ticks=ticks
        )
        self.path = journal_dir() / f"{trial_id}.json"
        self._write()

    def _write(self) -> None:
        # Atomic replace, no fsync: the journal must outlive the harness process, not the
        # machine (a reboot ends the processes it lists, and the kernel's page cache
        # survives a kill -9).
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(self.entry))
        os.replace(tmp, self.path)

    def set_workspace(self, workspace: Path) -> None:
        """Record the workspace before anything is created in it."""
        self.entry.workspace = str(workspace)
        self._write()

    def add_process(self, name: str, pid: int, pgid: int) -> None:
        """Record a process right after it started."""
        self.entry.processes[name] = ProcessRecord(pid=pid, pgid=pgid, start_ticks=start_ticks(pid) or 0)
        self._write()

    def add_mount(self, path: Path) -> None:
        """Record a filesystem mount before it is made."""
        self.entry.mounts.append(str(path))
        self._write()

    def add_docker(self, kind: str, name: str) -> None:
        """Record a Docker object (``container``, ``network``...) before it is created."""
        self.entry.docker.append(f"{kind} {name}")
        self._write()

    def close(self) -> None:
        """The trial released everything: the journal is no longer needed."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def is_mounted(path: Path) -> bool:
    """True if ``path`` is a mount point (per /proc/self/mounts)."""
    target = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)
    return False


def unmount(path: Path) -> bool:
    """Detach the filesystem at ``path`` if one is mounted there (idempotent)."""
    if not is_mounted(path):
        return False
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
    return not is_mounted(path)


def sweep_labelled(trial_id: str) -> None:
    """Kill whatever still carries the trial's label (an agent's background job that left its
    process group, say): nothing of a trial outlives it, whatever the runtime."""
    for pid in pids_with_env(TRIAL_ENV, trial_id):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def mount_tmpfs(journal: Journal, path: Path, size_bytes: int, trial_id: str) -> None:
    """A tmpfs of ``size_bytes`` at ``path``, journaled before it is made (root only)."""
    path.mkdir(parents=True, exist_ok=True)
    journal.add_mount(path)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", f"opeval-{trial_id[:8]}",
                        str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        from opeval.errors import EnvironmentProblem

        raise EnvironmentProblem(f"cannot mount a size-capped tmpfs at {path} ({r.stderr.strip() or r.returncode}): "
                                 "this fault needs root")


def _harness_alive(entry: JournalEntry) -> bool:
    return is_same_process(entry.harness_pid, entry.harness_start_ticks)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_entry(entry: JournalEntry) -> Reaped:
    """Kill and remove everything ``entry`` lists (its harness must be dead)."""
    killed: list[int] = []
    for rec in entry.processes.values():
        if is_same_process(rec.pid, rec.start_ticks):
            _kill_group(rec.pgid)
            killed.append(rec.pid)
    # A process started just before the harness died may have missed the journal.
    for pid in pids_with_env(TRIAL_ENV, entry.trial_id):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + 5
    while any(start_ticks(p) is not None for p in killed) and time.monotonic() < deadline:
        time.sleep(0.02)
    removed: list[str] = []
    if entry.docker:  # containers first: they hold bind mounts of the workspace
        from opeval.runtimes._docker import reap_by_label

        removed += reap_by_label(entry.trial_id)
    for mount in reversed(entry.mounts):  # before the workspace goes: never delete through a mount
        if unmount(Path(mount)):
            removed.append(f"mount {mount}")
    if entry.workspace and Path(entry.workspace).exists():
        shutil.rmtree(entry.workspace, ignore_errors=True)
        removed.append(entry.workspace)
    return Reaped(trial_id=entry.trial_id, store=entry.store, killed=sorted(set(killed)), removed=removed)


def reap_orphans() -> list[Reaped]:
    """Reap every journaled trial whose harness is dead; return what was done."""
    reports = []
    for path in sorted(journal_dir().glob("*.json")):
        try:
            entry = msgspec.json.decode(path.read_bytes(), type=JournalEntry)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue  # half-written temp or foreign file: leave it for a human
        if _harness_alive(entry):
            continue
        reports.append(reap_entry(entry))
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return reports
