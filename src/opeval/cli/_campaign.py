"""``opeval run campaign FILE``: a campaign file's trials, in parallel, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from opeval.runner import PlannedTrial, TrialResult, cleanup, load_campaign, run_campaign
from opeval.store import EventStore, resolve_store_path

from ._common import err, print_json, refresh_read_models


def _label(t: PlannedTrial) -> str:
    return f"#{t.index} {t.chaos.kind}:{t.chaos.target} {t.agent.variant} seed {t.seed}"


def run_campaign_file(file: Path, *, parallel: int | None, resume: bool, store: Path | None, json: bool) -> int:
    """Validate, run and report; exit 0 when every trial ran, 1 if one ended in error, 130 if interrupted."""
    plan = load_campaign(file)
    path = resolve_store_path(store)
    outcomes: dict[str, int] = {}
    with EventStore(path) as es:
        report = cleanup(es)  # trials a dead harness left unfinished become aborted, so resume reruns them
        for tid in report.aborted:
            err.print(f"recorded leftover trial {tid.hex[:8]} as aborted (its harness had died)")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err, disable=json, transient=False) as progress:
            task = progress.add_task(f"campaign {plan.name}", total=len(plan.trials))

            def started(t: PlannedTrial) -> None:
                progress.console.print(f"start  {_label(t)}", highlight=False)

            def done(t: PlannedTrial, r: TrialResult) -> None:
                outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
                ttr = f", TTR {r.time_to_recover_s:.1f}s" if r.time_to_recover_s is not None else ""
                progress.console.print(f"{r.outcome:<13} {_label(t)}{ttr}", highlight=False)
                progress.advance(task)

            async def go() -> Any:
                return await run_campaign(es, plan, parallel=parallel, resume=resume, on_trial_start=started,
                                          on_trial_done=done)

            if resume:
                progress.update(task, completed=0)
            result = anyio.run(go)
            progress.update(task, completed=len(result.skipped) + sum(1 for _, r in result.ran if r.outcome != "aborted"))
    refresh_read_models(path)
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
                      f"`opeval run campaign {file} --resume`", highlight=False)
        elif result.finished:
            err.print(f"see `opeval analyze {result.campaign_id.hex[:8]}`", highlight=False)
    if result.interrupted:
        return 130
    return 1 if outcomes.get("error") else 0
