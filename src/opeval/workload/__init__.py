"""Client workloads run during every trial, and their safety checks.

:class:`Workload` is the contract; :class:`KeyValueWorkload` serves any subject with a
:class:`KeyValueClient` (writes acknowledged, then read back).
"""

from opeval.workload._loop import DataSafety, KeyValueClient, KeyValueWorkload, WorkloadWindow
from opeval.events import Words
from opeval.workload._protocol import Workload

__all__ = ["DataSafety", "KeyValueClient", "KeyValueWorkload", "Workload", "WorkloadWindow", "Words"]
