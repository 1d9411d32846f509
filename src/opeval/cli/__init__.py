"""The ``opeval`` command line (cyclopts)."""

from opeval.cli._app import app, main

__all__ = ["app", "main"]
