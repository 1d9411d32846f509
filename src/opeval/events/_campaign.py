"""The Campaign aggregate: a named set of trials (``opeval run`` makes a one-trial one)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from opeval.events._types import HarnessInfo, Scalar


class Campaign(Aggregate):
    """A campaign and the trials it scheduled."""

    TOPIC = "opeval.campaign:Campaign"

    class Event(Aggregate.Event):
        """Base of every campaign event."""

    class Created(Aggregate.Created):
        """Base of the creation event (never stored itself)."""

        TOPIC = "opeval.campaign:Created"

    class CampaignStarted(Created):
        """A campaign began; ``spec`` is its definition as given."""

        TOPIC = "opeval.campaign:CampaignStarted"
        name: str
        spec: dict[str, Scalar]
        trials_planned: int
        harness: HarnessInfo

    class TrialScheduled(Event):
        """A trial of this campaign was created."""

        TOPIC = "opeval.campaign:TrialScheduled"
        trial_id: UUID
        index: int

        def apply(self, aggregate: Any) -> None:
            aggregate.trial_ids.append(self.trial_id)
            aggregate.trial_index[self.trial_id] = self.index

    class CampaignFinished(Event):
        """Every scheduled trial ended; ``outcomes`` counts them by outcome."""

        TOPIC = "opeval.campaign:CampaignFinished"
        outcomes: dict[str, int]

        def apply(self, aggregate: Any) -> None:
            aggregate.finished = True

    def __init__(
        self, name: str, spec: dict[str, Scalar], trials_planned: int, harness: HarnessInfo
    ) -> None:
        self.name = name
        self.spec = spec
        self.trials_planned = trials_planned
        self.harness = harness
        self.trial_ids: list[UUID] = []
        self.trial_index: dict[UUID, int] = {}
        self.finished = False
