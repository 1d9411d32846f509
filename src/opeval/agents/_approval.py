"""The approval gate: a variant's policy for commands of risky classes, applied before
they run.

A policy names the gated classes (default: ``destructive`` and ``unknown``) and a mode:
``allow`` (run it, but record the proposal), ``deny`` (the agent gets a refusal that says
why, and carries on) or ``ask`` (a person approves or denies it, in the terminal or the
web viewer, before a timeout that denies). Commands are classified by the same rules the
analysis uses (:func:`opeval.commands.classify_parts`); a pipeline or chain is gated if
any of its parts is. Every proposal and decision is a trial event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from opeval.commands import CLASSES, DESTRUCTIVE, UNKNOWN, classify, classify_parts
from opeval.errors import UsageError
from opeval.events import Scalar, Trial
from opeval.sandbox import CommandResult

MODES = ("allow", "deny", "ask")
DEFAULT_GATED = (DESTRUCTIVE, UNKNOWN)
DEFAULT_TIMEOUT_S = 120.0
#: The exit code a refused command returns (the shell's "found but not run").
REFUSED_EXIT = 126
#: Who denied a command whose agent was stopped while it waited.
STOPPED = "harness"
_KEYS = ("mode", "gate", "timeout_s")
_FORM = ("give a mode (allow, deny or ask), optionally with the gated classes: `deny`, "
         "`ask:destructive,unknown`, or in a campaign file {mode: ask, gate: [destructive], timeout_s: 60}")


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which classes of command are gated, and what happens to them."""

    mode: str
    gated: tuple[str, ...] = DEFAULT_GATED
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def parse(cls, value: object, where: str = "approval") -> ApprovalPolicy:
        """From ``--approval`` (``deny``, ``ask:destructive,unknown``) or a campaign file's
        ``approval:`` (that text, or a mapping of mode, gate and timeout_s)."""
        if isinstance(value, str):
            mode, _, classes = value.strip().partition(":")
            return cls._checked(mode.strip(), classes.split(",") if classes else None, None, where)
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in _KEYS]
            if unknown:
                raise UsageError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(_KEYS)})")
            if "mode" not in value:
                raise UsageError(f"{where}: mode missing: {_FORM}")
            gate = value.get("gate")
            if gate is not None and not (isinstance(gate, list) and all(isinstance(g, str) for g in gate)):
                raise UsageError(f"{where}.gate: a list of command classes ({', '.join(CLASSES)}), not {gate!r}")
            timeout = value.get("timeout_s")
            if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                        or timeout <= 0):
                raise UsageError(f"{where}.timeout_s: must be a positive number of seconds, not {timeout!r}")
            return cls._checked(value["mode"], gate, timeout, where)
        raise UsageError(f"{where}: {value!r} is not a policy: {_FORM}")

    @classmethod
    def _checked(cls, mode: object, gate: list[str] | None, timeout: float | None, where: str) -> ApprovalPolicy:
        if mode not in MODES:
            raise UsageError(f"{where}: unknown mode {mode!r}: {_FORM}")
        classes = tuple(dict.fromkeys(g.strip() for g in gate)) if gate is not None else DEFAULT_GATED
        bad = [c for c in classes if c not in CLASSES]
        if bad or not classes:
            what = f"{bad[0]!r} is not a command class" if bad else "no command class to gate"
            raise UsageError(f"{where}: {what} (gate any of {', '.join(CLASSES)})")
        return cls(mode=str(mode), gated=classes, timeout_s=float(timeout or DEFAULT_TIMEOUT_S))

    def config(self) -> dict[str, Scalar]:
        """The policy as agent settings (recorded in TrialStarted with the variant)."""
        return {"approval": self.mode, "approval_gate": ",".join(self.gated), "approval_timeout_s": self.timeout_s}

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> ApprovalPolicy | None:
        """The policy in an agent's settings, if it has one."""
        if not cfg.get("approval"):
            return None
        return cls(mode=str(cfg["approval"]), gated=tuple(str(cfg.get("approval_gate") or
                                                              ",".join(DEFAULT_GATED)).split(",")),
                   timeout_s=float(cfg.get("approval_timeout_s") or DEFAULT_TIMEOUT_S))

    def describe(self) -> str:
        """``deny destructive, unknown`` for status lines and tables."""
        return f"{self.mode} {', '.join(self.gated)}"


@dataclass(frozen=True)
class Verdict:
    """A decision on one proposed command."""

    decision: str  # allowed | denied
    decided_by: str  # policy | timeout | person:<who>
    reason: str


class Approver(Protocol):
    """Where ``ask`` sends a gated command: it answers with a person's verdict, or the
    timeout's denial."""

    async def ask(self, trial_id: uuid.UUID, step: int, command: str, command_class: str,
                  timeout_s: float) -> Verdict:
        """Wait (at most ``timeout_s``) for a decision on the command."""
        ...


