"""The ``opeval`` command line (cyclopts).

Importing this package loads nothing but itself: :func:`main` imports the program, so
that an interrupt while it loads is one line and exit 130, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and an exit code, never a traceback."""
    try:
        from opeval.cli._app import main as run
    except KeyboardInterrupt:
        # Nothing has run yet, so there is nothing to clean up: exit at once. (Exiting
        # normally, the interpreter sometimes still ends itself by SIGINT after an interrupt
        # inside an import, which a caller sees as a signal's death instead of exit 130.)
        import os

        sys.stderr.write("opeval: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    run(argv)


def __getattr__(name: str) -> Any:
    if name == "app":
        from opeval.cli._app import app

        return app
    raise AttributeError(f"module 'opeval.cli' has no attribute {name!r}")


__all__ = ["app", "main"]
