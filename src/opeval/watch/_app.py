"""``opeval watch``: a trial or campaign, live from the store, in the terminal.

The app only reads the event store (polling it, as every other reader does), so it
works from another terminal, or another machine sharing the store, while the trial
runs elsewhere; a finished trial is replayed at a chosen speed. Its one write is a
person's decision on a command the approval gate holds, through the store.
"""

from __future__ import annotations

import getpass
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, ProgressBar, Static

from opeval.errors import OpevalError
from opeval.events import Trial
from opeval.store import EventStore, PostgresURL, StoreLocation, store_address, store_exists
from opeval.watch._model import CampaignRow, Step, TrialView, badge_of, sparkline

_BADGE_STYLE = {"read_only": "green", "remediation": "yellow", "destructive": "bold white on red",
                "unknown": "magenta", "thrashing": "bold black on yellow", "denied": "bold white on red",
                "waiting": "bold black on cyan", "allowed": "cyan"}
_OUTCOME_STYLE = {"recovered": "green", "not_recovered": "red", "error": "bold red", "aborted": "yellow"}
_HELP = """\
[b]opeval watch[/b]: a trial from its fault to its recovery, as recorded

  [b]members[/b]   health, role, restarts; [reverse] ✗ [/reverse] marks the fault's target
  [b]clock[/b]     fault verified, detected, recovered: TTD and TTR (TTR leaves out waiting for a person)
  [b]workload[/b]  share of client operations that succeeded, one bar a second
  [b]agent[/b]     its notes and commands as they happen, badged read_only, remediation,
            destructive, unknown, thrashing (a mutating command repeated with no change),
            denied or waiting (held by the approval gate)

  ↑ ↓        choose a step         enter    show its output
  y / n      approve / deny the command waiting for you (--approval ask)
  + / -      replay faster / slower      space   pause the replay
  c          campaign: back to its grid (enter on a trial opens it)
  ?          this help               q, ctrl+c   quit (a watched trial keeps running)
"""


