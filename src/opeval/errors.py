"""Errors a user can act on.

Every error that the user caused or can fix (a bad option, a locked store, an unknown
subject) is an :class:`OpevalError`; the CLI prints its one-line message and exits with
its ``exit_code`` instead of a traceback.
"""

from __future__ import annotations


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
