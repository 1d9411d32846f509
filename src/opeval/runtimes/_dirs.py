"""Where per-machine runtime state lives: journals, port locks, trial workspaces."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ENV_VAR = "OPEVAL_RUNTIME_DIR"


def runtime_dir() -> Path:
    """``$OPEVAL_RUNTIME_DIR``, else ``<tmp>/opeval-<uid>`` (gone after a reboot, as
    are the processes it tracks)."""
    env = os.environ.get(ENV_VAR)
    path = Path(env) if env else Path(tempfile.gettempdir()) / f"opeval-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