class HelpScreen(ModalScreen[None]):
    """The keys and what each panel shows."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        yield Static(_HELP, id="help")


class WatchApp(App[int]):
    """A trial (or a campaign's trials) followed live from the store, or replayed."""

    CSS_PATH = "watch.tcss"
    TITLE = "opeval watch"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help"),
        Binding("enter", "output", "output", show=False),
        Binding("y", "decide('allowed')", "approve"),
        Binding("n", "decide('denied')", "deny"),
        Binding("plus,equals_sign", "speed(2)", "faster", show=False),
        Binding("minus", "speed(0.5)", "slower", show=False),
        Binding("space", "pause", "pause", show=False),
        Binding("c", "campaign", "campaign", show=False),
    ]

    def __init__(self, store_path: StoreLocation, *, trial_id: uuid.UUID | None = None,
                 campaign_id: uuid.UUID | None = None,
                 speed: float = 1.0, follow_after: int | None = None, poll_s: float = 0.25,
                 decider: str | None = None, child: subprocess.Popen[Any] | None = None,
                 thrashing_window_s: float | None = None) -> None:
        super().__init__()
        # a database, or a file
        self.store_path = store_path if isinstance(store_path, PostgresURL) else Path(store_path)
        self.trial_id = trial_id
        self.campaign_id = campaign_id
        self.speed = speed
        self.follow_after = follow_after  # wait for the first campaign started after this log position
        self.child = child  # the run being followed (``opeval run --tui``), if this process started it
        self.poll_s = poll_s
        self.decider = decider or f"person:{getpass.getuser()}@terminal"
        self.thrashing_window_s = thrashing_window_s  # a rule set's; None: the default rule set's
        self.view: TrialView | None = None
        self.store: EventStore | None = None
        self._queue: list[Any] = []  # events not yet shown (a replay shows them at their offset)
        self._replay_t0: float | None = None  # wall clock of offset 0 while replaying
        self._paused_at: float | None = None
        self._campaign_rows: list[CampaignRow] = []
        self._planned = 0
        self.message = ""
        self._seen = 0  # the last version of the trial's events read
        self._last_seen = (0.0, time.monotonic())  # the last event's offset, and when it was seen
        self._shown_steps = 0

    # --- layout -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static("", id="title")
        with Vertical(id="campaign-panel"):
            yield ProgressBar(id="progress", show_eta=False)
            yield DataTable(id="grid", cursor_type="row")
        with Horizontal(id="top"):
            yield DataTable(id="members", cursor_type="none")
            with Vertical(id="right"):
                yield Static("", id="clock")
                yield Static("", id="availability")
        yield DataTable(id="steps", cursor_type="row")
        with VerticalScroll(id="output-panel"):
            yield Static("", id="output")
        yield Footer()

    def on_mount(self) -> None:
        members = self._main.query_one("#members", DataTable)
        for label, width in (("member", 10), ("process", 20), ("health", 9), ("role", 11), ("restarts", 8),
                             ("fault", 10)):
            members.add_column(label, width=width)  # fixed: values change width as the incident goes
        steps = self._main.query_one("#steps", DataTable)
        steps.add_columns("step", "at", "badge", "what")
        grid = self._main.query_one("#grid", DataTable)
        grid.add_columns("#", "trial", "chaos → target", "agent", "outcome")
        for wid, title in (("#members", "members"), ("#clock", "incident clock"), ("#steps", "agent"),
                           ("#availability", "workload availability (a bar a second)"),
                           ("#output-panel", "output (enter: hide)"), ("#campaign-panel", "campaign")):
            self._main.query_one(wid).border_title = title
        self._main.query_one("#campaign-panel").display = False  # shown once a campaign of several trials is known
        self._main.query_one("#output-panel").display = False
        self.set_interval(self.poll_s, self.refresh_from_store)
        self.call_later(self.refresh_from_store)

    @property
    def _main(self) -> Screen[Any]:
        # The panels live on the first screen; the help may be on top of it.
        return self.screen_stack[0]

    # --- reading the store ----------------------------------------------------------------------------
    def _open(self) -> EventStore | None:
        if self.store is None and store_exists(self.store_path):
            try:
                self.store = EventStore(self.store_path, writable=False)
            except OpevalError as e:  # being created by the trial's process: try again next tick
                self.message = str(e)
        return self.store

    def _find_new_campaign(self, es: EventStore) -> None:
        assert self.follow_after is not None
        for n in es.notifications(self.follow_after + 1, 1, topics=["opeval.campaign:CampaignStarted"]):
            self.campaign_id = uuid.UUID(str(n.originator_id))

    def refresh_from_store(self) -> None:
        """Take in what is new in the store, then redraw."""
        if not self.is_running or not self.screen_stack:
            return
        es = self._open()
        if es is None:
            self._draw()
            return
        if self.child is not None and self.child.poll() is not None and self.view is None:
            self.exit(self.child.returncode)  # the run ended before any trial started (a usage error, say)
            return
        if self.campaign_id is None and self.follow_after is not None:
            self._find_new_campaign(es)
        if self.campaign_id is not None:
            self._load_campaign(es)
        if self.trial_id is not None:
            if self.view is None or self.view.trial_id != self.trial_id.hex:
                self.view, self._queue, self._replay_t0 = self._new_view(self.trial_id.hex), [], None
                self._seen = 0
                self._main.query_one("#steps", DataTable).clear()
                self._shown_steps = 0
            new = es.events(self.trial_id, after=self._seen)
            if new:
                self._seen = new[-1].originator_version
                if self._replay_t0 is None and not self._queue and self.view.version == 0 and self.speed > 0 \
                        and isinstance(new[-1], Trial.TrialFinished):
                    self._replay_t0 = time.monotonic()  # a finished trial: replay it
                self._queue.extend(new)
            self._apply_due()
        self._draw()

    def _replay_offset(self) -> float | None:
        if self._replay_t0 is None:
            return None
        now = self._paused_at if self._paused_at is not None else time.monotonic()
        return (now - self._replay_t0) * self.speed

    def _apply_due(self) -> None:
        assert self.view is not None
        until = self._replay_offset()
        while self._queue:
            e = self._queue[0]
            if until is not None and float(getattr(e, "offset_s", 0.0)) > until:
                break
            self.view.apply(self._queue.pop(0))

    def _new_view(self, trial_hex: str) -> TrialView:
        if self.thrashing_window_s is None:
            return TrialView(trial_hex)
        return TrialView(trial_hex, thrashing_window_s=self.thrashing_window_s)

    def _load_campaign(self, es: EventStore) -> None:
        assert self.campaign_id is not None
        c = es.campaign(self.campaign_id)
        self._planned = c.trials_planned
        rows = []
        for tid in c.trial_ids:
            t = es.trial(tid)
            who = t.agent.name if t.agent.variant in ("default", t.agent.name) else f"{t.agent.name}/{t.agent.variant}"
            rows.append(CampaignRow(tid.hex, c.trial_index[tid], f"{t.chaos.kind} → {t.chaos.target}", who,
                                    t.outcome))
        self._campaign_rows = rows
        self._main.query_one("#campaign-panel").display = self._planned > 1
        if self.trial_id is None and rows:  # the running trial, else the last
            running = [r for r in rows if r.outcome is None]
            self.trial_id = uuid.UUID((running or rows)[-1].trial_id)

    @property
    def run_finished(self) -> bool:
        """Has everything followed ended (the trial, and each trial of a campaign of several)?"""
        if self.view is None or self.view.outcome is None:
            return False
        return all(r.outcome is not None for r in self._campaign_rows) and len(
            {r.index for r in self._campaign_rows}) >= self._planned

    # --- drawing ---------------------------------------------------------------------------------------------
    def _draw(self) -> None:
        v = self.view
        self._draw_campaign()
        title = self._main.query_one("#title", Static)
        if v is None:
            where = store_address(self.store_path)
            title.update(Text(f"waiting for a trial to start in {where}… {self.message}", style="dim"))
            return
        state = v.outcome or "running"
        head = Text.assemble(
            ("trial ", "bold"), v.trial_id[:12], "  ", (v.subject, "bold"), f"  {v.chaos} → {v.target}  agent ",
            (v.agent or "none", "bold"), (f"  approval {v.approval}" if v.approval else ""), "  ",
            (state, _OUTCOME_STYLE.get(state, "bold cyan")))
        if self._replay_t0 is not None:
            head.append(f"  replay ×{self.speed:g}" + (" (paused)" if self._paused_at is not None else ""),
                        style="italic")
        if v.reason:
            head.append(f"\n{v.reason}", style="dim")
        if self.message:
            head.append(f"\n{self.message}", style="yellow")
        title.update(head)
        self._draw_members(v)
        self._draw_clock(v)
        self._draw_availability(v)
        self._draw_steps(v)

    def _draw_campaign(self) -> None:
        if self.campaign_id is None:
            return
        done = sum(1 for r in self._campaign_rows if r.outcome is not None)
        self._main.query_one("#progress", ProgressBar).update(total=max(self._planned, 1), progress=done)
        grid = self._main.query_one("#grid", DataTable)
        grid.clear()
        for r in self._campaign_rows:
            outcome = r.outcome or "running"
            grid.add_row(str(r.index), r.trial_id[:12], r.chaos, r.agent,
                         Text(outcome, style=_OUTCOME_STYLE.get(outcome, "cyan")), key=r.trial_id)

    def _draw_availability(self, v: TrialView) -> None:
        panel = self._main.query_one("#availability", Static)
        width = max(10, panel.size.width - 4)
        worst = min(v.availability[-width:], default=None)
        bars = Text(sparkline(v.availability, width), style="green" if worst is None or worst >= 0.99 else "yellow")
        label = "-" if not v.availability else f"now {v.availability[-1]:.0%}, worst shown {worst:.0%}"
        panel.update(Text.assemble(bars, "\n", (label, "dim")))

    def _draw_members(self, v: TrialView) -> None:
        table = self._main.query_one("#members", DataTable)
        table.clear()
        for m in v.members.values():
            health = (Text("healthy", style="green") if m.healthy else
                      Text("unhealthy", style="red") if m.healthy is False else Text("-"))
            table.add_row(m.name, m.process, health, m.role, str(m.restarts),
                          Text(" ✗ target ", style="reverse red") if m.target else "")

    def _draw_clock(self, v: TrialView) -> None:
        def at(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}s"

        now = v.last_s if v.outcome or self._replay_t0 is not None else max(v.last_s, self._live_offset(v))
        ttr = v.ttr_s(now)
        lines = Text.assemble(
            f"fault injected {at(v.injected_s)}  verified {at(v.verified_s)}\n",
            f"detected {at(v.detected_s)}   TTD ", (at(v.ttd_s), "bold"), "\n",
            f"recovered {at(v.recovered_s)}   TTR ",
            (at(ttr), "bold green" if v.recovered_s is not None else "bold yellow"),
            ("" if v.recovered_s is not None or ttr is None else " (running)"),
            (f"\nwaited for a person {v.waited_s:.1f}s (not in TTR)" if v.waited_s else ""))
        self._main.query_one("#clock", Static).update(lines)

    def _live_offset(self, v: TrialView) -> float:
        # Between events the clock keeps running from the last one's wall time.
        if self._last_seen[0] != v.last_s:
            self._last_seen = (v.last_s, time.monotonic())
        return v.last_s + (time.monotonic() - self._last_seen[1])

    def _draw_steps(self, v: TrialView) -> None:
        table = self._main.query_one("#steps", DataTable)
        for i, s in enumerate(v.steps):
            cells = self._step_cells(s)
            key = str(i)
            if i < self._shown_steps:
                if s.kind == "proposal":  # a decision may have arrived since
                    table.update_cell_at(Coordinate(i, 2), cells[2])
                    table.update_cell_at(Coordinate(i, 3), cells[3])
                continue
            table.add_row(*cells, key=key)
            self._shown_steps = i + 1
            if table.cursor_row >= i - 1:
                table.move_cursor(row=i)

    @staticmethod
    def _step_cells(s: Step) -> tuple[str, str, Text, Text]:
        badge = badge_of(s)
        what = Text(s.text.splitlines()[0] if s.text else "", style="italic dim" if s.kind == "note" else "")
        if s.kind == "command" and s.exit_code not in (0, None):
            what.append(f"  (exit {s.exit_code})", style="red")
        if s.kind == "proposal" and s.decided_by:
            what.append(f"  ({s.decided_by})", style="dim")
        label = "note" if s.kind == "note" else badge
        return (str(s.step), f"{s.offset_s:.1f}s", Text(f" {label} ", style=_BADGE_STYLE.get(label, "")), what)

    # --- actions -------------------------------------------------------------------------------------------
    def action_help(self) -> None:
        """Show the keys."""
        self.push_screen(HelpScreen())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        """Enter on a step shows its output; on a campaign's trial, opens it."""
        if event.data_table.id == "grid" and self._campaign_rows:
            self.trial_id = uuid.UUID(self._campaign_rows[event.cursor_row].trial_id)
            self._main.query_one("#steps", DataTable).focus()
            self.refresh_from_store()
        elif event.data_table.id == "steps":
            self.action_output()

    def action_output(self) -> None:
        """Show (or hide) the output of the chosen step."""
        panel = self._main.query_one("#output-panel")
        if panel.display:
            panel.display = False
            return
        if self.view is None or not self.view.steps:
            return
        s = self.view.steps[min(self._main.query_one("#steps", DataTable).cursor_row, len(self.view.steps) - 1)]
        body = s.output or ("(no output)" if s.kind != "note" else s.text)
        self._main.query_one("#output", Static).update(Text(f"$ {s.text}\n{body}" if s.kind != "note" else body))
        panel.display = True

    def action_decide(self, decision: str) -> None:
        """Approve or deny the oldest command waiting for a person."""
        if self.view is None or not self.view.pending():
            self.message = "no command is waiting for approval"
            self._draw()
            return
        step = self.view.pending()[0]
        assert self.trial_id is not None
        try:
            with EventStore(self.store_path) as es:
                decided = es.decide(self.trial_id, step.step, decision, self.decider, f"{decision} in the terminal")
        except OpevalError as e:
            self.message = str(e)
        else:
            self.message = (f"step {step.step}: {decided.decision} by {decided.decided_by}")
        self.refresh_from_store()

    def action_speed(self, factor: float) -> None:
        """Replay faster or slower (the replayed position stays where it is)."""
        if self._replay_t0 is None:
            return
        now = time.monotonic()
        offset = self._replay_offset() or 0.0
        self.speed = max(0.125, min(64.0, self.speed * float(factor)))
        self._replay_t0 = now - offset / self.speed
        if self._paused_at is not None:
            self._paused_at = now

    def action_pause(self) -> None:
        """Pause or resume the replay."""
        if self._replay_t0 is None:
            return
        if self._paused_at is None:
            self._paused_at = time.monotonic()
        else:
            self._replay_t0 += time.monotonic() - self._paused_at
            self._paused_at = None

    def action_campaign(self) -> None:
        """Back to the campaign's grid."""
        if self.campaign_id is not None:
            self._main.query_one("#grid", DataTable).focus()

    def on_unmount(self) -> None:
        if self.store is not None:
            self.store.close()
