"""``opeval view``: starts on loopback, says where, stops cleanly; bad input is one line."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import httpx

from opeval.projections.synthetic import write_campaign
from opeval.store import EventStore
from tests.cli.test_errors import assert_one_line_error
from tests.opeval_cli import opeval
from tests.viewer.helpers import read_url, start_viewer, stop_viewer


def test_view_serves_on_loopback_and_stops_cleanly_on_ctrl_c(store_path: Path) -> None:
    with EventStore(store_path) as es:
        write_campaign(es, "served", 3, rng=random.Random(1), seconds=10)
    proc = start_viewer(store_path, "--port", "0")
    try:
        url = read_url(proc)
        assert url.startswith("http://127.0.0.1:")
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "served" in page.text
        assert httpx.get(url + "api/campaigns", timeout=30).json()[0]["name"] == "served"
    finally:
        out, err = stop_viewer(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err
    assert "viewer stopped" in out


def test_view_refuses_a_missing_or_corrupt_store(tmp_path: Path) -> None:
    assert_one_line_error(opeval("view", "--store", str(tmp_path / "none.db")), 3, "no store at")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x00garbage" * 100)
    assert_one_line_error(opeval("view", "--store", str(bad)), 3, "corrupt or not a SQLite file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]  # nothing created beside them


def test_view_refuses_a_port_in_use_and_a_bad_port(store_path: Path) -> None:
    EventStore(store_path).close()
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        assert_one_line_error(opeval("view", "--store", str(store_path), "--port", str(port)), 5, "is in use")
    assert_one_line_error(opeval("view", "--store", str(store_path), "--port", "70000"), 2, "is not a TCP port")
