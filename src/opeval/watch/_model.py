"""What the terminal view shows of one trial, folded from its events one at a time.

Pure: the same events give the same view, live or replayed, so the app only decides
*which* events to apply (all new ones when following, those up to a moving offset when
replaying) and renders the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opeval.commands import classify
from opeval.events import MUTATING, Trial, thrashing_repeats, time_to_detect, time_to_recover

#: Badges of a step, in the order the issue's readers know them.
BADGES = ("read_only", "remediation", "destructive", "unknown", "thrashing", "denied", "waiting")


@dataclass
class MemberRow:
    """One member's line: health, role, restarts, and whether the fault hit it."""

    name: str
    process: str = "-"
    healthy: bool | None = None
    role: str = "-"
    restarts: int = 0
    target: bool = False


@dataclass
class Step:
    """One thing the agent did: a note, a command (with its class and output), or a
    command the approval gate is holding or refused."""

    step: int
    offset_s: float
    kind: str  # note | command | proposal
    text: str
    badge: str = ""
    exit_code: int | None = None
    output: str = ""
    decision: str = ""  # allowed | denied | "" (waiting, for a proposal in ask mode)
    decided_by: str = ""
    thrashing: bool = False


def _default_thrashing_window() -> float:
    from opeval.projections import RuleSet

    return RuleSet.default().thresholds["thrashing_window_s"]


