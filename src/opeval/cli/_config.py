"""Defaults for the command line: ``OPEVAL_*`` variables and ``opeval.toml`` files.

Precedence, highest first: an option on the command line, an ``OPEVAL_*`` variable, the
project's ``opeval.toml`` (the current directory or the nearest parent holding one), the
user's ``$XDG_CONFIG_HOME/opeval/opeval.toml`` (``~/.config/opeval/opeval.toml``), and
the built-in default. A relative ``store`` in a file is relative to that file.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opeval.errors import UsageError
from opeval.store import is_database, parse_store

FILE_NAME = "opeval.toml"

#: Every setting: its variable and what it sets.
KEYS: dict[str, str] = {
    "store": "the event store: a SQLite file or a postgresql:// URL (every command)",
    "subject": "the system under test of `opeval run`",
    "parallel": "trials at once in `opeval run campaign` (above the campaign file's `parallel`)",
    "model": "the model of `opeval run --agent anthropic`",
}


def env_var(key: str) -> str:
    """The variable that sets ``key``: ``OPEVAL_STORE`` and so on."""
    return f"OPEVAL_{key.upper()}"


@dataclass(frozen=True)
class Setting:
    """A value and where it came from (a variable's name or a file's path)."""

    value: Any
    origin: str


def user_config_path() -> Path:
    """The user's file: ``$XDG_CONFIG_HOME/opeval/opeval.toml``."""
    home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(home) / "opeval" / FILE_NAME


def project_config_path(start: Path | None = None) -> Path | None:
    """The nearest ``opeval.toml`` in ``start`` (the current directory) or a parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def _check(key: str, value: Any, where: str) -> Any:
    if key == "parallel":
        from opeval.params import PARALLEL, ParamError

        try:
            return PARALLEL.check(value)
        except ParamError as e:
            raise UsageError(f"{where}: parallel {e.reason}") from None
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: {key} must be a non-empty string, not {value!r}")
    return value


def _read_file(path: Path) -> dict[str, Setting]:
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    found: dict[str, Setting] = {}
    for key, value in data.items():
        line = next((i for i, s in enumerate(text.splitlines(), 1) if re.match(rf"\s*{re.escape(key)}\s*=", s)), 1)
        where = f"{path}:{line}"
        if key not in KEYS:
            raise UsageError(f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(KEYS))})")
        value = _check(key, value, where)
        if key == "store" and not is_database(parse_store(value)):
            value = str((path.parent / Path(value).expanduser()).resolve())
        found[key] = Setting(value, str(path))
    return found


def _read_env() -> dict[str, Setting]:
    found: dict[str, Setting] = {}
    for key in KEYS:
        name = env_var(key)
        raw = os.environ.get(name)
        if not raw:
            continue
        value: Any = raw
        if key == "parallel":
            try:
                value = int(raw)
            except ValueError:
                value = raw  # refused by _check, in the words of the declaration
        found[key] = Setting(_check(key, value, name), name)
    return found


@functools.cache
def settings() -> dict[str, Setting]:
    """Every setting that is set, from the highest-ranking source that sets it."""
    merged: dict[str, Setting] = {}
    sources = [user_config_path(), project_config_path()]
    for path in sources:
        if path is not None and path.is_file():
            merged.update(_read_file(path))
    merged.update(_read_env())
    return merged


def setting(key: str) -> Any | None:
    """The configured value of ``key``, or None when nothing sets it."""
    found = settings().get(key)
    return None if found is None else found.value


def config_files() -> list[tuple[Path, bool]]:
    """The files read, lowest rank first, and whether each exists."""
    user, project = user_config_path(), project_config_path()
    files = [(user, user.is_file())]
    if project is not None:
        files.append((project, True))
    return files
