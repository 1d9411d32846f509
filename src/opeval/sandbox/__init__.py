"""The sandbox: the agent's only door. Its commands see an operator's world (the tools,
the members' directories, the members' client endpoints) and nothing of the harness.

``bubblewrap`` (the default) isolates every command; ``none`` runs them beside the
harness and marks the trial ``unisolated``. :func:`operator_sandbox` sets one trial's
sandbox up and tears it down.
"""

from opeval.sandbox._bwrap import (
    HOME,
    MECHANISMS,
    MEMBERS,
    NODECTL_SOCKET,
    OPERATOR_GID,
    OPERATOR_UID,
    TOOLS,
    Bubblewrap,
    Limits,
    bwrap_version,
    check_mechanism,
    describe,
    interpreter,
)
from opeval.sandbox._network import OperatorNetwork
from opeval.sandbox._session import operator_sandbox
from opeval.sandbox._shell import CommandResult, Sandbox

__all__ = [
    "HOME",
    "MECHANISMS",
    "MEMBERS",
    "NODECTL_SOCKET",
    "OPERATOR_GID",
    "OPERATOR_UID",
    "TOOLS",
    "Bubblewrap",
    "CommandResult",
    "Limits",
    "OperatorNetwork",
    "Sandbox",
    "bwrap_version",
    "check_mechanism",
    "describe",
    "interpreter",
    "operator_sandbox",
]
