"""The Ray executor: each trial of a campaign a Ray task, on any node of a Ray cluster,
appending to one shared PostgreSQL store.

Correctness comes from the store, not from delivery. A task claims its campaign index by
appending ``TrialScheduled`` to the campaign aggregate at the version it read (the
store's optimistic concurrency): of two tasks that read the same version only one can
append, the other reads again and finds the index held. A task finding its index held by
a running trial or by a real outcome runs nothing, so a task Ray retries or runs twice
cannot produce a second outcome. The coordinator (the ``opeval`` process) never retries
by itself through Ray (``max_retries=0``): when a worker is lost mid-trial it records that
trial aborted, then runs the index again as a new task, on whichever node Ray picks. The
lost worker's members are reaped by the next task on its machine (``cleanup``, as every
harness does at start).
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import anyio

from opeval.errors import EnvironmentProblem, OpevalError, UsageError
from opeval.events import Campaign
from opeval.runner._campaign_file import PlannedTrial
from opeval.runner._cleanup import cleanup, mark_aborted
from opeval.runner._trial import TrialRequest, TrialResult, TrialStatus, run_trial
from opeval.store import EventStore, StoreLocation, is_database, parse_store, store_address

#: Outcomes that settle an index (an aborted trial does not: its index runs again).
REAL = ("recovered", "not_recovered", "error")
#: Times one index is run again after its worker was lost, before it is left for --resume.
MAX_LOST = 3


@dataclass(frozen=True)
class RayOptions:
    """Where and how trials run on Ray.

    ``address``: an existing cluster (``ray://host:10001`` or ``host:6379``); None starts
    a local instance with ``local_cpus`` CPUs (default: this machine's). Each trial asks
    for ``cpus_per_trial`` CPUs, so a node runs as many trials at once as it has CPUs for.
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    local_cpus: int | None = None


def check_store(location: StoreLocation) -> None:
    """Trials on Ray append from many machines: only a PostgreSQL store is shared."""
    if not is_database(location):
        raise UsageError("--executor ray needs a store every node can reach: pass --store postgresql://user:pw@host/db "
                         "(or set OPEVAL_STORE)")


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EnvironmentProblem("--executor ray needs Ray: pip install 'opeval[ray]'") from None
    return ray


def holder(store: EventStore, campaign: Campaign, index: int) -> UUID | None:
    """The trial that holds ``index``: one still running, or one with a real outcome."""
    for tid in campaign.trial_ids:
        if campaign.trial_index[tid] == index and store.trial(tid).outcome in (None, *REAL):
            return tid
    return None


class Board:
    """A Ray actor between the coordinator and its tasks: the stop signal (Ctrl-C at the
    coordinator) and the phases of running trials, for the progress display."""

    def __init__(self) -> None:
        self.stop: str | None = None
        self.phases: dict[int, tuple[str, str, float]] = {}

    def set_stop(self, reason: str) -> None:
        """Ask every running trial to end as aborted, naming ``reason``."""
        self.stop = reason

    def stop_reason(self) -> str | None:
        """Why trials should stop, if they should."""
        return self.stop

    def report(self, index: int, trial_hex: str, phase: str, elapsed_s: float) -> None:
        """A running trial's phase."""
        self.phases[index] = (trial_hex, phase, elapsed_s)

    def drain(self) -> dict[int, tuple[str, str, float]]:
        """The phases reported since the last call."""
        phases, self.phases = self.phases, {}
        return phases


def trial_task(address: str, campaign_id: UUID, index: int, req: TrialRequest, board: Any) -> TrialResult | None:
    """One campaign index, run on a Ray worker: claim it, run it, record it. None when
    the index is held elsewhere (this is a duplicate) or the campaign is stopping."""
    with EventStore(parse_store(address)) as store:
        cleanup(store)  # a lost worker's leftovers on this machine: its members, its unfinished trial
        return anyio.run(_claim_and_run, store, campaign_id, index, req, board)


async def _claim_and_run(store: EventStore, campaign_id: UUID, index: int, req: TrialRequest,
                         board: Any) -> TrialResult | None:
    from eventsourcing.persistence import IntegrityError

    ray = _ray()
    scope = anyio.CancelScope()
    stop: list[str] = []

    def stopping() -> str | None:
        return ray.get(board.stop_reason.remote())  # type: ignore[no-any-return]

    async def watch() -> None:
        while True:
            reason = await anyio.to_thread.run_sync(stopping)
            if reason:
                stop.append(reason)
                scope.cancel()
                return
            await anyio.sleep(0.5)

    def on_status(s: TrialStatus) -> None:
        board.report.remote(index, s.trial_id.hex, s.phase, s.elapsed_s)

    while True:
        campaign = store.campaign(campaign_id)
        if holder(store, campaign, index) is not None or await anyio.to_thread.run_sync(stopping):
            return None
        result: TrialResult | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            try:
                result = await run_trial(store, campaign, index, req, cancel_scope=scope,
                                         interrupted=lambda: stop[0] if stop else None, on_status=on_status)
            except IntegrityError:
                pass  # another task appended to the campaign first: read it again
            except OpevalError as e:  # recorded as an error by run_trial
                result = TrialResult(uuid.UUID(int=0), "error", str(e), None, None)
            finally:
                tg.cancel_scope.cancel()
        if result is not None:
            return result


def _lost(store: EventStore, campaign_id: UUID, index: int, why: str) -> TrialResult | None:
    """Record the unfinished trial of ``index`` (whose worker was lost) as aborted."""
    campaign = store.campaign(campaign_id)
    for tid in campaign.trial_ids:
        if campaign.trial_index[tid] == index and store.trial(tid).outcome is None:
            reason = f"the Ray worker running it was lost ({why})"
            if mark_aborted(store, tid, reason):
                return TrialResult(tid, "aborted", reason, None, None)
    return None


def run_on_ray(
    store: EventStore,
    campaign: Campaign,
    todo: list[PlannedTrial],
    requests: dict[int, TrialRequest],
    options: RayOptions,
    *,
    width: int | None,
    caught: list[str],
    on_start: Callable[[PlannedTrial], Any],
    on_status: Callable[[PlannedTrial, TrialStatus], Any],
    on_done: Callable[[PlannedTrial, TrialResult], Any],
) -> None:
    """Run ``todo`` as Ray tasks until each index has a real outcome (or the campaign is
    stopped: ``caught`` gets the signal's name). Blocking: call it from a thread.

    At most ``width`` tasks are in flight (default: the cluster's CPUs over
    ``cpus_per_trial``); Ray places each where it has the CPUs.
    """
    ray = _ray()
    check_store(store.path)
    started_here = not ray.is_initialized()
    if started_here:
        if options.address is None:
            ray.init(num_cpus=options.local_cpus or os.cpu_count() or 1, include_dashboard=False,
                     log_to_driver=False, logging_level="warning")
        else:
            try:
                ray.init(address=options.address, log_to_driver=False, logging_level="warning")
            except (ConnectionError, RuntimeError) as e:
                raise EnvironmentProblem(f"cannot join the Ray cluster at {options.address} ({e}): "
                                         "is it up, and is --address right?") from None
    try:
        if width is None:
            cpus = ray.cluster_resources().get("CPU", 1)
            width = max(1, int(cpus // options.cpus_per_trial))
        board = ray.remote(Board).options(num_cpus=0).remote()
        task = ray.remote(trial_task).options(num_cpus=options.cpus_per_trial, max_retries=0)
        address = store_address(store.path)
        by_index = {t.index: t for t in todo}
        pending = list(todo)
        inflight: dict[Any, PlannedTrial] = {}
        lost: Counter[int] = Counter()
        stopping = False
        while pending or inflight:
            if caught and not stopping:
                stopping = True
                pending.clear()
                ray.get(board.set_stop.remote(caught[0]))
            while pending and len(inflight) < width:
                t = pending.pop(0)
                on_start(t)
                inflight[task.remote(address, campaign.id, t.index, requests[t.index], board)] = t
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
            for index, (trial_hex, phase, elapsed) in ray.get(board.drain.remote()).items():
                if index in by_index:
                    on_status(by_index[index], TrialStatus(UUID(trial_hex), phase, elapsed))
            for ref in ready:
                t = inflight.pop(ref)
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the task's own failure, not a lost worker
                    r = TrialResult(uuid.UUID(int=0), "error", str(e).strip().splitlines()[-1], None, None)
                except ray.exceptions.RayError as e:  # the worker process or its node died
                    why = type(e).__name__
                    cleanup(store)  # on this machine, if the worker was here: its members go now
                    r = _lost(store, campaign.id, t.index, why)
                    lost[t.index] += 1
                    if not stopping and lost[t.index] <= MAX_LOST:
                        pending.insert(0, t)  # its index runs again, wherever Ray places it
                if r is not None:
                    on_done(t, r)
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["Board", "RayOptions", "check_store", "holder", "run_on_ray", "trial_task"]
