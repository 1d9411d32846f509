"""Finding what dead harnesses left behind, reaping it, and recording their trials as
aborted. Found from the resource journal and from the event log, never by process name."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from opeval.errors import OpevalError, StoreError
from opeval.events import Campaign, Trial
from opeval.runtimes import Reaped, is_same_process, reap_orphans
from opeval.store import EventStore, parse_store, same_store


@dataclass
class CleanupReport:
    """What one cleanup did."""

    reaped: list[Reaped] = field(default_factory=list)
    aborted: list[UUID] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _harness_dead(trial: Trial) -> bool:
    h = trial.harness
    return h.host == socket.gethostname() and not is_same_process(h.pid, h.start_ticks)


def _boot_time() -> dt.datetime | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return dt.datetime.fromtimestamp(int(line.split()[1]), dt.UTC)
    except OSError:
        pass
    return None


def death_cause(trial: Trial, started: dt.datetime) -> str:
    """Why a trial's harness is gone, as far as this machine can tell."""
    booted = _boot_time()
    if booted is not None and booted > started:
        return f"the machine rebooted at {booted:%Y-%m-%d %H:%M:%S} UTC, during the trial"
    return f"harness pid {trial.harness.pid} ended without finishing the trial (killed or crashed)"


def mark_aborted(store: EventStore, trial_id: UUID, reason: str, reaped: Iterable[str] = ()) -> bool:
    """Record TrialAborted + TrialFinished(aborted) unless the trial already finished."""
    trial = store.trial(trial_id)
    if trial.outcome is not None:
        return False
    started = store.events(trial_id)[0].timestamp
    offset = round((dt.datetime.now(dt.UTC) - started).total_seconds(), 6)
    if trial.harness.host == socket.gethostname():
        reason = f"{reason}: {death_cause(trial, started)}"
    trial.record(Trial.TrialAborted, reason=reason, reaped=list(reaped), offset_s=offset)
    trial.record(Trial.TrialFinished, outcome="aborted", reason=reason, time_to_detect_s=trial.time_to_detect(),
                 time_to_recover_s=None, offset_s=offset)
    try:
        store.save(trial)
    except IntegrityError:  # another process (a worker's cleanup, the coordinator) recorded its end first
        return False
    finish_campaign_if_done(store, trial.campaign_id)
    return True


def finish_campaign_if_done(store: EventStore, campaign_id: UUID) -> None:
    """Record CampaignFinished once every planned trial of the campaign has ended.

    In a resumable campaign (a campaign file) an aborted trial does not count: its index
    runs again on ``--resume``, and the campaign ends when every index has a real outcome.
    """
    campaign = store.campaign(campaign_id)
    if campaign.finished or len(campaign.trial_ids) < campaign.trials_planned:
        return
    resumable = campaign.spec.get("resumable") is True
    outcomes: dict[str, int] = {}
    done: set[int] = set()
    for tid in campaign.trial_ids:
        outcome = store.trial(tid).outcome
        if outcome is None:
            return
        if resumable and outcome == "aborted":
            continue
        done.add(campaign.trial_index.get(tid, -1))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    if resumable and not set(range(campaign.trials_planned)) <= done:
        return
    campaign.trigger_event(Campaign.CampaignFinished, outcomes=outcomes)
    with contextlib.suppress(IntegrityError):  # another process appended first; it (or the next call) finishes it
        store.save(campaign)


def cleanup(store: EventStore | None) -> CleanupReport:
    """Reap every dead harness's resources on this machine; mark their trials aborted.

    ``store`` (if given) is also scanned for unfinished trials whose harness on this host
    is gone, which covers a harness killed before its journal was written.
    """
    report = CleanupReport()
    report.reaped = reap_orphans()
    for r in report.reaped:
        what = [f"pid {p}" for p in r.killed] + [f"dir {d}" for d in r.removed]
        reason = "harness died mid-trial; its leftovers were reaped by cleanup"
        try:
            if store is not None and same_store(parse_store(r.store), store.path):
                if mark_aborted(store, UUID(r.trial_id), reason, what):
                    report.aborted.append(UUID(r.trial_id))
            else:
                with EventStore(r.store) as other:
                    if mark_aborted(other, UUID(r.trial_id), reason, what):
                        report.aborted.append(UUID(r.trial_id))
        except OpevalError as e:
            report.problems.append(f"trial {r.trial_id[:8]}: reaped, but not recorded as aborted ({e})")
    if store is not None:
        for tid in store.unfinished_trials():
            if tid in report.aborted:
                continue
            try:
                trial = store.trial(tid)
            except StoreError:  # its start cannot be decoded (the store has warned): nothing to judge it by
                continue
            if _harness_dead(trial) and mark_aborted(
                store, tid, "harness died mid-trial; found unfinished in the event log"
            ):
                report.aborted.append(tid)
    return report
