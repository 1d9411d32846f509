"""``opeval verify``: does the log replay, in order, and does every trial live a whole life?

One pass over the log in notification order (SQLite's rowid) finds:

- events this version cannot decode (written by an older, laxer one), each named;
- an aggregate's versions out of order or with a gap (its events must be 1, 2, 3... in
  the order the log holds them);
- trials whose life is not ``TrialStarted -> ... -> TrialFinished`` (a first event that
  is not TrialStarted, two endings, events after the end, an end whose outcome is
  unknown), and campaigns that schedule trials the log does not hold.

A trial with no end yet is running (or its harness died: ``opeval cleanup`` records it as
aborted); it is counted, not reported as a problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from opeval.errors import UndecodableEvent
from opeval.events import OUTCOMES, MsgspecMapper

_STARTS = {"opeval.trial:": "TrialStarted", "opeval.campaign:": "CampaignStarted", "opeval.labels:": "LabelsStarted"}
_KINDS = {"opeval.trial:": "trial", "opeval.campaign:": "campaign", "opeval.labels:": "labels"}


@dataclass
class Problem:
    """One thing wrong with the log: where (aggregate, event, position) and what."""

    kind: str  # undecodable | order | life_cycle
    aggregate: str  # trial, campaign, labels
    aggregate_id: str
    event: str
    version: int
    position: int
    detail: str

    def line(self) -> str:
        """One line for the terminal."""
        return (f"{self.aggregate} {self.aggregate_id[:8]}: {self.event} #{self.version} (log position "
                f"{self.position}): {self.detail}")


@dataclass
class Report:
    """What ``verify`` found."""

    events: int = 0
    trials: int = 0
    campaigns: int = 0
    unfinished: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing wrong."""
        return not self.problems


def _prefix(topic: str) -> str:
    return topic.partition(":")[0] + ":"


@dataclass
class _Aggregate:
    prefix: str
    last_version: int = 0
    finished_at: int | None = None  # the version of its TrialFinished
    scheduled: list[tuple[str, int, int]] = field(default_factory=list)  # (trial id, version, position)


def _rows(recorder: Any, batch: int = 10_000) -> Iterator[tuple[int, str, int, str, bytes]]:
    after = 0
    while True:
        with recorder.datastore.transaction(commit=False) as c:
            c.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events "
                      "WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, batch))
            rows = [tuple(r) for r in c.fetchall()]
        yield from rows  # type: ignore[misc]
        if len(rows) < batch:
            return
        after = rows[-1][0]


def verify_log(recorder: Any) -> Report:
    """Check the whole log of an event store (its eventsourcing recorder)."""
    mapper = MsgspecMapper()
    report = Report()
    seen: dict[str, _Aggregate] = {}

    for position, oid, version, topic, state in _rows(recorder):
        report.events += 1
        prefix = _prefix(topic)
        name = topic.rpartition(":")[2]
        agg = seen.get(oid)
        kind = _KINDS.get(prefix, "aggregate") if agg is None else _KINDS.get(agg.prefix, "aggregate")

        def problem(what: str, detail: str, *, v: int = version, ev: str = name, at: int = position,
                    of: str = oid, k: str = kind) -> None:
            report.problems.append(Problem(what, k, of, ev, v, at, detail))

        event = None
        try:
            event = mapper.to_domain_event(StoredEvent(oid, version, topic, state))  # type: ignore[arg-type]
        except UndecodableEvent as e:
            problem("undecodable", f"cannot be decoded: {e.reason}")

        if agg is None:
            agg = seen[oid] = _Aggregate(prefix)
            if name == "TrialStarted":
                report.trials += 1
            elif name == "CampaignStarted":
                report.campaigns += 1
            start = _STARTS.get(prefix)
            if version != 1:
                problem("order", f"the log holds no version 1 before it (versions must start at 1)")
            elif start is not None and name != start:
                problem("life_cycle", f"the first event of a {kind} must be {start}")
        else:
            if agg.prefix != prefix:
                problem("order", f"an event of another kind of aggregate ({_KINDS.get(prefix, prefix)})")
            if version != agg.last_version + 1:
                problem("order", f"comes after version {agg.last_version} in the log "
                                 f"(expected version {agg.last_version + 1})")
            if name in _STARTS.values():
                problem("life_cycle", f"a second {name}")
        if agg.finished_at is not None:
            problem("life_cycle", f"recorded after the trial finished (TrialFinished #{agg.finished_at})")
        if name == "TrialFinished":
            agg.finished_at = version
            if event is not None and event.outcome not in OUTCOMES:
                problem("life_cycle", f"outcome {event.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if name == "TrialScheduled" and event is not None:
            agg.scheduled.append((event.trial_id.hex, version, position))
        agg.last_version = max(agg.last_version, version)

    for oid, agg in seen.items():
        if agg.prefix == "opeval.trial:" and agg.finished_at is None:
            report.unfinished.append(oid)
        for trial_id, version, position in agg.scheduled:
            if trial_id not in seen and str(UUID(trial_id)) not in seen:
                report.problems.append(Problem("life_cycle", "campaign", oid, "TrialScheduled", version, position,
                                               f"schedules trial {trial_id[:8]}, which the log does not hold"))
    return report
