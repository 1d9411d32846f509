"""What every command shares: the consoles, the common options, JSON output."""

from __future__ import annotations

import json as jsonlib
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console

from opeval.errors import OpevalError

out = Console()
err = Console(stderr=True)

StoreOption = Annotated[
    Path | None,
    Parameter(name="--store", help="Event store file (env OPEVAL_STORE; default ~/.local/share/opeval/events.db)."),
]
JsonFlag = Annotated[bool, Parameter(name="--json", negative=(), help="Print JSON instead of tables.")]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on standard output."""
    sys.stdout.write(jsonlib.dumps(data, indent=2, default=str) + "\n")


def refresh_read_models(path: Path) -> None:
    """Fold new trials into the read models now, so analysis starts warm."""
    from opeval.projections import ReadModels

    try:
        ReadModels(path).update()
    except OpevalError as e:
        err.print(f"note: read models not updated ({e}); the next analysis command will catch up", highlight=False)
