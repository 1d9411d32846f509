"""Port allocation that is safe for trials running in parallel.

Ports come from a fixed range below the kernel's ephemeral range (so an outgoing
connection never takes one), and each allocated port is held by an ``flock`` on a lock
file until the trial releases it; the kernel drops the lock if the harness dies.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
from pathlib import Path

from opeval.errors import EnvironmentProblem
from opeval.runtimes._dirs import runtime_dir

PORT_RANGE = (20000, 32000)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortLease:
    """Ports held for one trial; :meth:`release` frees them."""

    def __init__(self, host: str = "127.0.0.1", lock_dir: Path | None = None) -> None:
        self.host = host
        self.lock_dir = lock_dir or runtime_dir() / "ports"
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._held: dict[int, int] = {}  # port -> lock fd

    @property
    def ports(self) -> list[int]:
        """Every port held, in allocation order."""
        return list(self._held)

    def take(self, count: int) -> list[int]:
        """Allocate ``count`` free ports."""
        lo, hi = PORT_RANGE
        taken: list[int] = []
        candidates = list(range(lo, hi))
        random.shuffle(candidates)
        for port in candidates:
            if len(taken) == count:
                break
            fd = os.open(self.lock_dir / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            if not _bindable(self.host, port):
                os.close(fd)
                continue
            self._held[port] = fd
            taken.append(port)
        if len(taken) < count:
            raise EnvironmentProblem(f"no {count} free ports in {lo}-{hi} on {self.host}")
        return taken

    def release(self) -> None:
        """Free every port held."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
