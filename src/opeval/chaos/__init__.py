"""Chaos: the faults opeval injects, each inject -> verify -> revert, and ``none``, the
no-fault control. Kinds plug in through the entry-point group ``opeval.chaos``."""

from opeval._plugins import Registry
from opeval.chaos._control import DEFAULT_ALERT, NoFault, control_alert
from opeval.chaos._disk import DiskPressure
from opeval.chaos._network import Latency, Partition
from opeval.chaos._node_kill import NodeKill
from opeval.chaos._process import Pause, QuorumLoss
from opeval.chaos._protocol import (
    Chaos,
    ChaosContext,
    ChaosFactory,
    ChaosVerificationError,
    FaultBase,
    check_chaos,
    Injection,
    Verification,
)
from opeval.chaos._proxy import PeerProxy
from opeval.chaos._store import ConfigDrift, MemoryPressure, StoreCut, StoreLatency, TrafficBurst, WritePause
from opeval.chaos._targets import ROLE_TARGETS, choose_member

#: Chaos kinds by name (entry-point group ``opeval.chaos``).
CHAOS: Registry[ChaosFactory] = Registry("chaos kind", "opeval.chaos")
CHAOS.register("none")(NoFault)
CHAOS.register("node_kill")(NodeKill)
CHAOS.register("pause")(Pause)
CHAOS.register("quorum_loss")(QuorumLoss)
CHAOS.register("partition")(Partition)
CHAOS.register("latency")(Latency)
CHAOS.register("disk_pressure")(DiskPressure)
CHAOS.register("write_pause")(WritePause)
CHAOS.register("store_cut")(StoreCut)
CHAOS.register("store_latency")(StoreLatency)
CHAOS.register("memory_pressure")(MemoryPressure)
CHAOS.register("traffic_burst")(TrafficBurst)
CHAOS.register("config_drift")(ConfigDrift)

__all__ = [
    "CHAOS",
    "ROLE_TARGETS",
    "Chaos",
    "ChaosContext",
    "ChaosFactory",
    "DEFAULT_ALERT",
    "FaultBase",
    "NoFault",
    "control_alert",
    "ChaosVerificationError",
    "ConfigDrift",
    "MemoryPressure",
    "StoreCut",
    "StoreLatency",
    "TrafficBurst",
    "WritePause",
    "Injection",
    "DiskPressure",
    "Latency",
    "NodeKill",
    "Partition",
    "Pause",
    "PeerProxy",
    "QuorumLoss",
    "Verification",
    "check_chaos",
    "choose_member",
]
