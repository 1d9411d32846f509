"""The viewer's HTTP API keeps the promise of its OpenAPI document, and a shared viewer
is locked with a token.

The fuzzer (schemathesis, every check, the stateful phase included) runs against a real
``opeval view`` over a store of real trials; new routes are covered as soon as they are
in the document.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from litestar.testing import TestClient

from opeval.events import AgentSpec, ChaosSpec, TrialConfig
from opeval.runner import TrialRequest, run_single
from opeval.store import EventStore
from opeval.viewer import create_app
from tests.opeval_cli import opeval
from tests.viewer.helpers import read_url, start_viewer, stop_viewer

TOKEN = "a-test-token-of-the-shared-viewer"


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real trials (the runbook agent and the baseline), each its own campaign."""
    path = tmp_path_factory.mktemp("api") / "events.db"
    with EventStore(path) as store:
        for agent in ("runbook", "none"):
            req = TrialRequest(chaos=ChaosSpec(kind="node_kill", target="follower"), agent=AgentSpec(name=agent),
                               seed=9, config=TrialConfig(restart_policy="never", timeout_s=6, settle_s=1.0,
                                                          warmup_s=0.5))
            anyio.run(lambda r=req: run_single(store, r, handle_signals=False))
    return path


@pytest.fixture(scope="module")
def locked_viewer(real_store: Path) -> Iterator[str]:
    proc = start_viewer(real_store, "--port", "0", "--token", TOKEN)
    try:
        yield read_url(proc)
    finally:
        stop_viewer(proc)


@pytest.mark.integration
def test_the_api_fuzzer_finds_nothing_against_a_real_viewer(locked_viewer: str) -> None:
    r = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{locked_viewer}schema/openapi.json",
         "--checks", "all", "--max-examples", "40", "--seed", "7", "--request-timeout", "30",
         "-H", f"Authorization: Bearer {TOKEN}"],
        capture_output=True, text=True, timeout=600)
    summary = r.stdout[r.stdout.find("SUMMARY"):] if "SUMMARY" in r.stdout else r.stdout[-3000:]
    assert r.returncode == 0, r.stdout[-8000:] + r.stderr[-2000:]
    assert "passed" in summary and "failed" not in summary.replace("0 failed", "")


def test_an_out_of_range_number_is_a_400_never_a_broken_stream(real_store: Path) -> None:
    with TestClient(app=create_app(real_store)) as client:
        tid = client.get("/api/campaigns").json()[0]["campaign_id"]
        r = client.get("/api/trials/0/events", params={"after": "288396014596992235379529613312"})
        assert r.status_code == 400 and r.json()["status_code"] == 400 and r.json()["detail"]
        assert client.get(f"/api/campaigns/{tid}", params={"sort": ""}).status_code == 400
        assert client.get("/api/compare", params={"a": tid}).status_code == 400  # b is required
        r = client.request("TRACE", "/api/rule-sets")
        assert r.status_code == 405 and r.headers["allow"] == "GET"


@pytest.mark.integration
def test_a_locked_viewer_refuses_everything_without_its_token(locked_viewer: str, real_store: Path) -> None:
    pages = ["", "compare", "schema", "schema/openapi.json", "api/campaigns", "api/rule-sets"]
    with httpx.Client(base_url=locked_viewer, timeout=30, follow_redirects=False) as c:
        cid = c.get("api/campaigns", headers={"Authorization": f"Bearer {TOKEN}"}).json()[0]["campaign_id"]
        pages += [f"campaigns/{cid}", f"api/campaigns/{cid}"]
        for url in pages:
            for headers in ({}, {"Authorization": "Bearer wrong-token-of-the-same-size!!"},
                            {"Authorization": f"Basic {TOKEN}"}):
                r = c.get(url, headers=headers)
                assert r.status_code == 401, (url, headers, r.status_code)
                assert r.headers["x-content-type-options"] == "nosniff" and "default-src 'none'" in (
                    r.headers["content-security-policy"])
            assert c.get(url, params={"token": TOKEN}).status_code == 401  # never from the URL
            assert c.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, url
        api = c.get("api/campaigns")
        assert api.json()["status_code"] == 401 and api.headers["www-authenticate"].startswith("Bearer")
        page = c.get(f"campaigns/{cid}")
        assert 'action="/login"' in page.text and f'value="/campaigns/{cid}"' in page.text

        # pages: the login form sets an HttpOnly, SameSite cookie, never the token itself
        assert c.post("login", data={"token": "nope", "next": "/"}).status_code == 401
        ok = c.post("login", data={"token": TOKEN, "next": "//elsewhere.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # no open redirect
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
        assert c.get(f"campaigns/{cid}").status_code == 200  # the cookie now opens the pages
        c.cookies.clear()
        assert c.get(f"campaigns/{cid}").status_code == 401


def test_a_viewer_beyond_loopback_needs_a_token(real_store: Path) -> None:
    r = opeval("view", "--store", str(real_store), "--host", "0.0.0.0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--token" in lines[0], r.stderr
    short = opeval("view", "--store", str(real_store), "--token", "short")
    assert short.returncode == 2 and "at least 16" in short.stderr
