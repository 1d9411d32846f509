"""Ctrl-C or SIGTERM at any moment of start-up (the program still importing) prints no
traceback: one line and exit 130 for an interrupt, a plain end for SIGTERM.

(The interpreter's own start, before it runs any of opeval, is Python's: the delays
start after a bare interpreter has had time to start.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest


def _interrupted_at(delay_s: float, sig: int) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen([sys.executable, "-m", "opeval", "list", "--store", "/nonexistent/opeval/events.db"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(("sig", "codes"), [(signal.SIGINT, {130}), (signal.SIGTERM, {-signal.SIGTERM, 143})])
def test_a_signal_while_starting_prints_no_traceback(sig: int, codes: set[int]) -> None:
    t0 = time.perf_counter()
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = (time.perf_counter() - t0) / 3
    hit = 0
    for delay in (bare * 1.5 + extra for extra in (0.02, 0.1, 0.2, 0.35, 0.5, 0.8)):
        proc = _interrupted_at(delay, sig)
        assert "Traceback" not in proc.stderr, (delay, proc.stderr)
        if proc.returncode == 3:  # it got to the end first (no store there): nothing to interrupt
            continue
        assert proc.returncode in codes, (delay, proc.returncode, proc.stderr)
        if sig == signal.SIGINT:
            assert proc.stderr.strip() == "opeval: interrupted", proc.stderr
        hit += 1
    assert hit, "every run ended before the signal: start-up was never interrupted"
