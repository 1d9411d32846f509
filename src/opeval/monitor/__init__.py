"""The monitor: state snapshots, fault detection and recovery detection."""

from opeval.monitor._monitor import Monitor, symptoms

__all__ = ["Monitor", "symptoms"]
