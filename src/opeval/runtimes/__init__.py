"""Runtimes: where a subject's members run: local processes, or Docker containers.

Also the machine-level resource journal that lets a later run or ``opeval cleanup``
reap what a killed harness left behind.
"""

from opeval._plugins import Registry
from opeval.runtimes._dirs import runtime_dir
from opeval.runtimes._docker import DockerRuntime
from opeval.runtimes._journal import TRIAL_ENV, Journal, JournalEntry, Reaped, reap_orphans
from opeval.runtimes._local import LocalRuntime
from opeval.runtimes._ports import PortLease
from opeval.runtimes._proc import is_same_process, process_state, self_identity, start_ticks
from opeval.runtimes._protocol import (
    ContainerDefinition,
    LinkCutter,
    MemberEvent,
    MemberSpec,
    RestartPolicy,
    Runtime,
    RuntimeFactory,
    supervisor_state,
)

#: Runtimes by name (entry-point group ``opeval.runtimes``).
RUNTIMES: Registry[RuntimeFactory] = Registry("runtime", "opeval.runtimes")
RUNTIMES.register("local")(LocalRuntime)
RUNTIMES.register("docker")(DockerRuntime)

__all__ = [
    "RUNTIMES",
    "ContainerDefinition",
    "DockerRuntime",
    "LinkCutter",
    "TRIAL_ENV",
    "Journal",
    "JournalEntry",
    "LocalRuntime",
    "MemberEvent",
    "MemberSpec",
    "PortLease",
    "Reaped",
    "RestartPolicy",
    "Runtime",
    "RuntimeFactory",
    "is_same_process",
    "process_state",
    "reap_orphans",
    "runtime_dir",
    "self_identity",
    "start_ticks",
    "supervisor_state",
]
