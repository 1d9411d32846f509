"""Shared fixtures: every test gets its own store and runtime directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Journals and workspaces of this test only (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("OPEVAL_RUNTIME_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def no_user_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No opeval.toml of the user's, and no OPEVAL_* default from the shell, reaches a test."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    for name in ("OPEVAL_SUBJECT", "OPEVAL_PARALLEL", "OPEVAL_MODEL", "OPEVAL_PROG"):
        monkeypatch.delenv(name, raising=False)
    from opeval.cli._config import settings

    settings.cache_clear()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh event store file."""
    return tmp_path / "events.db"


def port_is_bound(url: str) -> bool:
    """True if something accepts connections at ``http://host:port``."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def labelled_processes(trial_id_hex: str) -> list[int]:
    """Live processes carrying this trial's ownership label."""
    from opeval.runtimes._proc import pids_with_env, start_ticks

    return [p for p in pids_with_env("OPEVAL_TRIAL_ID", trial_id_hex) if start_ticks(p) is not None]


@pytest.fixture
def no_leaks(runtime_dir: Path) -> Iterator[None]:
    """After the test: no journal, no workspace left in the runtime directory."""
    yield
    leftovers = [p for p in (runtime_dir / "journal").glob("*")] if (runtime_dir / "journal").exists() else []
    workspaces = list((runtime_dir / "trials").glob("*")) if (runtime_dir / "trials").exists() else []
    assert leftovers == [], f"journal files left: {leftovers}"
    assert workspaces == [], f"workspaces left: {workspaces}"
    os.environ.pop("OPEVAL_STORE", None)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """One throwaway PostgreSQL server for the whole run (initdb into a temp dir, loopback,
    a free port; stopped and removed at the end, even after a failure)."""
    from opeval.testing import postgres_server

    with postgres_server(dbname="opeval_session") as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> str:
    """A new, empty database of the session's server, as a store URL."""
    import uuid as _uuid

    from opeval.testing import fresh_database

    return fresh_database(postgres_server_url, f"t_{_uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One real local model server for the whole session (see tests/llm.py), killed at the end."""
    from tests.llm import model_server

    with model_server(tmp_path_factory.mktemp("llama")) as server:
        yield server
