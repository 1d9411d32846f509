"""Chaos: the faults opeval injects, each inject -> verify -> revert."""

from opeval._plugins import Registry
from opeval.chaos._disk import DiskPressure
from opeval.chaos._network import Latency, Partition
from opeval.chaos._node_kill import NodeKill
from opeval.chaos._process import Pause, QuorumLoss
from opeval.chaos._protocol import (
    Chaos,
    ChaosContext,
    ChaosVerificationError,
    Injection,
    Verification,
)
from opeval.chaos._proxy import PeerProxy
from opeval.chaos._targets import ROLE_TARGETS, choose_member

#: Chaos kinds by name (entry-point group ``opeval.chaos``).
CHAOS: Registry[type] = Registry("chaos kind", "opeval.chaos")
CHAOS.register("node_kill")(NodeKill)
CHAOS.register("pause")(Pause)
CHAOS.register("quorum_loss")(QuorumLoss)
CHAOS.register("partition")(Partition)
CHAOS.register("latency")(Latency)
CHAOS.register("disk_pressure")(DiskPressure)

__all__ = [
    "CHAOS",
    "ROLE_TARGETS",
    "Chaos",
    "ChaosContext",
    "ChaosVerificationError",
    "Injection",
    "DiskPressure",
    "Latency",
    "NodeKill",
    "Partition",
    "Pause",
    "PeerProxy",
    "QuorumLoss",
    "Verification",
    "choose_member",
]
