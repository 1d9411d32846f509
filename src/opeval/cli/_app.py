"""The ``opeval`` command line."""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from cyclopts import App, Parameter
from rich.table import Table

import opeval
from opeval.agents import DEFAULT_MODEL
from opeval.errors import OpevalError, UsageError
from opeval.events import AgentSpec, Campaign, ChaosSpec, Scalar, TrialConfig, describe, event_json, member_summary
from opeval.runner import TrialRequest, TrialStatus, cleanup, run_single
from opeval.store import EventStore, resolve_store_path

from ._common import JsonFlag, StoreOption, err, out, print_json, refresh_read_models

app = App(
    name="opeval",
    help="Chaos evaluation harness for AI operator agents: break a real cluster, record every step.",
    version=opeval.__version__,
)


class _StatusLine:
    """A live status line on a terminal; plain phase lines otherwise (CI, pipes)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = err.is_terminal
        self.last_phase = ""
        self.status = err.status("starting") if self.tty and not quiet else None

    def __enter__(self) -> _StatusLine:
        if self.status:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status:
            self.status.stop()

    def update(self, s: TrialStatus) -> None:
        if self.quiet:
            return
        line = f"{s.phase:<22} {s.elapsed_s:6.1f}s  {member_summary(s.state)}"
        if self.status:
            self.status.update(line)
        elif s.phase != self.last_phase:
            err.print(f"[{s.elapsed_s:6.1f}s] {s.phase}", highlight=False)
        self.last_phase = s.phase


@app.command
def run(
    what: Literal["campaign"] | None = None,
    file: Path | None = None,
    /,
    *,
    parallel: int | None = None,
    resume: bool = False,
    subject: str = "etcd",
    runtime: str = "local",
    chaos: str = "node_kill",
    target: str | None = None,
    alert: str | None = None,
    agent: str = "none",
    baseline: Annotated[bool, Parameter(negative=())] = False,
    model: str | None = None,
    system_prompt: Path | None = None,
    max_steps: int = 30,
    command_timeout: float = 30.0,
    seed: int | None = None,
    timeout: float = 60.0,
    settle: float = 2.0,
    restart_policy: str = "on-failure",
    members: int | None = None,
    rate: float = 50.0,
    sandbox: Literal["bubblewrap", "none"] = "bubblewrap",
    store: StoreOption = None,
    json: JsonFlag = False,
) -> int:
    """Run one trial: start the subject, inject the fault, wait for recovery, record it all.
    ``opeval run campaign FILE`` runs every trial of a campaign file instead.

    Parameters
    ----------
    what
        ``campaign`` to run a campaign file.
    file
        The campaign file (YAML; examples in campaigns/).
    parallel
        Campaigns: trials run at once (default: the file's ``parallel``, else 1).
    resume
        Campaigns: continue the unfinished campaign of this file, skipping finished trials.
    subject
        The system under test (``etcd``).
    runtime
        Where its members run: ``local`` (processes of this machine) or ``docker`` (a
        container each, on a network of the trial's own; images built locally).
    chaos
        The fault to inject (``node_kill``; ``none``: a no-fault control that pages the agent
        anyway, to measure false alarms).
    target
        Whom the fault hits: ``leader``, ``follower``, ``random`` (the default) or a member name
        (``etcd-2``).
    alert
        ``--chaos none``: the page's text (a cause that is not real; a vague default otherwise).
    agent
        Who repairs the fault: ``none`` (self-healing only), ``runbook`` (offline, scripted)
        or ``anthropic`` (Claude; needs ANTHROPIC_API_KEY).
    baseline
        Same as ``--agent none``: measure self-healing without any agent.
    model
        Model for ``--agent anthropic`` (default claude-sonnet-4-6).
    system_prompt
        File whose text replaces the anthropic agent's system prompt.
    max_steps
        Most shell commands the agent may run.
    command_timeout
        Seconds before one agent command is killed (its whole process group).
    seed
        Makes the target choice and the workload reproducible (random if not given; recorded).
    timeout
        Seconds after the fault is verified before the trial ends as not_recovered.
    settle
        Seconds the recovery criteria must hold without a break.
    restart_policy
        What the supervisor does when a member dies: ``on-failure`` (restart with backoff) or ``never``.
    members
        Cluster size (default from the subject definition: 3 for etcd).
    rate
        Workload operations per second (puts and gets alternate).
    sandbox
        How the agent's commands are isolated from the harness: ``bubblewrap`` (the default;
        needs root and Debian's bubblewrap) or ``none`` (unisolated: the trial is marked so).
    """
    if what == "campaign":
        if file is None:
            raise UsageError("opeval run campaign FILE: give the campaign file (examples in campaigns/)")
        from opeval.cli._campaign import run_campaign_file

        return run_campaign_file(file, parallel=parallel, resume=resume, store=store, json=json)
    if file is not None or parallel is not None or resume:
        raise UsageError("--parallel, --resume and a file are for campaigns: opeval run campaign FILE")
    if baseline:
        agent = "none"
    agent_config: dict[str, Scalar] = {}
    if agent != "none":
        agent_config = {"max_steps": max_steps, "command_timeout_s": command_timeout}
        if agent == "anthropic":
            agent_config["model"] = model or DEFAULT_MODEL
        if system_prompt is not None:
            try:
                agent_config["system_prompt"] = system_prompt.read_text()
            except OSError as e:
                raise UsageError(f"cannot read --system-prompt {system_prompt}: {e.strerror}") from None
    path = resolve_store_path(store)
    from opeval.subjects import SUBJECTS

    default_members = SUBJECTS.get(subject)().default_members
    req = TrialRequest(
        subject=subject,
        runtime=runtime,
        chaos=ChaosSpec(kind=chaos, target=target or ("none" if chaos == "none" else "random"),
                        params={"alert": alert} if alert is not None else {}),
        agent=AgentSpec(name=agent, config=agent_config),
        config=TrialConfig(members=members or default_members, restart_policy=restart_policy,
                           timeout_s=timeout, settle_s=settle, workload_rate_hz=rate),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        sandbox=sandbox,
    )
    from opeval.runner import prepare

    prepare(req)  # unknown chaos/target/policy fail here, before the store is touched
    with EventStore(path) as es:
        report = cleanup(es)
        for tid in report.aborted:
            err.print(f"recorded leftover trial {tid.hex[:8]} as aborted (its harness had died)")
        for problem in report.problems:
            err.print(problem, highlight=False)
        with _StatusLine(quiet=json) as line:
            result = anyio.run(lambda: run_single(es, req, on_status=line.update))
    refresh_read_models(path)
    if json:
        print_json({"trial_id": str(result.trial_id), "outcome": result.outcome, "reason": result.reason,
                     "time_to_detect_s": result.time_to_detect_s, "time_to_recover_s": result.time_to_recover_s,
                     "store": str(path)})
    else:
        out.print(f"trial {result.trial_id.hex[:8]}: [bold]{result.outcome}[/bold] - {result.reason}")
        out.print(f"see the timeline: opeval show {result.trial_id.hex[:8]}" +
                  ("" if store is None and "OPEVAL_STORE" not in os.environ else f" --store {path}"),
                  highlight=False)
    return {"recovered": 0, "not_recovered": 0, "aborted": 130}.get(result.outcome, 1)


def _trial_rows(es: EventStore) -> list[dict[str, Any]]:
    finished: dict[Any, Any] = {}
    for _, e in es.iter_events(topics=["opeval.trial:TrialFinished"]):
        finished[e.originator_id] = e
    rows = []
    for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"]):
        f = finished.get(e.originator_id)
        rows.append({
            "trial_id": str(e.originator_id), "campaign_id": str(e.campaign_id),
            "started": e.timestamp.isoformat(timespec="seconds"), "subject": e.subject,
            "chaos": e.chaos.kind, "target": e.chaos.target, "agent": e.agent.name,
            "restart_policy": e.config.restart_policy, "seed": e.seed,
            "outcome": f.outcome if f else "running",
            "time_to_recover_s": f.time_to_recover_s if f else None,
        })
    return rows


def _trial_rows_from_read_models(path: Path) -> list[dict[str, Any]]:
    from opeval.projections import ReadModels, query

    rm = ReadModels(path)
    rm.update()
    with rm.connect() as con:
        rows = query(con, "SELECT trial_id, campaign_id, started_at, subject, chaos, target, agent, restart_policy, "
                          "seed, coalesce(outcome, 'running') AS outcome, "
                          # A control trial has no fault to recover from (its TrialFinished says None too).
                          "CASE WHEN outcome = 'recovered' AND NOT control THEN recovered_s - verified_s END "
                          "AS time_to_recover_s FROM trials ORDER BY started_at, trial_id")
    for r in rows:
        r["trial_id"] = str(uuid.UUID(r["trial_id"]))
        r["campaign_id"] = str(uuid.UUID(r["campaign_id"]))
        r["started"] = r.pop("started_at")[:19]
        if r["time_to_recover_s"] is not None:
            r["time_to_recover_s"] = round(r["time_to_recover_s"], 6)
    return rows


@app.command(name="list")
def list_(*, store: StoreOption = None, json: JsonFlag = False) -> int:
    """List the trials in the store, oldest first (from the read models)."""
    path = resolve_store_path(store)
    with EventStore(path, writable=False) as es:
        try:
            rows = _trial_rows_from_read_models(path)
        except OpevalError:  # read models unavailable (busy, read-only directory): read the log itself
            rows = _trial_rows(es)
    if json:
        print_json(rows)
        return 0
    if not rows:
        out.print("no trials yet: run `opeval run --baseline`")
        return 0
    table = Table("trial", "started (UTC)", "subject", "chaos", "agent", "restart", "outcome", "TTR")
    for r in rows:
        ttr = "-" if r["time_to_recover_s"] is None else f"{r['time_to_recover_s']:.3f}s"
        table.add_row(r["trial_id"].replace("-", "")[:8], r["started"][5:].replace("T", " ")[:14], r["subject"],
                      f"{r['chaos']}:{r['target']}", r["agent"], r["restart_policy"], r["outcome"], ttr)
    out.print(table)
    return 0


@app.command
def show(id: str, /, *, store: StoreOption = None, json: JsonFlag = False) -> int:  # noqa: A002
    """Show a trial's timeline, or a campaign and its trials. ``ID`` may be a unique prefix.

    Parameters
    ----------
    id
        A trial or campaign id, or a unique prefix of one (see ``opeval list``).
    """
    with EventStore(resolve_store_path(store), writable=False) as es:
        kind, oid = es.resolve(id)
        events = es.events(oid)
        if kind == "campaign":
            campaign: Campaign = es.campaign(oid)
            trials = [(tid, es.trial(tid)) for tid in campaign.trial_ids]
    if json:
        data: dict[str, Any] = {"kind": kind, "id": str(oid), "events": [event_json(None, e) for e in events]}
        if kind == "campaign":
            data["trials"] = [{"trial_id": str(t), "outcome": tr.outcome} for t, tr in trials]
        print_json(data)
        return 0
    if kind == "campaign":
        c = events[0]
        out.print(f"campaign {oid.hex} [bold]{c.name}[/bold] started {c.timestamp:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
        for tid, tr in trials:
            out.print(f"  trial {tid.hex[:8]}  {tr.chaos.kind} target={tr.chaos.target} -> {tr.outcome or 'running'}")
        return 0
    started = events[0]
    out.print(f"trial {oid.hex}  started {started.timestamp:%Y-%m-%d %H:%M:%S} UTC", highlight=False)
    table = Table("offset", "event", "detail", show_lines=False)
    for e in events:
        table.add_row(f"{e.offset_s:8.3f}s", type(e).__name__, describe(e))
    out.print(table)
    return 0


@app.command(name="cleanup")
def cleanup_(*, store: StoreOption = None, json: JsonFlag = False) -> int:
    """Reap what killed harnesses left behind (processes, directories) and record their trials as aborted."""
    path = resolve_store_path(store)
    if path.exists():
        with EventStore(path) as es:
            report = cleanup(es)
    else:
        report = cleanup(None)
    if json:
        print_json({
            "reaped": [{"trial_id": r.trial_id, "killed": r.killed, "removed": r.removed} for r in report.reaped],
            "aborted": [str(t) for t in report.aborted], "problems": report.problems,
        })
    else:
        for r in report.reaped:
            out.print(f"trial {r.trial_id[:8]}: killed {len(r.killed)} processes, removed {len(r.removed)} directories")
        for t in report.aborted:
            out.print(f"trial {t.hex[:8]}: recorded as aborted")
        for p in report.problems:
            err.print(p)
        if not (report.reaped or report.aborted or report.problems):
            out.print("nothing to clean up")
    return 1 if report.problems else 0


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and an exit code, never a traceback."""
    try:
        app(argv)
    except OpevalError as e:
        err.print(f"opeval: error: {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("opeval: interrupted")
        sys.exit(130)


