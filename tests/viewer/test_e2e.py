"""End to end: a real trial, ``opeval view`` on its store, the pages in headless Chromium.

Screenshots land in ``$OPEVAL_TEST_ARTIFACTS/viewer`` (default ``test-artifacts/viewer``
in the checkout) for a person to look at.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from opeval.projections.synthetic import make_trial, new_campaign
from opeval.store import EventStore
from opeval.viewer import bind, create_app, url_of
from tests.viewer.helpers import HOSTILE_OUTPUT, finish_trial, read_url, start_trial, start_viewer, stop_viewer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("OPEVAL_TEST_ARTIFACTS") or REPO / "test-artifacts") / "viewer"
    path.mkdir(parents=True, exist_ok=True)
    return path


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("Chromium is not installed: scripts/test installs Debian's `chromium` package "
                    "(apt-get install -y --no-install-recommends chromium)")
    return found


class Chromium:
    """Headless Chromium runs, each in its own process group, always reaped."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary, self.profile = binary, profile

    def run(self, *args: str, timeout: float = 90) -> str:
        cmd = [self.binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
               "--mute-audio", f"--user-data-dir={self.profile}", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            # Renderer and helper processes share the group: none outlives the run.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.poll() is None:
                proc.wait(timeout=10)
        assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {err[-2000:]}"
        return out

    def dom(self, url: str) -> str:
        return self.run("--dump-dom", url)

    def dom_after(self, url: str, budget_ms: int) -> str:
        """The DOM once the page's scripts have had ``budget_ms`` of (virtual) time."""
        return self.run(f"--virtual-time-budget={budget_ms}", "--dump-dom", url)

    def screenshot(self, url: str, path: Path, size: str = "1280,1600") -> Path:
        path.unlink(missing_ok=True)
        self.run(f"--screenshot={path}", f"--window-size={size}", url)
        return path


def assert_png(path: Path, width: int) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    w, h = struct.unpack(">II", data[16:24])
    assert w == width and h > 500, (w, h)
    assert len(data) > 20_000, f"{path} is suspiciously small ({len(data)} bytes): a blank page?"


@pytest.fixture
def chromium(tmp_path: Path) -> Chromium:
    return Chromium(chromium_binary(), tmp_path / "chromium-profile")


@pytest.fixture
def viewer(store_path: Path, no_leaks: None) -> Iterator[tuple[str, dict[str, str]]]:
    """A store with one real trial and synthetic ones, served by ``opeval view``."""
    proc = subprocess.run([sys.executable, "-m", "opeval", "run", "--baseline", "--target", "follower", "--seed", "11",
                           "--timeout", "20", "--store", str(store_path), "--json"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    real = json.loads(proc.stdout)
    with EventStore(store_path) as es:
        campaign = new_campaign("synthetic runbook", 3)
        es.save(campaign)
        trials = [make_trial(campaign, i, random.Random(i), seconds=20, command_output=HOSTILE_OUTPUT)
                  for i in range(3)]
        es.save(campaign, *trials)
        _, agent_trial = start_trial(es, "agent with a hostile shell")
        finish_trial(es, agent_trial)
        (started,) = [e for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"])
                      if e.originator_id.hex == real["trial_id"].replace("-", "")]
    ids = {"trial": real["trial_id"].replace("-", ""), "campaign": started.campaign_id.hex,
           "outcome": real["outcome"], "agent_trial": agent_trial.id.hex, "synthetic": campaign.id.hex}
    server = start_viewer(store_path, "--port", "0")
    try:
        url = read_url(server)
        yield url, ids
    finally:
        out, err = stop_viewer(server)
        assert server.returncode == 0 and "Traceback" not in out + err, err


def test_the_pages_render_in_a_real_browser(viewer: tuple[str, dict[str, str]], chromium: Chromium) -> None:
    url, ids = viewer
    out = artifacts_dir()

    home = chromium.dom(url)
    assert "etcd/node_kill/none" in home and "synthetic runbook" in home

    campaign = chromium.dom(f"{url}campaigns/{ids['campaign'][:8]}")
    assert "etcd/node_kill/none" in campaign and f"/trials/{ids['trial']}" in campaign
    assert ids["outcome"].replace("_", " ") in campaign and "Per agent" in campaign

    trial = chromium.dom(f"{url}trials/{ids['trial'][:8]}")
    assert 'class="chart timeline"' in trial and "seconds from trial start" in trial
    assert "ChaosVerified" in trial and "TrialFinished" in trial and "Data safety" in trial
    assert 'class="chart health"' in trial and 'class="chart workload"' in trial
    assert "No agent: the cluster was left to heal itself." in trial

    hostile = chromium.dom(f"{url}trials/{ids['agent_trial']}")
    assert "<script>alert" not in hostile and "&lt;script&gt;alert(1)&lt;/script&gt;" in hostile
    assert "<img src" not in hostile and "thrashing" in hostile

    shots = {
        "campaigns.png": url,
        "campaign.png": f"{url}campaigns/{ids['campaign']}",
        "trial.png": f"{url}trials/{ids['trial']}",
        "agent-trial.png": f"{url}trials/{ids['agent_trial']}",
        "synthetic-campaign.png": f"{url}campaigns/{ids['synthetic']}",
    }
    for name, page_url in shots.items():
        assert_png(chromium.screenshot(page_url, out / name), 1280)


def test_a_running_trial_updates_live_in_a_real_browser(store_path: Path, chromium: Chromium) -> None:
    """The page subscribes to the trial's events, appends them, and reloads once it ends."""
    with EventStore(store_path) as es:
        campaign, trial = start_trial(es, "live")
        before = trial.version
    paths: list[str] = []
    app = create_app(store_path, poll_interval_s=0.1)

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await app(scope, receive, send)

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(recording, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def finish_once_subscribed() -> None:
        deadline = time.monotonic() + 60
        while not any(p.endswith("/events") for p in paths) and time.monotonic() < deadline:
            time.sleep(0.05)
        with EventStore(store_path) as es:
            finish_trial(es, trial, campaign)

    writer = threading.Thread(target=finish_once_subscribed)
    writer.start()
    try:
        dom = chromium.dom_after(f"{url_of(sock)}trials/{trial.id.hex}", budget_ms=15_000)
    finally:
        writer.join(timeout=70)
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert f"/api/trials/{trial.id.hex}/events" in paths  # the page subscribed...
    assert paths.count(f"/trials/{trial.id.hex}") == 2  # ...and reloaded when the trial ended
    assert 'id="live"' not in dom and "recovered" in dom
    assert dom.count('<tr class="ev-') == trial.version > before
