"""Campaigns: today, the one-trial campaign behind ``opeval run``."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from typing import Any

import anyio

from opeval.agents import Agent

from opeval.errors import OpevalError
from opeval.events import Campaign, Scalar
from opeval.runner._cleanup import finish_campaign_if_done
from opeval.runner._trial import TrialRequest, TrialResult, TrialStatus, harness_info, prepare, run_trial
from opeval.store import EventStore


def _spec_of(req: TrialRequest) -> dict[str, Scalar]:
    return {
        "subject": req.subject, "runtime": req.runtime, "chaos": req.chaos.kind,
        "target": req.chaos.target, "agent": req.agent.name, "seed": req.seed,
        "members": req.config.members, "restart_policy": req.config.restart_policy,
        "timeout_s": req.config.timeout_s,
    }


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
        Campaign.CampaignStarted, name=f"{req.subject}/{req.chaos.kind}/{req.agent.name}",
        spec=_spec_of(req), trials_planned=1, harness=harness_info(),
    )
    store.save(campaign)
    scope = anyio.CancelScope()
    caught: list[str] = []

    async def watch_signals() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                caught.append(signal.Signals(signum).name)
                scope.cancel()

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
    return result