class StoreApprover:
    """Asks through the event store: an Approval request anyone with the store can
    decide (the viewer, ``opeval watch``); the first decision wins, the timeout's included."""

    def __init__(self, store: Any, poll_s: float = 0.1) -> None:
        self.store = store
        self.poll_s = poll_s

    async def ask(self, trial_id: uuid.UUID, step: int, command: str, command_class: str,
                  timeout_s: float) -> Verdict:
        from opeval.events import Approval

        self.store.save(Approval.request(trial_id, step, command, command_class, timeout_s))
        try:
            with anyio.move_on_after(timeout_s):
                while True:
                    found = self.store.approval(trial_id, step)
                    if found is not None and found.decision is not None:
                        break
                    await anyio.sleep(self.poll_s)
        except anyio.get_cancelled_exc_class():  # the agent was stopped: nobody may approve it later
            self.store.decide(trial_id, step, "denied", STOPPED, "the agent was stopped before anyone decided")
            raise
        # A no-op if someone decided; else the timeout's denial, unless a person beats it to the store.
        decided = self.store.decide(trial_id, step, "denied", "timeout", f"nobody decided within {timeout_s:g}s")
        return Verdict(str(decided.decision), str(decided.decided_by), decided.reason)


class ApprovalGate:
    """Reviews each command before it runs, under one policy, and records what it decided."""

    def __init__(self, policy: ApprovalPolicy, *, record: Callable[..., Any], clock: Callable[[], float],
                 trial_id: uuid.UUID, approver: Approver | None = None) -> None:
        if policy.mode == "ask" and approver is None:
            raise UsageError("an `ask` approval policy needs somewhere to ask (an approver)")
        self.policy = policy
        self.record = record
        self.clock = clock
        self.trial_id = trial_id
        self.approver = approver
        self.waits: list[tuple[float, float]] = []  # (from, to) offsets the agent waited for a person

    def _waited(self, proposed: float) -> float:
        """The wait since ``proposed``, measured once: what TTR leaves out is exactly what
        the CommandDecided event says (the read models subtract ``proposed_offset_s`` to
        ``proposed_offset_s + waited_s``, computed the same way)."""
        waited = round(self.clock() - proposed, 6)
        self.waits.append((proposed, proposed + waited))
        return waited

    def waited_between(self, start_s: float, end_s: float) -> float:
        """Seconds of waiting for a person inside ``[start_s, end_s]`` (excluded from time to recover)."""
        return sum(max(0.0, min(b, end_s) - max(a, start_s)) for a, b in self.waits)

    async def review(self, step: int, command: str) -> CommandResult | None:
        """None: run the command. Otherwise the refusal the agent gets instead of its output."""
        parts = classify_parts(command)
        gated_by = sorted({p for p in parts if p in self.policy.gated})
        if not gated_by:
            return None
        whole, mode = classify(command), self.policy.mode
        proposed = self.clock()
        self.record(Trial.CommandProposed, step=step, command=command, command_class=whole, parts=parts,
                    gated_by=gated_by, mode=mode, timeout_s=self.policy.timeout_s, offset_s=proposed)
        if mode == "allow":
            verdict = Verdict("allowed", "policy", "allowed and recorded (policy: allow)")
        elif mode == "deny":
            verdict = Verdict("denied", "policy", f"the approval policy denies {' and '.join(gated_by)} commands")
        else:
            assert self.approver is not None
            try:
                verdict = await self.approver.ask(self.trial_id, step, command, whole, self.policy.timeout_s)
            except anyio.get_cancelled_exc_class():
                waited = self._waited(proposed)
                with anyio.CancelScope(shield=True):
                    self.record(Trial.CommandDecided, step=step, command=command, command_class=whole, mode=mode,
                                decision="denied", decided_by=STOPPED, reason="the agent was stopped before anyone "
                                "decided", proposed_offset_s=proposed, waited_s=waited)
                raise
        waited = self._waited(proposed) if mode == "ask" else 0.0
        self.record(Trial.CommandDecided, step=step, command=command, command_class=whole, mode=mode,
                    decision=verdict.decision, decided_by=verdict.decided_by, reason=verdict.reason,
                    proposed_offset_s=proposed, waited_s=waited)
        if verdict.decision == "allowed":
            return None
        text = (f"opeval: command refused, not run: {verdict.reason} "
                f"(it was classed {whole}; decided by {verdict.decided_by}). Try another way.\n")
        return CommandResult(command=command, exit_code=REFUSED_EXIT, timed_out=False, stdout="", stderr=text,
                             stdout_bytes=0, stderr_bytes=len(text.encode()), stdout_truncated=False,
                             stderr_truncated=False, started_offset_s=proposed, duration_s=0.0)
