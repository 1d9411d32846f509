"""The Approval aggregate: one gated command waiting for a person's decision.

The runner creates it when a policy in ``ask`` mode gates a command; whoever decides
first (a person in the viewer or the terminal, or the timeout) appends the one
``ApprovalDecided``: the store's optimistic concurrency makes a second decision fail, so
the agent always gets exactly one answer. Its id is derived from the trial and the step
(:meth:`Approval.id_for`), so a decider needs nothing but those two.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate

_NAMESPACE = uuid.UUID("3b0f7c52-1e44-4a0e-b6d9-5f2a8c0e7d31")
#: The decisions a person (or the timeout) can give.
DECISIONS = ("allowed", "denied")


class ApprovalDecidedError(RuntimeError):
    """The approval was already decided (by someone else, or its timeout)."""


class Approval(Aggregate):
    """One request for approval and, once given, its decision."""

    TOPIC = "opeval.approval:Approval"

    class Event(Aggregate.Event):
        """Base of every approval event."""

    class Created(Aggregate.Created):
        """Base of the creation event (never stored itself)."""

        TOPIC = "opeval.approval:Created"

    class ApprovalRequested(Created):
        """A gated command waits for a person; ``timeout_s`` later it is denied."""

        TOPIC = "opeval.approval:ApprovalRequested"
        trial_id: uuid.UUID
        step: int
        command: str
        command_class: str
        timeout_s: float

    class ApprovalDecided(Event):
        """``decision`` ``allowed`` or ``denied``, by ``decided_by`` (``person:<who>`` or ``timeout``)."""

        TOPIC = "opeval.approval:ApprovalDecided"
        decision: str
        decided_by: str
        reason: str

        def apply(self, aggregate: Any) -> None:
            if aggregate.decision is not None:
                raise ApprovalDecidedError(f"already {aggregate.decision} by {aggregate.decided_by}")
            aggregate.decision, aggregate.decided_by, aggregate.reason = self.decision, self.decided_by, self.reason

    def __init__(self, trial_id: uuid.UUID, step: int, command: str, command_class: str, timeout_s: float) -> None:
        self.trial_id = trial_id
        self.step = step
        self.command = command
        self.command_class = command_class
        self.timeout_s = timeout_s
        self.decision: str | None = None
        self.decided_by: str | None = None
        self.reason = ""

    @staticmethod
    def id_for(trial_id: uuid.UUID, step: int) -> uuid.UUID:
        """The approval of ``trial_id``'s command at ``step``."""
        return uuid.uuid5(_NAMESPACE, f"approval:{trial_id.hex}:{step}")

    @classmethod
    def request(cls, trial_id: uuid.UUID, step: int, command: str, command_class: str,
                timeout_s: float) -> Approval:
        """A new request with its creation event pending."""
        return cls._create(cls.ApprovalRequested, id=cls.id_for(trial_id, step), trial_id=trial_id, step=step,
                           command=command, command_class=command_class, timeout_s=timeout_s)

    def decide(self, decision: str, decided_by: str, reason: str = "") -> None:
        """Decide it (raises :class:`ApprovalDecidedError` if it already was)."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
        self.trigger_event(self.ApprovalDecided, decision=decision, decided_by=decided_by, reason=reason)
