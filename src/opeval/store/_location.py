"""Where a store lives: a SQLite file (a path) or a PostgreSQL database (a URL).

``--store``, ``$OPEVAL_STORE`` and ``store`` in ``opeval.toml`` all take either; a value
that starts with ``postgresql://`` or ``postgres://`` names a database, anything else a
file. Read models always live in a local DuckDB file: beside a SQLite store, and under
``$XDG_DATA_HOME/opeval/`` for a database (one file per server, database and schema).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opeval.errors import EnvironmentProblem, UsageError

ENV_VAR = "OPEVAL_STORE"
_SCHEMES = ("postgresql", "postgres")


#: What a store URL may say (libpq's names); everything else goes in libpq's environment.
_URL_KEYS = {"dbname", "host", "port", "user", "password"}
#: libpq's environment variable for an option, where it is not PG + the option's name in capitals.
_ENV_NAMES = {"application_name": "APPNAME", "options": "OPTIONS", "target_session_attrs": "TARGETSESSIONATTRS"}


@dataclass(frozen=True)
class PostgresURL:
    """A PostgreSQL store: ``postgresql://user:password@host:port/dbname`` (libpq's URI
    form: host, port, user, password and database; other connection settings, such as
    ``sslmode``, go in libpq's environment variables, which every connection reads).
    Printed without its password."""

    url: str

    def __str__(self) -> str:
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))

    def conninfo(self) -> dict[str, str]:
        """The URL as psycopg's keyword arguments (dbname, host, port, user, password, ...)."""
        conninfo_to_dict = psycopg().conninfo.conninfo_to_dict
        try:
            info = {k: str(v) for k, v in conninfo_to_dict(self.url).items() if v is not None}
        except Exception as e:  # psycopg.ProgrammingError: the URL does not parse
            raise UsageError(f"store {self}: not a PostgreSQL URL ({e})") from None
        if not info.get("dbname"):
            raise UsageError(f"store {self}: name the database, e.g. postgresql://user@host/opeval")
        # The event recorder's pool connects with these five only: an option it would drop
        # (sslmode=require, say) is refused, never applied to some connections and not others.
        extra = sorted(set(info) - _URL_KEYS)
        if extra:
            hint = ", ".join(f"PG{_ENV_NAMES.get(k, k.upper())}" for k in extra)
            raise UsageError(f"store {self}: the URL may name only host, port, user, password and database; "
                             f"set {', '.join(extra)} in the environment instead ({hint})")
        return info


def psycopg() -> Any:
    """The psycopg module, or a one-line problem saying how to install it."""
    try:
        import psycopg
        import psycopg.conninfo
        import psycopg_pool  # noqa: F401 - eventsourcing's recorder needs it
    except ImportError:
        raise EnvironmentProblem("a PostgreSQL store needs psycopg 3: pip install 'opeval[postgres]'") from None
    return psycopg


#: A store's location: a SQLite file or a PostgreSQL database.
StoreLocation = Path | PostgresURL


def parse_store(raw: str | Path) -> StoreLocation:
    """``raw`` as a location: a PostgreSQL URL, else a file path (``~`` expanded)."""
    text = str(raw)
    if isinstance(raw, str) and urlsplit(text).scheme in _SCHEMES:
        return PostgresURL(text)
    return Path(raw).expanduser()


def store_address(location: StoreLocation) -> str:
    """The location as text that :func:`parse_store` reads back to the same store (a
    database's URL with its password: only for harness-private files, never printed)."""
    return location.url if isinstance(location, PostgresURL) else str(location)


def same_store(a: StoreLocation, b: StoreLocation) -> bool:
    """Do ``a`` and ``b`` name the same store?"""
    if isinstance(a, PostgresURL) or isinstance(b, PostgresURL):
        return a == b
    return Path(a).resolve() == Path(b).resolve()


def is_database(location: StoreLocation) -> bool:
    """Does ``location`` name a PostgreSQL database (not a SQLite file)?"""
    return isinstance(location, PostgresURL)


def data_home() -> Path:
    """``$XDG_DATA_HOME/opeval`` (``~/.local/share/opeval``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "opeval"


def read_model_path(location: StoreLocation) -> Path:
    """Where the read models of a store live: beside a file, ``<store>.duckdb``; for a
    database, ``$XDG_DATA_HOME/opeval/pg-<host>-<dbname>-<digest>.duckdb``."""
    if isinstance(location, PostgresURL):
        info = location.conninfo()
        key = "|".join(info.get(k, "") for k in ("host", "port", "dbname", "user", "options"))
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        host = (info.get("host") or "local").replace("/", "_")
        return data_home() / f"pg-{host}-{info['dbname']}-{digest}.duckdb"
    return Path(location).with_suffix(".duckdb")


def default_store_path() -> StoreLocation:
    """``$OPEVAL_STORE``, else ``$XDG_DATA_HOME/opeval/events.db`` (``~/.local/share``)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return parse_store(env)
    return data_home() / "events.db"


def resolve_store_path(store: StoreLocation | str | None) -> StoreLocation:
    """The store a command uses: ``--store`` if given, else :func:`default_store_path`."""
    if store is None or store == "":
        return default_store_path()
    return store if isinstance(store, PostgresURL) else parse_store(store)
