"""The client workload run during every trial, and its ledger of acknowledged writes."""

from opeval.workload._loop import DataSafety, Workload, WorkloadWindow

__all__ = ["DataSafety", "Workload", "WorkloadWindow"]
