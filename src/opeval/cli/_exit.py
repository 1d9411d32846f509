"""The exit codes of every command: one table, which the README shows and a test compares."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What the process's exit status means."""

    OK = 0
    TRIAL_ERROR = 1
    USAGE = 2
    STORE = 3
    NOT_FOUND = 4
    MISSING = 5
    MODEL = 6
    LOG_DAMAGED = 7
    INTERRUPTED = 130


#: Each code's meaning, as the README's "Exit codes" table states it.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success; for `run`, every trial ran, recovered or not",
    ExitCode.TRIAL_ERROR: "a trial ended in `error`, or `cleanup` could not reap everything",
    ExitCode.USAGE: "bad usage: an unknown option or value, a bad campaign or config file",
    ExitCode.STORE: "store problem: missing, locked, corrupt or unwritable",
    ExitCode.NOT_FOUND: "unknown, ambiguous or wrong-kind id",
    ExitCode.MISSING: "something missing on this machine (a binary, root, a free port)",
    ExitCode.MODEL: "a model call failed (`classify`; what was recorded stays)",
    ExitCode.LOG_DAMAGED: "`verify` found events that cannot be decoded, a log out of order or a broken trial life",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM): running trials are recorded as `aborted`",
}


def for_outcome(outcome: str) -> ExitCode:
    """The exit code of a run whose (worst) trial ended with ``outcome``."""
    return {"recovered": ExitCode.OK, "not_recovered": ExitCode.OK,
            "aborted": ExitCode.INTERRUPTED}.get(outcome, ExitCode.TRIAL_ERROR)
