"""``opeval watch`` and ``opeval run --tui``: trials and campaigns in the terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from opeval.errors import NotFoundError, UsageError
from opeval.store import EventStore, StoreLocation

from ._app import AnyId
from ._common import StoreOption, ViewRulesOption, err, out, store_path
from ._exit import ExitCode


def _running(es: EventStore) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(campaign, trial) to watch when no id is given: the trial running, in its campaign."""
    unfinished = es.unfinished_trials()
    if not unfinished:
        raise NotFoundError(f"no trial is running in {es.path}: give a trial or campaign id (see `opeval list`)")
    trial = max(unfinished, key=lambda t: es.events(t, limit=1)[0].timestamp)
    campaign = es.trial(trial).campaign_id
    return (campaign if es.campaign(campaign).trials_planned > 1 else None), trial


def watch(id: AnyId | None = None, /, *, speed: float = 1.0, rules: ViewRulesOption = None,  # noqa: A002
          store: StoreOption = None) -> int:
    """Follow a trial or campaign live in the terminal, or replay a finished trial.

    Panels: the members (health, role, restarts, the fault's target marked), workload
    availability, the incident clock (TTD, TTR) and the agent's notes and commands with
    their classes; a campaign adds a grid of its trials. It reads the store only, so it
    works from another terminal while the trial runs elsewhere. Keys: ``?`` for help,
    ``q`` or Ctrl-C to quit (the trial keeps running).

    Parameters
    ----------
    id
        A trial or campaign id or unique prefix (default: the trial running now).
    speed
        Replay speed of a finished trial (2: twice as fast; 0: show its end at once).
    """
    if speed < 0:
        raise UsageError("--speed must be 0 (show the end at once) or a positive factor")
    window = thrashing_window(rules)
    path = store_path(store)
    with EventStore(path, writable=False) as es:
        if id is None:
            campaign, trial = _running(es)
        else:
            kind, oid = es.resolve(id)
            campaign, trial = (oid, None) if kind == "campaign" else (None, oid)
    from opeval.watch import WatchApp

    WatchApp(path, trial_id=trial, campaign_id=campaign, speed=speed, thrashing_window_s=window).run()
    return ExitCode.OK


def thrashing_window(rules: Path | None) -> float | None:
    """The thrashing window of the rule set in file ``rules`` (``None``: the view's default,
    the shipped rule set's); a missing or malformed file fails here, in one line."""
    if rules is None:
        return None
    from opeval.projections import RuleSet

    return float(RuleSet.load(rules).thresholds["thrashing_window_s"])


def run_with_tui(argv: list[str], path: StoreLocation, *, thrashing_window_s: float | None = None) -> int:
    """Run ``opeval run ARGV`` in a child process and follow what it records, full screen,
    marking repeated commands within ``thrashing_window_s`` (default: the shipped rule set's).

    Quitting the view interrupts the run (its trials are recorded as aborted); the exit
    code is the run's.
    """
    from opeval.watch import WatchApp

    with EventStore(path) as es:  # created if new, so the view can open it at once
        position = int(es.recorder.max_notification_id() or 0)
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen([sys.executable, "-m", "opeval", *argv], stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy())
        view = WatchApp(path, follow_after=position, child=child, thrashing_window_s=thrashing_window_s)
        try:
            view.run()
        finally:
            if child.poll() is None and not view.run_finished:  # closed first: the run stops as on Ctrl-C
                child.send_signal(signal.SIGINT)
            if child.poll() is None:
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        log.seek(0)
        said = log.read().rstrip()
    if said:
        (out if child.returncode == 0 else err).print(said, highlight=False, markup=False, soft_wrap=True)
    return child.returncode if child.returncode >= 0 else ExitCode.INTERRUPTED

