"""The ``opeval`` command line (cyclopts)."""

from opeval.cli import _analysis  # noqa: F401 - registers the analysis commands
from opeval.cli import _store  # noqa: F401 - registers the store commands
from opeval.cli import _view  # noqa: F401 - registers the view command
from opeval.cli import _watch  # noqa: F401 - registers the watch command
from opeval.cli._app import app, main

__all__ = ["app", "main"]
