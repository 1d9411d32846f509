"""What a workload is: client traffic during a trial, and the check of what it was promised."""

from __future__ import annotations

from typing import Protocol

from opeval.events import TimeWindow
from opeval.workload._loop import DataSafety, WorkloadWindow


class Workload(Protocol):
    """Client traffic a subject serves while the trial runs.

    ``run`` is started before the fault and cancelled after recovery is judged; the
    totals, the windows without service and the safety check then go into the log.
    """

    key_prefix: str  # where its data lives (recorded in WorkloadStarted)
    totals: WorkloadWindow
    unavailable: list[TimeWindow]

    async def run(self) -> None:
        """Send traffic until cancelled, reporting each sampling window."""
        ...

    @property
    def acknowledged(self) -> int:
        """How many operations the subject promised to keep (acknowledged writes)."""
        ...

    @property
    def longest_unavailable_s(self) -> float:
        """The longest span without service."""
        ...

    async def check_data(self) -> DataSafety:
        """Check every promise against what the subject returns now."""
        ...

