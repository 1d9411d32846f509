"""Progress of long work: a trial's live status line, a campaign's progress display.

On a terminal both redraw in place (rich); piped or redirected, they print plain lines,
one per change of phase, so a log says what happened and when.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from opeval.events import member_summary
from opeval.runner import PlannedTrial, TrialResult, TrialStatus

from ._common import err


def clock(seconds: float) -> str:
    """``0:42`` or ``1:02:03``."""
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class TrialStatusLine:
    """One trial: a live line naming its phase on a terminal; a line per phase otherwise."""

    def __init__(self, quiet: bool, console: Console | None = None) -> None:
        self.console = console or err
        self.quiet = quiet
        self.last_phase = ""
        self.status = self.console.status("phase: starting") if self.console.is_terminal and not quiet else None

    def __enter__(self) -> TrialStatusLine:
        if self.status:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status:
            self.status.stop()

    def update(self, s: TrialStatus) -> None:
        """Show ``s``."""
        if self.quiet:
            return
        if self.status:
            self.status.update(f"trial {s.trial_id.hex[:8]}  phase: {s.phase}  {s.elapsed_s:5.1f}s  "
                               f"{member_summary(s.state)}")
        elif s.phase != self.last_phase:
            self.console.print(f"[{s.elapsed_s:6.1f}s] phase: {s.phase}", highlight=False, markup=False)
        self.last_phase = s.phase


def label(t: PlannedTrial) -> str:
    """``#3 node_kill → follower runbook seed 101``."""
    return f"#{t.index} {t.chaos.kind} → {t.chaos.target} {t.agent.variant} seed {t.seed}"


@dataclass
class _Running:
    trial: PlannedTrial
    started: float
    phase: str = "starting"


@dataclass
class CampaignProgress:
    """A campaign's progress: a bar (done of planned, recovered so far, elapsed and an
    estimate of the time left) and each running trial's phase; finished trials scroll above."""

    name: str
    planned: int
    parallel: int
    quiet: bool = False
    console: Console = field(default_factory=lambda: err)
    campaign_id: str = ""
    done_before: int = 0
    done_now: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    running: dict[int, _Running] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _live: Live | None = None

    @property
    def terminal(self) -> bool:
        return self.console.is_terminal

    def __enter__(self) -> CampaignProgress:
        self.started = time.monotonic()
        if self.terminal and not self.quiet:
            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --- events from the runner --------------------------------------------------------------
    def begin(self, campaign_id: str, skipped: int) -> None:
        """The campaign is recorded (or found, on --resume) and ``skipped`` indexes are done."""
        self.campaign_id, self.done_before = campaign_id, skipped
        if not self.terminal and not self.quiet:
            more = f"; {skipped} already done" if skipped else ""
            self._line(f"campaign {self.name} ({campaign_id[:8]}): {self.planned} trials, "
                       f"{self.parallel} at a time{more}")

    def start(self, t: PlannedTrial) -> None:
        """Trial ``t`` begins."""
        self.running[t.index] = _Running(t, time.monotonic())
        if not self.terminal and not self.quiet:
            self._line(f"start   {label(t)}")

    def status(self, t: PlannedTrial, s: TrialStatus) -> None:
        """Trial ``t`` reports ``s``."""
        run = self.running.get(t.index)
        if run is None or run.phase == s.phase:
            return
        run.phase = s.phase
        if not self.terminal and not self.quiet and not s.phase.startswith("finished"):  # the outcome line says it
            self._line(f"        #{t.index} phase: {s.phase}")

    def done(self, t: PlannedTrial, r: TrialResult) -> None:
        """Trial ``t`` ended with ``r``."""
        self.running.pop(t.index, None)
        self.outcomes[r.outcome] = self.outcomes.get(r.outcome, 0) + 1
        if r.outcome != "aborted":
            self.done_now += 1
        if self.quiet:
            return
        ttr = f", TTR {r.time_to_recover_s:.1f}s" if r.time_to_recover_s is not None else ""
        line = f"{r.outcome:<13}  {label(t)}{ttr}"
        if self.terminal:
            self.console.print(Text(line[:13], style=_OUTCOME_STYLE.get(r.outcome, "")) + Text(line[13:]))
        else:
            self._line(f"{line}  ({self.summary()})")

    # --- what is shown -----------------------------------------------------------------------
    @property
    def done_count(self) -> int:
        return self.done_before + self.done_now

    def remaining_s(self) -> float | None:
        """Time left at this run's pace so far (None before its first trial ends)."""
        if not self.done_now:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done_now * max(self.planned - self.done_count, 0)

    def summary(self) -> str:
        """``2/4 done, 1 recovered, 2 running, 0:12 elapsed, ~0:12 left``."""
        left = self.remaining_s()
        parts = [f"{self.done_count}/{self.planned} done", f"{self.outcomes.get('recovered', 0)} recovered"]
        for outcome in ("not_recovered", "error", "aborted"):
            if self.outcomes.get(outcome):
                parts.append(f"{self.outcomes[outcome]} {outcome}")
        if self.running:
            parts.append(f"{len(self.running)} running")
        parts.append(f"{clock(time.monotonic() - self.started)} elapsed")
        if self.done_count < self.planned:
            parts.append("time left: estimating" if left is None else f"~{clock(left)} left")
        return ", ".join(parts)

    def __rich__(self) -> RenderableType:
        head = Table.grid(padding=(0, 1))
        head.add_column(no_wrap=True)
        head.add_column(width=24)
        head.add_column()
        head.add_row(Text(f"campaign {self.name}", style="bold"),
                     ProgressBar(total=max(self.planned, 1), completed=self.done_count, width=24),
                     Text(self.summary()))
        rows = Table.grid(padding=(0, 2))
        now = time.monotonic()
        for run in sorted(self.running.values(), key=lambda r: r.trial.index):
            rows.add_row(Text(f"  {label(run.trial)}"), Text(run.phase, style="cyan"), Text(clock(now - run.started)))
        return Group(head, rows)

    def _line(self, text: str) -> None:
        self.console.print(f"[{clock(time.monotonic() - self.started):>7}] {text}", highlight=False, markup=False,
                           soft_wrap=True)


_OUTCOME_STYLE = {"recovered": "green", "not_recovered": "yellow", "error": "red", "aborted": "magenta"}
