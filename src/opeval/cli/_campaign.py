"""``opeval run campaign FILE``: a campaign file's trials, in parallel, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from opeval.params import PARALLEL, check_flags
from opeval.runner import CampaignRun, PlannedTrial, RayOptions, TrialResult, TrialStatus, cleanup, load_campaign, \
    run_campaign
from opeval.runner._ray import check_store
from opeval.store import EventStore

from ._common import err, hint, print_json, refresh_read_models, store_path
from ._config import setting
from ._exit import ExitCode
from ._progress import CampaignProgress


def run_campaign_file(file: Path, *, parallel: int | None, resume: bool, store: str | None, json: bool,
                      ray: RayOptions | None = None) -> int:
    """Validate, run and report; exit 0 when every trial ran, 1 if one ended in error, 130 if interrupted.
    With ``ray``, trials run on a Ray cluster, at most ``parallel`` at once if given (else
    as many as the cluster has CPUs for)."""
    plan = load_campaign(file)
    path = store_path(store)
    if parallel is not None:
        check_flags((PARALLEL,), {"parallel": "--parallel"}, {"parallel": parallel})
    if ray is not None:
        check_store(path)
        chosen = parallel or setting("parallel")
        width = max(1, chosen or plan.parallel)
    else:
        chosen = width = max(1, parallel or setting("parallel") or plan.parallel)
    with EventStore(path) as es:
        report = cleanup(es)  # trials a dead harness left unfinished become aborted, so resume reruns them
        for tid in report.aborted:
            err.print(f"recorded leftover trial {tid.hex[:8]} as aborted (its harness had died)")
        with CampaignProgress(plan.name, len(plan.trials), width, quiet=json) as progress:

            def begun(r: CampaignRun) -> None:
                progress.begin(r.campaign_id.hex, len(r.skipped))

            def started(t: PlannedTrial) -> None:
                progress.start(t)

            def status(t: PlannedTrial, s: TrialStatus) -> None:
                progress.status(t, s)

            def done(t: PlannedTrial, r: TrialResult) -> None:
                progress.done(t, r)

            async def go() -> Any:
                return await run_campaign(es, plan, parallel=chosen, resume=resume, on_campaign=begun,
                                          on_trial_start=started, on_trial_status=status, on_trial_done=done,
                                          ray=ray)

            result = anyio.run(go)
    refresh_read_models(path)
    outcomes = progress.outcomes
    summary = {"campaign_id": result.campaign_id.hex, "name": plan.name, "planned": result.planned,
               "skipped_as_done": len(result.skipped), "ran": len(result.ran), "outcomes": outcomes,
               "finished": result.finished, "interrupted": result.interrupted}
    if json:
        print_json(summary)
    else:
        counts = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items())) or "no trials run"
        err.print(f"campaign {plan.name} ({result.campaign_id.hex[:8]}): {counts}"
                  + (f"; {len(result.skipped)} already done" if result.skipped else ""), highlight=False)
        if result.interrupted:
            err.print(f"interrupted by {result.interrupted}: continue with "
                      f"`{hint(f'run campaign {file} --resume')}`", highlight=False, markup=False, soft_wrap=True)
        elif result.finished:
            err.print(f"see `{hint('analyze ' + result.campaign_id.hex[:8])}`", highlight=False, markup=False,
                      soft_wrap=True)
    if result.interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.TRIAL_ERROR if outcomes.get("error") else ExitCode.OK
