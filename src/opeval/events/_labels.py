"""The CommandLabels aggregate: what a model said about commands the rules left unknown.

A model's answer is not reproducible, so it is recorded as an event before anything
uses it; the projections read these events and never call a model themselves. One
stream per model: ``CommandLabels.id_for(model)``.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate

from opeval.events._types import HarnessInfo

_NAMESPACE = uuid.UUID("6f1c3e0a-8d2b-4f61-9a57-0c4d2e7b9a10")


class CommandLabels(Aggregate):
    """Labels one model gave to commands, in the order it gave them."""

    TOPIC = "opeval.labels:CommandLabels"

    class Event(Aggregate.Event):
        """Base of every labels event."""

    class Created(Aggregate.Created):
        """Base of the creation event (never stored itself)."""

        TOPIC = "opeval.labels:Created"

    class LabelsStarted(Created):
        """The first time this model was asked to classify commands."""

        TOPIC = "opeval.labels:LabelsStarted"
        model: str
        harness: HarnessInfo

    class ModelCalled(Event):
        """One API call: what it cost and how many commands it labelled."""

        TOPIC = "opeval.labels:ModelCalled"
        model: str
        commands: int
        input_tokens: int
        output_tokens: int
        cost_usd: float | None

    class CommandClassified(Event):
        """The model's class for one command (``read_only``, ``remediation``,
        ``destructive`` or ``unknown``), with its one-line reason."""

        TOPIC = "opeval.labels:CommandClassified"
        command: str
        label: str
        rationale: str
        model: str
        prompt_version: int

        def apply(self, aggregate: Any) -> None:
            aggregate.labels[self.command] = self.label

    def __init__(self, model: str, harness: HarnessInfo) -> None:
        self.model = model
        self.harness = harness
        self.labels: dict[str, str] = {}

    @staticmethod
    def id_for(model: str) -> uuid.UUID:
        """The stream of ``model``'s labels (stable, so every run appends to the same one)."""
        return uuid.uuid5(_NAMESPACE, f"command-labels:{model}")

    @classmethod
    def start(cls, model: str, harness: HarnessInfo) -> CommandLabels:
        """A new stream for ``model`` with its start event pending."""
        return cls._create(cls.LabelsStarted, id=cls.id_for(model), model=model, harness=harness)