@dataclass
class TrialView:
    """One trial as the terminal shows it."""

    trial_id: str
    version: int = 0
    subject: str = ""
    chaos: str = ""
    target: str = ""
    agent: str = ""
    approval: str = ""
    members: dict[str, MemberRow] = field(default_factory=dict)
    availability: list[float] = field(default_factory=list)
    injected_s: float | None = None
    verified_s: float | None = None
    detected_s: float | None = None
    recovered_s: float | None = None
    last_s: float = 0.0
    waited_s: float = 0.0
    steps: list[Step] = field(default_factory=list)
    outcome: str | None = None
    reason: str = ""
    #: The default rule set's window (what ``analyze`` counts under the default rules).
    thrashing_window_s: float = field(default_factory=_default_thrashing_window)
    _torn_down: bool = False  # after the final snapshot: members stopping is the teardown, not news
    # What opeval.events.thrashing_repeats reads, as the read models give it: commands and snapshots.
    _commands: list[dict[str, Any]] = field(default_factory=list)
    _states: list[dict[str, Any]] = field(default_factory=list)
    _by_position: dict[int, Step] = field(default_factory=dict)

    # --- derived ------------------------------------------------------------------------------
    @property
    def ttd_s(self) -> float | None:
        """Time to detect, once detected."""
        return time_to_detect(self.verified_s, self.detected_s)

    def ttr_s(self, now_s: float | None = None) -> float | None:
        """Time to recover (running while not recovered): the wait for a person left out."""
        end = self.recovered_s if self.recovered_s is not None else (now_s if now_s is not None else self.last_s)
        return time_to_recover(self.verified_s, end, self.waited_s)

    def pending(self) -> list[Step]:
        """Commands waiting for a person's decision."""
        return [s for s in self.steps if s.kind == "proposal" and not s.decision]

    # --- folding ------------------------------------------------------------------------------
    def apply(self, e: Any) -> None:
        """Fold one event into the view."""
        self.version = max(self.version, int(e.originator_version))
        if hasattr(e, "offset_s"):
            self.last_s = max(self.last_s, float(e.offset_s))
        handler = getattr(self, f"_on_{type(e).__name__}", None)
        if handler is not None:
            handler(e)

    def _on_TrialStarted(self, e: Trial.TrialStarted) -> None:
        self.subject, self.chaos, self.target = e.subject, e.chaos.kind, e.chaos.target
        self.agent = e.agent.name if e.agent.variant in ("default", e.agent.name) else f"{e.agent.name}/{e.agent.variant}"
        self.approval = str(e.agent.config.get("approval") or "")

    def _on_ClusterUp(self, e: Trial.ClusterUp) -> None:
        for m in e.members:
            self.members.setdefault(m.name, MemberRow(m.name, process="running"))

    def _on_StateSnapshot(self, e: Trial.StateSnapshot) -> None:
        self._torn_down = e.phase == "after"
        for m in e.state.members:
            row = self.members.setdefault(m.name, MemberRow(m.name))
            row.healthy = m.healthy
            row.role = m.role or ("-" if m.reachable else "unreachable")
            row.process = "running" if m.process_up else "down"
        self._states.append({"offset_s": e.offset_s, "leader": e.state.leader,
                             "healthy": [m.healthy for m in e.state.members]})
        self._mark_thrashing()

    def _on_WorkloadSampled(self, e: Trial.WorkloadSampled) -> None:
        ok = e.writes_ok + e.reads_ok
        total = ok + e.writes_failed + e.reads_failed
        self.availability.append(ok / total if total else 1.0)

    def _on_ChaosInjected(self, e: Trial.ChaosInjected) -> None:
        self.injected_s, self.target = e.offset_s, e.target
        for name, row in self.members.items():
            row.target = name == e.target or name in e.target.split(",")

    def _on_ChaosVerified(self, e: Trial.ChaosVerified) -> None:
        self.verified_s = e.offset_s

    def _on_FaultDetected(self, e: Trial.FaultDetected) -> None:
        if self.detected_s is None:
            self.detected_s = e.offset_s

    def _on_RecoveryDetected(self, e: Trial.RecoveryDetected) -> None:
        self.recovered_s = e.criteria_met_offset_s

    def _on_MemberProcessExited(self, e: Trial.MemberProcessExited) -> None:
        if self._torn_down:
            return
        row = self.members.setdefault(e.member, MemberRow(e.member))
        row.process, row.healthy = (f"killed (signal {e.signal})" if e.signal else f"exited ({e.exit_code})"), False

    def _on_MemberProcessStarted(self, e: Trial.MemberProcessStarted) -> None:
        row = self.members.setdefault(e.member, MemberRow(e.member))
        row.process, row.restarts = "running", e.restarts

    def _on_AgentReasoning(self, e: Trial.AgentReasoning) -> None:
        self.steps.append(Step(e.step, e.offset_s, "note", e.text))

    def _on_AgentCommandExecuted(self, e: Trial.AgentCommandExecuted) -> None:
        cls = classify(e.command)
        step = Step(e.step, e.started_offset_s, "command", e.command, badge=cls, exit_code=e.exit_code,
                    output=(e.stdout + ("\n" + e.stderr if e.stderr else "")).rstrip())
        self.steps.append(step)
        position = int(e.originator_version)
        self._commands.append({"position": position, "offset_s": e.started_offset_s, "command": e.command,
                               "class": cls})
        self._by_position[position] = step
        self._mark_thrashing()

    def _mark_thrashing(self) -> None:
        """Badge every repeat the rule finds in what has been seen so far (a snapshot
        arriving later can change an earlier verdict, as it would in the read models)."""
        if sum(c["class"] in MUTATING for c in self._commands) < 2:
            return  # a repeat needs two mutating commands: most snapshots cost nothing here
        repeats = set(thrashing_repeats(self._commands, self._states, self.thrashing_window_s))
        for position, step in self._by_position.items():
            step.thrashing = position in repeats

    def _on_CommandProposed(self, e: Trial.CommandProposed) -> None:
        self.steps.append(Step(e.step, e.offset_s, "proposal", e.command, badge=e.command_class,
                               decision="allowed" if e.mode == "allow" else ""))

    def _on_CommandDecided(self, e: Trial.CommandDecided) -> None:
        self.waited_s += e.waited_s
        for s in reversed(self.steps):
            if s.kind == "proposal" and s.step == e.step:
                s.decision, s.decided_by = e.decision, e.decided_by
                s.output = e.reason
                break

    def _on_TrialFinished(self, e: Trial.TrialFinished) -> None:
        self.outcome, self.reason = e.outcome, e.reason


@dataclass
class CampaignRow:
    """One trial of a campaign in the grid."""

    trial_id: str
    index: int
    chaos: str
    agent: str
    outcome: str | None


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int) -> str:
    """The last ``width`` shares (0 to 1) as bars on an absolute scale (full: every operation succeeded)."""
    return "".join(_BARS[min(len(_BARS) - 1, max(0, round(v * (len(_BARS) - 1))))] for v in values[-width:])


def badge_of(step: Step) -> str:
    """The one badge a step shows first: the gate's decision, then thrashing, then its class."""
    if step.kind == "proposal":
        return step.decision or "waiting"
    if step.thrashing:
        return "thrashing"
    return step.badge
