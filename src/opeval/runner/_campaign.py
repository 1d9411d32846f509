"""Campaigns: the one-trial campaign behind ``opeval run``, and campaign files run in
parallel, interruptible and resumable."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import anyio

from opeval.agents import Agent

from opeval.errors import OpevalError, StoreError, UsageError
from opeval.events import Campaign, Scalar
from opeval.runner._campaign_file import CampaignPlan, PlannedTrial
from opeval.runner._cleanup import finish_campaign_if_done
from opeval.runner._ray import RayOptions, check_store, run_on_ray
from opeval.runner._trial import TrialRequest, TrialResult, TrialStatus, harness_info, prepare, run_trial, sole_error
from opeval.store import EventStore


def _spec_of(req: TrialRequest) -> dict[str, Scalar]:
    return {
        "subject": req.subject, "runtime": req.runtime, "chaos": req.chaos.kind,
        "target": req.chaos.target, "agent": req.agent.name, "seed": req.seed,
        "members": req.config.members, "restart_policy": req.config.restart_policy,
        "timeout_s": req.config.timeout_s,
    }


def one_trial_name(req: TrialRequest) -> str:
    """The name of ``opeval run``'s one-trial campaign: subject, chaos, agent (its variant,
    if named) and seed, so that runs can be told apart in a list."""
    variant = req.agent.variant
    who = req.agent.name if variant in ("default", req.agent.name) else f"{req.agent.name}/{variant}"
    return f"{req.subject}/{req.chaos.kind}/{who} seed {req.seed}"


async def run_single(
    store: EventStore,
    req: TrialRequest,
    *,
    on_status: Callable[[TrialStatus], Any] = lambda s: None,
    handle_signals: bool = True,
    agent: Agent | None = None,
) -> TrialResult:
    """Run ``req`` as a one-trial campaign. SIGINT/SIGTERM abort it cleanly."""
    if agent is None:
        prepare(req)
    campaign = Campaign._create(
        Campaign.CampaignStarted, name=one_trial_name(req), spec=_spec_of(req), trials_planned=1,
        harness=harness_info(),
    )
    store.save(campaign)
    scope = anyio.CancelScope()
    caught: list[str] = []

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                caught.append(signal.Signals(signum).name)
                scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            if handle_signals:
                tg.start_soon(watch_signals)
            try:
                result = await run_trial(store, campaign, 0, req, cancel_scope=scope,
                                         interrupted=lambda: caught[0] if caught else None, on_status=on_status,
                                         agent=agent)
            finally:
                tg.cancel_scope.cancel()
                with contextlib.suppress(OpevalError):  # a broken store already has its error on the way
                    finish_campaign_if_done(store, campaign.id)
    except BaseExceptionGroup as group:  # the trial's own error, not a group of one: the CLI prints it in a line
        raise sole_error(group) from None
    return result


@dataclass
class CampaignRun:
    """How a campaign run went: the trials it ran now, those skipped as already done."""

    campaign_id: UUID
    name: str
    planned: int
    ran: list[tuple[PlannedTrial, TrialResult]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    interrupted: str | None = None
    finished: bool = False


def _find_resumable(store: EventStore, plan: CampaignPlan) -> Campaign:
    candidates: list[Campaign] = []
    other_file = False
    for _, e in store.iter_events(topics=["opeval.campaign:CampaignStarted"]):
        if e.name != plan.name or e.spec.get("resumable") is not True:
            continue
        campaign = store.campaign(e.originator_id)
        if campaign.finished:
            continue
        if e.spec.get("sha256") != plan.sha256:
            other_file = True
            continue
        candidates.append(campaign)
    if not candidates:
        hint = (" (one exists, but from a different version of the file: restore it, or run without --resume)"
                if other_file else ": run it without --resume to start it")
        raise UsageError(f"no unfinished campaign {plan.name!r} from {plan.path} to resume{hint}")
    return candidates[-1]


def _done_indexes(store: EventStore, campaign: Campaign) -> set[int]:
    done = set()
    for tid in campaign.trial_ids:
        try:
            outcome = store.trial(tid).outcome
        except StoreError:  # its start cannot be decoded (the store has warned): run that index again
            continue
        if outcome in ("recovered", "not_recovered", "error"):
            done.add(campaign.trial_index[tid])
    return done


@contextlib.contextmanager
def _campaign_lock(campaign_id: UUID) -> Iterator[None]:
    """One harness per campaign at a time, so a resume can never run a trial twice."""
    from opeval.runtimes import runtime_dir

    lock_dir = runtime_dir() / "campaigns"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{campaign_id.hex}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"campaign {campaign_id.hex[:8]} is being run by another opeval process") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


async def run_campaign(
    store: EventStore,
    plan: CampaignPlan,
    *,
    parallel: int | None = None,
    resume: bool = False,
    on_trial_done: Callable[[PlannedTrial, TrialResult], Any] = lambda p, r: None,
    on_trial_start: Callable[[PlannedTrial], Any] = lambda p: None,
    on_trial_status: Callable[[PlannedTrial, TrialStatus], Any] = lambda p, s: None,
    on_campaign: Callable[[CampaignRun], Any] = lambda r: None,
    handle_signals: bool = True,
    ray: RayOptions | None = None,
) -> CampaignRun:
    """Run (or, with ``resume``, continue) the campaign of ``plan``.

    Trials run ``parallel`` at a time, each with its own ports and directories. On
    SIGINT/SIGTERM the running trials are recorded as aborted and no new one starts;
    ``resume`` later runs every index that has no finished trial, and only those.
    ``on_campaign`` hears of the campaign once it is recorded (or found), with the indexes
    already done; ``on_trial_status`` of each running trial's phase, for a progress display.

    With ``ray``, each trial is a task on a Ray cluster instead of a task of this process
    (see ``opeval.runner._ray``); ``parallel`` then caps the trials in flight (default:
    as many as the cluster has CPUs for).
    """
    if ray is not None:
        check_store(store.path)  # before anything is recorded
    width = max(1, parallel or plan.parallel)
    requests = {t.index: TrialRequest(subject=plan.subject, runtime=plan.runtime, chaos=t.chaos, agent=t.agent,
                                      config=plan.config, seed=t.seed, sandbox=plan.sandbox) for t in plan.trials}
    for req in requests.values():
        prepare(req)  # unknown kinds, missing API keys: before anything is recorded
    if resume:
        campaign = _find_resumable(store, plan)
        done = _done_indexes(store, campaign)
    else:
        campaign = Campaign._create(Campaign.CampaignStarted, name=plan.name, spec=plan.spec(),
                                    trials_planned=len(plan.trials), harness=harness_info())
        store.save(campaign)
        done = set()
    result = CampaignRun(campaign.id, plan.name, len(plan.trials), skipped=sorted(done))
    on_campaign(result)
    todo = [t for t in plan.trials if t.index not in done]
    caught: list[str] = []
    running: list[anyio.CancelScope] = []
    limiter = anyio.CapacityLimiter(width)

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                caught.append(signal.Signals(signum).name)
                for s in list(running):  # each running trial records itself as aborted
                    s.cancel()

    async def one(t: PlannedTrial) -> None:
        async with limiter:
            if caught:
                return
            on_trial_start(t)
            trial_scope = anyio.CancelScope()
            running.append(trial_scope)
            try:
                r = await run_trial(store, campaign, t.index, requests[t.index], cancel_scope=trial_scope,
                                    interrupted=lambda: caught[0] if caught else None,
                                    on_status=lambda s: on_trial_status(t, s))
            except OpevalError as e:  # already recorded as an error by run_trial; the campaign goes on
                r = TrialResult(uuid.UUID(int=0), "error", str(e), None, None)
            finally:
                running.remove(trial_scope)
            result.ran.append((t, r))
            on_trial_done(t, r)

    def done_on_ray(t: PlannedTrial, r: TrialResult) -> None:
        result.ran.append((t, r))
        on_trial_done(t, r)

    with _campaign_lock(campaign.id):
        async with anyio.create_task_group() as outer:
            if handle_signals:
                outer.start_soon(watch_signals)
            if ray is not None:
                await anyio.to_thread.run_sync(functools.partial(
                    run_on_ray, store, campaign, todo, requests, ray, width=parallel, caught=caught,
                    on_start=on_trial_start, on_status=on_trial_status, on_done=done_on_ray))
            else:
                async with anyio.create_task_group() as tg:
                    for t in todo:
                        tg.start_soon(one, t)
            outer.cancel_scope.cancel()
        with contextlib.suppress(OpevalError):
            finish_campaign_if_done(store, campaign.id)
    result.interrupted = caught[0] if caught else None
    result.finished = store.campaign(campaign.id).finished
    return result

