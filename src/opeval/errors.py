"""Errors a user can act on.

Every error that the user caused or can fix (a bad option, a locked store, an unknown
subject) is an :class:`OpevalError`; the CLI prints its one-line message and exits with
its ``exit_code`` instead of a traceback.
"""

from __future__ import annotations


def yaml_problem(origin: object, e: BaseException) -> str:
    """A YAML parser's complaint about ``origin`` on one line: ``origin:LINE: not valid YAML:
    what`` (the line when the parser knows it)."""
    mark = getattr(e, "problem_mark", None)
    where = f"{origin}:{mark.line + 1}" if mark is not None else f"{origin}"
    problem = "nested too deeply" if isinstance(e, RecursionError) else getattr(e, "problem", None) or e
    return f"{where}: not valid YAML: {' '.join(str(problem).split())}"


class OpevalError(Exception):
    """An error with a one-line message that tells the user what to do."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(OpevalError):
    """An option or argument that cannot be used (unknown subject, chaos, target...)."""


class StoreError(OpevalError):
    """The event store cannot be opened or written."""

    exit_code = 3


class NotFoundError(OpevalError):
    """No campaign or trial matches the id or prefix given."""

    exit_code = 4


class EnvironmentProblem(OpevalError):
    """Something this machine lacks (a binary, a free port range, a writable directory)."""

    exit_code = 5


class UnrecordableEvent(StoreError):
    """An event holds a value that would not read back exactly (NaN, a 70-bit integer...):
    refused before it is appended, so the log never holds what it cannot replay."""


class UndecodableEvent(StoreError):
    """A stored event that this version cannot decode (written by an older, laxer one)."""

    def __init__(self, message: str, *, originator_id: object, version: int, topic: str, reason: str) -> None:
        super().__init__(message)
        self.originator_id, self.version, self.topic, self.reason = originator_id, version, topic, reason
