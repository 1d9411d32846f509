"""End to end: a real trial, ``opeval view`` on its store, the pages in headless Chromium.

Every page is opened at 1400 and 800 px wide; full-page screenshots land in
``$OPEVAL_TEST_ARTIFACTS/viewer`` (default ``test-artifacts/viewer`` in the checkout),
named ``<page>-<width>.png``, for a person to look at.
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
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from opeval.projections import ReadModels
from opeval.projections.synthetic import make_trial, new_campaign, write_campaign
from opeval.store import EventStore
from opeval.viewer import bind, create_app, url_of
from tests.opeval_cli import opeval
from tests.projections.helpers import aborted_control
from tests.viewer.cdp import OVERLAPS_JS, Browser
from tests.viewer.helpers import (
    HOSTILE_OUTPUT,
    finish_trial,
    read_url,
    start_trial,
    start_viewer,
    stop_viewer,
    strict_rules,
)

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
    """A store with one real trial and synthetic ones (an agent campaign and a baseline
    paired with it by seed, a resumed campaign with an aborted attempt, an agent trial with
    hostile output), scored under two rule sets, served by ``opeval view``."""
    proc = opeval("run", "--baseline", "--target", "follower", "--seed", "11", "--timeout", "20",
                  "--store", str(store_path), "--json", check=True)
    real = json.loads(proc.stdout)
    with EventStore(store_path) as es:
        campaign = new_campaign("synthetic runbook", 6)
        es.save(campaign)
        trials = [make_trial(campaign, i, random.Random(i), seconds=20, seed=i, command_output=HOSTILE_OUTPUT)
                  for i in range(6)]
        es.save(campaign, *trials)
        base = write_campaign(es, "synthetic self-healing", 6, rng=random.Random(9), seconds=20,
                              seeds=list(range(6)), agent="none")
        resumed = new_campaign("resumed after Ctrl-C", 2)
        es.save(resumed)
        es.save(resumed, aborted_control(resumed, 0))
        es.save(resumed, make_trial(resumed, 0, random.Random(20), seconds=12),
                make_trial(resumed, 1, random.Random(21), seconds=12))
        _, agent_trial = start_trial(es, "agent with a hostile shell")
        finish_trial(es, agent_trial)
        (started,) = [e for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"])
                      if e.originator_id.hex == real["trial_id"].replace("-", "")]
    models = ReadModels(store_path)
    models.update()
    models.score(strict_rules())
    ids = {"trial": real["trial_id"].replace("-", ""), "campaign": started.campaign_id.hex,
           "outcome": real["outcome"], "agent_trial": agent_trial.id.hex, "synthetic": campaign.id.hex,
           "base": base.id.hex, "resumed": resumed.id.hex}
    server = start_viewer(store_path, "--port", "0")
    try:
        url = read_url(server)
        yield url, ids
    finally:
        out, err = stop_viewer(server)
        assert server.returncode == 0 and "Traceback" not in out + err, err


#: Every page, by name: (path, what it must say).
def pages(ids: dict[str, str]) -> dict[str, tuple[str, list[str]]]:
    return {
        "campaigns": ("", ["etcd/node_kill/none seed 11", "synthetic runbook", "resumed after Ctrl-C",
                           "aborted attempt"]),
        "campaign": (f"campaigns/{ids['campaign'][:8]}", ["etcd/node_kill/none seed 11", f"/trials/{ids['trial']}",
                                                          ids["outcome"].replace("_", " "), "Per agent",
                                                          'href="#trials"']),
        "synthetic-campaign": (f"campaigns/{ids['synthetic']}", ["Recovery rate", "Time to recover", "(no agent)"]),
        "resumed-campaign": (f"campaigns/{ids['resumed']}", ["2 of 2 planned", "1 aborted attempt"]),
        "trial": (f"trials/{ids['trial'][:8]}", ['class="chart timeline"', "seconds from trial start", "ChaosVerified",
                                                 "TrialFinished", "Data safety", 'class="chart health"',
                                                 'class="chart workload"',
                                                 "No agent: the cluster was left to heal itself."]),
        "agent-trial": (f"trials/{ids['agent_trial']}", ["&lt;script&gt;alert(1)&lt;/script&gt;", "thrashing",
                                                         "agent at work"]),
        "compare": (f"compare?a={ids['base']}&b={ids['synthetic']}", ["Metric by metric"]),
        "compare-rule-sets": (f"compare?campaign={ids['synthetic']}", ["Trials whose score changed"]),
        "not-found": ("trials/0000000000", ["no campaign or trial id starts with"]),
    }


def test_every_page_renders_at_two_widths_without_overlapping_labels(
        viewer: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """Each page at 1400 and 800 px: what it must say, no escaped markup run, no two labels
    of a chart on top of each other; a full-page screenshot of each in test-artifacts/viewer."""
    url, ids = viewer
    out = artifacts_dir()
    with Browser(chromium_binary(), tmp_path / "profile") as browser:
        for name, (path, must) in pages(ids).items():
            for width in (1400, 800):
                browser.open(url + path, width)
                dom = browser.evaluate("document.documentElement.outerHTML")
                for text in must:
                    assert text in dom, (name, width, text)
                assert "<script>alert" not in dom and "<img src" not in dom
                overlaps = browser.evaluate(OVERLAPS_JS)
                assert overlaps == [], (name, width, overlaps)
                # Nothing widens the page past the window (a wide table scrolls in its own box).
                assert browser.evaluate("document.documentElement.scrollWidth") == width, (name, width)
                assert_png(browser.screenshot(out / f"{name}-{width}.png"), width)


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
