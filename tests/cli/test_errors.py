"""Bad input: one line on stderr, a non-zero exit, no traceback, nothing lost or started."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
from pathlib import Path

import pytest

from opeval.store import EventStore
from tests.opeval_cli import opeval


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("opeval: error:") and fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--subject", "zookeeper"], "unknown subject 'zookeeper': choose one of etcd"),
        (["--chaos", "meteor"], "unknown chaos kind 'meteor': choose one of config_drift, disk_pressure, latency"),
        (["--target", "etcd-7"], "unknown target 'etcd-7' for node_kill"),
        (["--restart-policy", "always"], "--restart-policy must be one of on-failure, never, not 'always'"),
        (["--members", "12"], "--members must be between 1 and 9"),
        (["--agent", "gpt"], "unknown agent 'gpt'"),
    ],
)
def test_unknown_choices_fail_before_anything_starts(args: list[str], fragment: str, store_path: Path) -> None:
    proc = opeval("run", "--store", str(store_path), *args)
    assert_one_line_error(proc, 2, fragment)
    assert not store_path.exists()  # refused before the store was even created


def test_a_corrupt_store_is_refused_and_kept_byte_for_byte(store_path: Path) -> None:
    store_path.write_bytes(b"\x00garbage" * 1000)
    digest = hashlib.sha256(store_path.read_bytes()).hexdigest()
    for cmd in (["run", "--baseline"], ["list"], ["show", "abc"]):
        assert_one_line_error(opeval(*cmd, "--store", str(store_path)), 3, "corrupt or not a SQLite file")
    assert hashlib.sha256(store_path.read_bytes()).hexdigest() == digest


def test_a_locked_store_is_refused(store_path: Path) -> None:
    EventStore(store_path).close()
    holder = sqlite3.connect(store_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        proc = opeval("run", "--baseline", "--store", str(store_path))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_one_line_error(proc, 3, "locked by another process")


def test_an_unwritable_store_location_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = opeval("run", "--baseline", "--store", str(blocker / "events.db"))
    assert_one_line_error(proc, 3, "cannot create the directory")


def test_show_of_an_unknown_id(store_path: Path) -> None:
    assert_one_line_error(opeval("show", "abc", "--store", str(store_path)), 3, "no store at")
    EventStore(store_path).close()
    assert_one_line_error(opeval("show", "abc", "--store", str(store_path)), 4, "no campaign or trial id starts with 'abc'")


def test_the_store_comes_from_the_environment(store_path: Path) -> None:
    proc = opeval("list", env={"OPEVAL_STORE": str(store_path)})
    assert_one_line_error(proc, 3, str(store_path))


def test_a_missing_api_key_fails_before_any_cluster_starts(store_path: Path, runtime_dir: Path) -> None:
    proc = opeval("run", "--agent", "anthropic", "--store", str(store_path), env={"ANTHROPIC_API_KEY": None})
    assert_one_line_error(proc, 2, "ANTHROPIC_API_KEY is not set")
    assert not store_path.exists() and not (runtime_dir / "trials").exists()


def test_an_unreadable_system_prompt_is_refused(store_path: Path, tmp_path: Path) -> None:
    proc = opeval("run", "--agent", "runbook", "--system-prompt", str(tmp_path / "missing.txt"), "--store", str(store_path))
    assert_one_line_error(proc, 2, "cannot read --system-prompt")
