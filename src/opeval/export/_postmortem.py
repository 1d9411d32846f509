"""One trial as a postmortem reads it: its read-model row (scores under a rule set), its
events decoded back into the trial's event classes, and its classified commands."""

from __future__ import annotations

import dataclasses
from typing import Any
from uuid import UUID

import duckdb
import msgspec
from eventsourcing.persistence import StoredEvent

from opeval.errors import UsageError
from opeval.events import MsgspecMapper, Trial, Words
from opeval.projections import RuleSet, trial_commands, trial_events, trial_scores

#: The stored topic of a trial event is this prefix and the name the read models keep.
_TOPIC = Trial.TOPIC.partition(":")[0] + ":"


@dataclasses.dataclass(frozen=True)
class Postmortem:
    """Everything a postmortem of one trial shows, read once from the read models."""

    trial: dict[str, Any]  # the trial's read-model row joined with its scores under ``rules``
    rules: RuleSet
    events: list[Any]  # the trial's events, oldest first (Trial.* instances)
    positions: list[int]  # each event's position in the log
    commands: list[dict[str, Any]]  # the read models' commands (class, step...), in the order they ran
    words: Words

    @property
    def control(self) -> bool:
        """A control trial: no fault injected."""
        return bool(self.trial.get("control"))

    def first(self, cls: type) -> Any:
        """The trial's first event of ``cls`` (None if it has none)."""
        return next((e for e in self.events if isinstance(e, cls)), None)


def load_postmortem(con: duckdb.DuckDBPyConnection, rules: RuleSet, trial_id: str) -> Postmortem:
    """A trial's postmortem material from up-to-date read models."""
    rows = trial_scores(con, rules, trial_id=trial_id)
    if not rows:
        raise UsageError(f"trial {trial_id} has no read model yet")
    mapper = MsgspecMapper()
    events, positions = [], []
    # The read models keep each event as this version writes it, so it decodes with its class directly.
    for e in trial_events(con, trial_id):
        events.append(mapper.to_domain_event(StoredEvent(UUID(trial_id), e.version, _TOPIC + e.type,
                                                         e.state.encode())))
        positions.append(e.position)
    commands = [msgspec.to_builtins(c) for c in trial_commands(con, trial_id, by_time=True)]
    from opeval.subjects import words_for  # imported here: loading the subjects pulls their clients in

    return Postmortem(trial=rows[0], rules=rules, events=events, positions=positions, commands=commands,
                      words=words_for(rows[0]["subject"]))
