"""`opeval watch` on real trials: Textual's headless pilot drives the app while a real
node_kill trial runs in another process, and `opeval run --tui` in a real terminal.

The pilot's screens during the incident and at its end are saved as
``$OPEVAL_TEST_ARTIFACTS/watch/watch-node-kill-during.svg`` and ``watch-node-kill.svg``
(default ``test-artifacts/watch``), for a person to look at.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from textual.widgets import DataTable, Static

from opeval.store import EventStore
from opeval.watch import WatchApp
from tests.conftest import labelled_processes

pytestmark = pytest.mark.integration

SRC = str(Path(__file__).parents[2] / "src")


def _artifacts() -> Path:
    path = Path(os.environ.get("OPEVAL_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts") / "watch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cells(table: DataTable[Any]) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def _text(app: WatchApp, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


@pytest.fixture
def running_trial(store_path: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A runbook trial on real etcd, in its own process; nothing restarts the killed member but the agent."""
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-m", "opeval", "run", "--agent", "runbook", "--restart-policy", "never", "--seed", "7",
         "--timeout", "40", "--settle", "1", "--store", str(store_path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # closes its pipes


def _wait_for_trial(store_path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if store_path.exists():
            try:
                with EventStore(store_path, writable=False) as es:
                    if es.unfinished_trials():
                        return
            except Exception:  # noqa: BLE001 - the file exists a moment before its tables do
                pass
        time.sleep(0.1)
    raise AssertionError("no trial started")


def test_watch_follows_a_real_trial_from_fault_to_recovery(store_path: Path, tmp_path: Path,
                                                           running_trial: subprocess.Popen[str]) -> None:
    from opeval.cli._watch import _running

    _wait_for_trial(store_path, running_trial)
    with EventStore(store_path, writable=False) as es:
        campaign, trial = _running(es)
    assert campaign is None and trial is not None  # one trial: no campaign grid
    seen: dict[str, Any] = {}

    async def drive() -> None:
        app = WatchApp(store_path, trial_id=trial, poll_s=0.1)
        async with app.run_test(size=(140, 48)) as pilot:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                await pilot.pause(0.2)
                members = _cells(app.query_one("#members", DataTable))
                marked = [row for row in members if "target" in row[5]]
                if marked and "killed" in marked[0][1] and "down" not in seen:
                    seen["down"] = (marked[0][0], marked[0][2], _text(app, "#clock"), app.view.outcome)
                    app.save_screenshot(str(_artifacts() / "watch-node-kill-during.svg"))
                if app.view is not None and app.view.outcome is not None:
                    break
            seen["title"] = _text(app, "#title")
            seen["clock"] = _text(app, "#clock")
            seen["members"] = _cells(app.query_one("#members", DataTable))
            seen["steps"] = _cells(app.query_one("#steps", DataTable))
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            seen["help"] = type(app.screen).__name__
            await pilot.press("escape")
            app.save_screenshot(str(tmp_path / "watch.svg"))
            app.save_screenshot(str(_artifacts() / "watch-node-kill.svg"))  # for a person to look at
            await pilot.press("q")

    anyio.run(drive)
    result, problems = running_trial.communicate(timeout=60)
    assert running_trial.returncode == 0, problems
    (victim,) = [row[0] for row in seen["members"] if "target" in row[5]]
    # While it ran: the target marked, its process killed and unhealthy, no recovery on the clock yet.
    # (The runbook can restart it before the view's first read: then only the end is checked.)
    if "down" in seen:
        down, health, clock, outcome = seen["down"]
        assert down == victim and health == "unhealthy" and outcome is None and "TTR" in clock
        assert "recovered -" in clock
    # At the end: recovered, TTD and TTR on the clock, every member healthy again, the agent's repair badged.
    assert "recovered" in seen["title"] and "recovery criteria held" in seen["title"]
    assert "recovered -" not in seen["clock"] and "TTD" in seen["clock"]
    assert {row[0]: row[2] for row in seen["members"]} == {"etcd-1": "healthy", "etcd-2": "healthy",
                                                            "etcd-3": "healthy"}
    assert any(row[2].strip() == "remediation" and row[3] == f"nodectl start {victim}" for row in seen["steps"])
    assert any(row[2].strip() == "read_only" and row[3] == "nodectl status" for row in seen["steps"])
    assert seen["help"] == "HelpScreen"
    assert "recovered" in (tmp_path / "watch.svg").read_text()


def test_run_tui_shows_the_trial_and_leaves_the_terminal_clean(store_path: Path) -> None:
    """In a real terminal: the full screen comes and goes, `q` after the end quits, the
    run's own result line is printed after, and the exit code is the run's."""
    code, shown = _tui_session(store_path, ["run", "--agent", "runbook", "--restart-policy", "never", "--seed", "7",
                                            "--timeout", "40", "--settle", "1", "--store", str(store_path), "--tui"])
    assert code == 0, shown
    assert "opeval watch" in shown or "incident clock" in shown  # the full screen was drawn
    assert shown.rstrip().splitlines()[-1].startswith("see the timeline") and "recovered" in shown


def test_ctrl_c_in_run_tui_aborts_the_trial_cleanly(store_path: Path) -> None:
    code, shown = _tui_session(store_path, ["run", "--agent", "runbook", "--restart-policy", "never", "--seed", "7",
                                            "--timeout", "40", "--store", str(store_path), "--tui"],
                               key=b"\x03", when="opeval.trial:ChaosVerified")
    assert code == 130, shown
    with EventStore(store_path, writable=False) as es:
        (finished,) = [e for _, e in es.iter_events(["opeval.trial:TrialFinished"])]
        assert es.unfinished_trials() == []
    assert finished.outcome == "aborted" and "SIGINT" in finished.reason
    assert labelled_processes(finished.originator_id.hex) == []


def _tui_session(store_path: Path, args: list[str], *, key: bytes = b"q",
                 when: str = "opeval.trial:TrialFinished") -> tuple[int, str]:
    """Run ``opeval ARGS`` on a pseudo-terminal; press ``key`` once an event of topic ``when`` is recorded."""
    import pty  # noqa: F401 - documents that this needs a pseudo-terminal
    import select

    leader, follower = os.openpty()
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "140", "LINES": "45", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "opeval", *args], stdin=follower, stdout=follower,
                            stderr=follower, env=env, close_fds=True, start_new_session=True)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    pressed = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
            if not pressed and store_path.exists():
                try:
                    with EventStore(store_path, writable=False) as es:
                        pressed = any(True for _ in es.iter_events([when]))
                except Exception:  # noqa: BLE001 - the file exists a moment before its tables do
                    pressed = False
                if pressed:
                    time.sleep(1.0)
                    os.write(leader, key)
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    raw = b"".join(chunks).decode("utf-8", "replace")
    # The alternate screen was entered and left again, and the cursor shown: the terminal is as it was.
    assert "\x1b[?1049h" in raw and raw.rfind("\x1b[?1049l") > raw.rfind("\x1b[?1049h"), raw[-500:]
    assert raw.rfind("\x1b[?25h") > raw.rfind("\x1b[?25l")
    from tests.cli.terminal import ANSI

    return code, ANSI.sub("", raw).replace("\r\n", "\n")
