"""What every command shares: the consoles, the common options, the store, JSON output,
and hints that name the program as the user invoked it."""

from __future__ import annotations

import json as jsonlib
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import Parameter
from rich.console import Console

from opeval.errors import OpevalError
from opeval.store import StoreLocation, default_store_path, parse_store

# Prose is not wrapped at the console's width (80 when piped): a line stays one line, and
# a terminal wraps what does not fit. Tables size themselves (see _tables).
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

StoreOption = Annotated[
    str | None,
    Parameter(name="--store", help="Event store: a SQLite file, or a PostgreSQL database as postgresql://user:pw@host/db "
                                   "(default: $OPEVAL_STORE, else `store` in opeval.toml, else "
                                   "~/.local/share/opeval/events.db)."),
]
RulesOption = Annotated[
    Path | None, Parameter(name="--rules", help="Scoring rule set (YAML); default: the shipped default rule set."),
]
ViewRulesOption = Annotated[
    Path | None, Parameter(name="--rules", help="Rule set (YAML) whose thrashing window marks repeated commands in "
                                                "the view; default: the shipped default rule set's."),
]
JsonFlag = Annotated[bool, Parameter(name="--json", negative=(), help="Print JSON instead of tables.")]
WideFlag = Annotated[bool, Parameter(name="--wide", negative=(),
                                     help="Show every column, even if the table gets wider than the terminal.")]

#: The store given on this command line, for hints to repeat it.
_given_store: list[StoreLocation] = []


def store_path(store: str | Path | None) -> StoreLocation:
    """The store a command uses: ``--store``, else ``$OPEVAL_STORE``, else ``store`` in an
    ``opeval.toml``, else ``~/.local/share/opeval/events.db``. A ``postgresql://`` URL
    names a database, anything else a SQLite file."""
    from ._config import setting

    if store is not None:
        path = parse_store(store)
        _given_store[:] = [path]
        return path
    configured = setting("store")
    return parse_store(configured) if configured else default_store_path()


def prog() -> str:
    """The program as the user invoked it: ``./opeval``, ``opeval``, ``python -m opeval``."""
    named = os.environ.get("OPEVAL_PROG")  # set by the checkout's ./opeval wrapper
    if named:
        return named
    argv0 = sys.argv[0] if sys.argv else "opeval"
    if argv0.endswith("__main__.py") or argv0 in ("-m", "-c", ""):
        return "python -m opeval"
    name = Path(argv0).name
    found = shutil.which(name)
    if found and Path(found).resolve() == Path(argv0).resolve():
        return name
    return argv0


def hint(args: str) -> str:
    """A command to suggest: ``args`` after the program's name, with ``--store`` if one was given."""
    store = f" --store {_given_store[0]}" if _given_store else ""
    return f"{prog()} {args}{store}"


def with_prog(message: str) -> str:
    """``message`` with every quoted ```opeval ...``` command named as the user invoked it."""
    name = prog()
    return message if name == "opeval" else message.replace("`opeval ", f"`{name} ")


def print_json(data: Any) -> None:
    """``data`` as indented JSON on standard output."""
    sys.stdout.write(jsonlib.dumps(data, indent=2, default=str) + "\n")


def refresh_read_models(path: StoreLocation) -> None:
    """Fold new trials into the read models now, so analysis starts warm."""
    from opeval.projections import ReadModels

    try:
        ReadModels(path).update()
    except OpevalError as e:
        err.print(f"note: read models not updated ({e}); the next analysis command will catch up", highlight=False)
