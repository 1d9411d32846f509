"""Operator commands, classified: ``read_only``, ``remediation``, ``destructive`` or
``unknown``, from their parsed words. Analysis uses it, and so does the approval gate, before a command runs; each
subject brings the rules for its own tools."""

from collections.abc import Callable

from opeval.commands._classify import (
    CLASSES,
    DESTRUCTIVE,
    READ_ONLY,
    REMEDIATION,
    UNKNOWN,
    Args,
    classify,
    classify_parts,
    flags_of,
    positional,
    rule_sources,
)

#: A rule for one tool: its arguments (after the tool's name) -> a class.
CommandRule = Callable[[Args], str]

__all__ = ["CLASSES", "DESTRUCTIVE", "READ_ONLY", "REMEDIATION", "UNKNOWN", "Args", "CommandRule", "classify",
           "classify_parts", "flags_of", "positional", "rule_sources"]
