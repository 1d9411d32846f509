"""Running the ``opeval`` command from tests, as a user would: a child process, its exit code
and what it printed. Every test that runs the command to completion goes through here."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def opeval(*args: str, timeout: float = 180, env: Mapping[str, str | None] | None = None,
           columns: int | None = None, cwd: Path | None = None, check: bool = False,
           ) -> subprocess.CompletedProcess[str]:
    """``python -m opeval ARGS``, from any directory.

    ``env`` changes this process's environment for the command (``None`` unsets a variable);
    ``columns`` sets the width its tables are drawn to; ``check`` fails the test, with the
    command's error output, if it does not exit 0."""
    environ = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, environ.get("PYTHONPATH")) if p)
    if columns is not None:
        environ["COLUMNS"] = str(columns)
    proc = subprocess.run([sys.executable, "-m", "opeval", *args], capture_output=True, text=True,
                          timeout=timeout, env=environ, cwd=cwd)
    if check:
        assert proc.returncode == 0, f"opeval {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return proc
