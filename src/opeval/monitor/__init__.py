"""The monitor: state snapshots, fault detection and recovery detection."""

from opeval.monitor._monitor import Monitor

__all__ = ["Monitor"]
