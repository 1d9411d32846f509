"""The ``opeval`` command line: running trials, and finding what was run."""

from __future__ import annotations

import secrets
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import msgspec
from cyclopts import App, Parameter
from cyclopts.exceptions import CycloptsError
from rich.markup import escape

import opeval
from opeval.agents import DEFAULT_MODEL
from opeval.errors import OpevalError, StoreError, UsageError
from opeval.events import AgentSpec, Campaign, ChaosSpec, Scalar, Trial, TrialConfig, clock_text, describe, event_json
from opeval.runner import TrialRequest, cleanup, run_single
from opeval.store import EventStore, store_exists

from ._common import (
    JsonFlag,
    StoreOption,
    ViewRulesOption,
    WideFlag,
    err,
    hint,
    out,
    print_json,
    prog,
    refresh_read_models,
    store_path,
    with_prog,
)
from ._config import setting
from ._exit import ExitCode, for_outcome
from ._ids import SHORT, campaign_id, completer, short_ids, store_ids
from ._progress import TrialStatusLine
from ._tables import Col, outcome_style, print_table

app = App(
    name="opeval",
    help="Chaos evaluation harness for AI operator agents: break a real cluster, record every step.",
    version=opeval.__version__,
    # Errors are one line and an exit code (main), never a panel or a traceback.
    print_error=False,
    exit_on_error=False,
    suppress_keyboard_interrupt=False,
)
app.register_install_completion_command(
    help="Install shell completion for opeval (bash, zsh or fish; --shell, else the current shell).")

def _names(registry: str) -> Any:
    """Shell completion of a plugin's name from its registry (entry points included)."""

    def complete(ctx: Any) -> list[str]:
        import importlib

        module, name = registry.rsplit(".", 1)
        names: list[str] = getattr(importlib.import_module(module), name).names()
        return names + (["none"] if name == "AGENTS" else [])

    return complete


def _whole(flag: str) -> Any:
    """A converter for a whole-number flag: ``2.5`` is refused, not rounded."""

    def convert(type_: Any, tokens: Any) -> int:
        text = str(getattr(tokens[0], "value", tokens[0])).strip()
        try:
            return int(text, 10)
        except ValueError:
            raise UsageError(f"{flag} must be a whole number, not {text!r}") from None

    return convert


ParallelOption = Annotated[int | None, Parameter(converter=_whole("--parallel"))]
MaxStepsOption = Annotated[int, Parameter(converter=_whole("--max-steps"))]
SeedOption = Annotated[int | None, Parameter(converter=_whole("--seed"))]
MembersOption = Annotated[int | None, Parameter(converter=_whole("--members"))]

TrialId = Annotated[str, Parameter(completer=completer("trial"))]
CampaignId = Annotated[str, Parameter(completer=completer("campaign"))]
AnyId = Annotated[str, Parameter(completer=completer(None))]


@app.command
def run(
    what: Literal["campaign"] | None = None,
    file: Path | None = None,
    /,
    *,
    parallel: ParallelOption = None,
    resume: bool = False,
    executor: Literal["local", "ray"] = "local",
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    subject: Annotated[str | None, Parameter(completer=_names("opeval.subjects.SUBJECTS"))] = None,
    runtime: Annotated[str, Parameter(completer=_names("opeval.runtimes.RUNTIMES"))] = "local",
    chaos: Annotated[str, Parameter(completer=_names("opeval.chaos.CHAOS"))] = "node_kill",
    target: str | None = None,
    alert: str | None = None,
    agent: Annotated[str, Parameter(completer=_names("opeval.agents.AGENTS"))] = "none",
    baseline: Annotated[bool, Parameter(negative=())] = False,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
    request_timeout: float | None = None,
    max_retries: int | None = None,
    tool_choice: Literal["auto", "required", "shell", "done"] | None = None,
    system_prompt: Path | None = None,
    command: str | None = None,
    forward: str | None = None,
    pass_env: str | None = None,
    max_steps: MaxStepsOption = 30,
    command_timeout: float = 30.0,
    seed: SeedOption = None,
    timeout: float = 60.0,
    settle: float = 2.0,
    restart_policy: Annotated[str, Parameter(completer=lambda ctx: ["on-failure", "never"])] = "on-failure",
    members: MembersOption = None,
    rate: float = 50.0,
    sandbox: Literal["bubblewrap", "none"] = "bubblewrap",
    approval: Annotated[str | None, Parameter(completer=lambda ctx: ["allow", "deny", "ask"])] = None,
    approval_timeout: float | None = None,
    tui: Annotated[bool, Parameter(negative=())] = False,
    rules: ViewRulesOption = None,
    store: StoreOption = None,
    json: JsonFlag = False,
) -> int:
    """Run one trial (start the subject, inject the fault, wait for recovery), or a campaign file.

    ``opeval run`` runs one trial and records it all; ``opeval run campaign FILE`` runs every
    trial of a campaign file instead, with a progress display.

    Parameters
    ----------
    what
        ``campaign`` to run a campaign file.
    file
        The campaign file (YAML; examples in campaigns/).
    parallel
        Campaigns: trials run at once (default: $OPEVAL_PARALLEL, else ``parallel`` in
        opeval.toml, else the file's ``parallel``, else 1).
    resume
        Campaigns: continue the unfinished campaign of this file, skipping finished trials.
    executor
        Campaigns: where trials run: ``local`` (tasks of this process) or ``ray`` (each a Ray
        task on any node of a Ray cluster; needs a PostgreSQL ``--store``).
    address
        ``--executor ray``: the cluster to join (``ray://head:10001`` or ``head:6379``);
        without it a local Ray instance is started.
    cpus_per_trial
        ``--executor ray``: CPUs each trial asks Ray for (a node runs as many trials at once
        as it has CPUs for).
    subject
        The system under test (default: $OPEVAL_SUBJECT, else ``subject`` in opeval.toml, else ``etcd``).
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
        Who repairs the fault: ``none`` (self-healing only), ``runbook`` (offline, scripted),
        ``anthropic`` (Claude, or any Messages API server; needs ANTHROPIC_API_KEY unless
        --base-url), ``openai`` (any OpenAI-compatible server; needs OPENAI_API_KEY unless
        --base-url) or ``command`` (an external agent's command line in the sandbox, the
        trial's tools as its MCP server; see --command).
    baseline
        Same as ``--agent none``: measure self-healing without any agent.
    model
        Model of a model agent (default: $OPEVAL_MODEL, else ``model`` in opeval.toml, else
        claude-sonnet-4-6 for anthropic; openai needs one). Recorded as asked, with the
        server's own name beside it.
    base_url
        Model agents: the API server (e.g. ``http://127.0.0.1:8080/v1`` for a local
        OpenAI-compatible one, ``http://127.0.0.1:8080`` for a local Messages API); a local
        server needs no key.
    api_key_env
        Model agents: the environment variable holding the API key (default
        ANTHROPIC_API_KEY or OPENAI_API_KEY).
    max_tokens
        Model agents: most tokens one answer may have (default 4096).
    temperature
        Model agents: sampling temperature (default: the server's).
    request_timeout
        Model agents: seconds one API request may take (default 120).
    max_retries
        Model agents: retries of a failed API request (default 2; connection errors,
        timeouts, 408/409/429/5xx, but never a 5xx saying the model's output could not be
        parsed).
    tool_choice
        Model agents: ``auto`` (the model may answer in prose), ``required`` (it must call
        a tool; servers such as llama.cpp's then constrain its output to a tool call), or a
        tool's name, ``shell`` or ``done`` (it must call that one: only it is offered).
    system_prompt
        File whose text replaces a model agent's system prompt.
    command
        ``--agent command``: the agent's command line, run with bash -c inside the sandbox
        (default: the shipped reference agent, ``opeval-agent``). It gets the page as
        $OPEVAL_PROMPT, the trial's MCP server as $OPEVAL_MCP_URL and $OPEVAL_MCP_CONFIG.
    forward
        ``--agent command``: endpoints its process may reach, ``host:port`` comma-separated
        (--base-url's is forwarded without it).
    pass_env
        ``--agent command``: the environment variables of yours handed to its process (its
        API key), comma-separated; nothing else of your environment reaches it.
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
    approval
        Gate the agent's risky commands before they run: ``allow`` (record only), ``deny``
        (refuse them) or ``ask`` (a person decides in ``opeval watch`` or the viewer), on
        destructive and unknown commands unless classes follow: ``ask:destructive,remediation``.
    approval_timeout
        ``--approval ask``: seconds to wait for a person before the command is denied (default 120).
    tui
        Follow the trial in the terminal's full-screen view (as ``opeval watch`` does) instead of a status line.
    """
    if tui and json:
        raise UsageError("--tui and --json are two ways to show the run: choose one")
    if rules is not None and not tui:
        raise UsageError("--rules goes with --tui (the view's thrashing marks); to score a finished run "
                         f"under a rule set use `{hint('analyze ID --rules FILE')}`")
    window = None
    if tui:
        from opeval.cli._watch import thrashing_window

        window = thrashing_window(rules)  # a bad rule set fails here, in one line, before anything starts
    if tui and what == "campaign" and file is not None:
        from opeval.runner import load_campaign

        load_campaign(file)  # a bad file fails here, in one line, before the screen takes over
        return _run_with_tui(store, window)
    if what == "campaign":
        if file is None:
            raise UsageError(f"give the campaign file: `{hint('run campaign FILE')}` (examples in campaigns/)")
        from opeval.cli._campaign import run_campaign_file

        if executor == "local" and (address is not None or cpus_per_trial != 1.0):
            raise UsageError("--address and --cpus-per-trial are for --executor ray")
        if cpus_per_trial <= 0:
            raise UsageError(f"--cpus-per-trial must be positive, not {cpus_per_trial}")
        from opeval.runner import RayOptions

        ray = RayOptions(address=address, cpus_per_trial=cpus_per_trial) if executor == "ray" else None
        return run_campaign_file(file, parallel=parallel, resume=resume, store=store, json=json, ray=ray)
    if file is not None or parallel is not None or resume or executor != "local" or address is not None:
        raise UsageError(f"--parallel, --resume, --executor and a file are for campaigns: "
                         f"`{hint('run campaign FILE')}`")
    from opeval.params import SEED, TRIAL_FLAGS, TRIAL_SETTINGS, VARIANT_FLAGS, VARIANT_NUMBERS, check_flags

    # Every value is checked against its declaration before anything else happens.
    settings = check_flags(TRIAL_SETTINGS, TRIAL_FLAGS, {k: v for k, v in (
        ("members", members), ("restart_policy", restart_policy), ("timeout_s", timeout), ("settle_s", settle),
        ("workload_rate_hz", rate)) if v is not None})
    numbers = check_flags(VARIANT_NUMBERS, VARIANT_FLAGS, {"max_steps": max_steps, "command_timeout_s": command_timeout})
    if seed is not None:
        check_flags((SEED,), {"seed": "--seed"}, {"seed": seed})
    if alert is not None and chaos != "none":
        raise UsageError(f"--alert is the page of a control trial: use it with --chaos none, not {chaos}")
    subject = subject or setting("subject") or "etcd"
    if baseline:
        agent = "none"
    if agent == "none" and (command is not None or forward is not None or pass_env is not None):
        raise UsageError("--command, --forward and --pass-env are settings of --agent command")
    if agent == "none" and (approval is not None or approval_timeout is not None):
        raise UsageError("--approval gates an agent's commands: give one with --agent (runbook, anthropic...)")
    agent_config: dict[str, Scalar] = {}
    if agent != "none":
        agent_config = dict(numbers)
        if agent == "anthropic":
            agent_config["model"] = model or setting("model") or DEFAULT_MODEL
        elif model:
            agent_config["model"] = model
        model_settings = {"base_url": base_url, "api_key_env": api_key_env, "max_tokens": max_tokens,
                          "temperature": temperature, "request_timeout_s": request_timeout,
                          "max_retries": max_retries, "tool_choice": tool_choice}
        agent_config.update({k: v for k, v in model_settings.items() if v is not None})
        from opeval.params import COMMAND_FLAGS, COMMAND_SETTINGS

        command_settings = {k: v for k, v in (("command", command), ("forward", forward), ("pass_env", pass_env))
                            if v is not None}
        if command_settings and agent != "command":
            raise UsageError(f"{', '.join(COMMAND_FLAGS[k] for k in command_settings)}: settings of --agent command, "
                             f"not {agent}")
        agent_config.update(check_flags(COMMAND_SETTINGS, COMMAND_FLAGS, command_settings))
        if approval is not None:
            from opeval.agents import ApprovalPolicy

            policy = ApprovalPolicy.parse(approval, "--approval")
            if approval_timeout is not None:
                if approval_timeout <= 0:
                    raise UsageError("--approval-timeout must be a positive number of seconds")
                policy = ApprovalPolicy(policy.mode, policy.gated, approval_timeout)
            agent_config.update(policy.config())
        if system_prompt is not None:
            try:
                agent_config["system_prompt"] = system_prompt.read_text(encoding="utf-8")
            except OSError as e:
                raise UsageError(f"cannot read --system-prompt {system_prompt}: {e.strerror}") from None
            except UnicodeDecodeError as e:
                raise UsageError(f"--system-prompt {system_prompt} is not a text file (byte {e.start} is not "
                                 "UTF-8)") from None
    path = store_path(store)
    from opeval.subjects import SUBJECTS

    default_members = SUBJECTS.get(subject)().default_members
    req = TrialRequest(
        subject=subject,
        runtime=runtime,
        chaos=ChaosSpec(kind=chaos, target=target or ("none" if chaos == "none" else "random"),
                        params={"alert": alert} if alert is not None else {}),
        agent=AgentSpec(name=agent, config=agent_config),
        config=TrialConfig(**{"members": default_members, **settings}),
        seed=seed if seed is not None else secrets.randbelow(2**31),
        sandbox=sandbox,
    )
    from opeval.runner import prepare

    prepare(req)  # unknown chaos/target/policy fail here, before the store is touched
    if tui:
        return _run_with_tui(store, window)
    with EventStore(path) as es:
        report = cleanup(es)
        for tid in report.aborted:
            err.print(f"recorded leftover trial {tid.hex[:SHORT]} as aborted (its harness had died)")
        for problem in report.problems:
            err.print(problem, highlight=False)
        with TrialStatusLine(quiet=json) as line:
            result = anyio.run(lambda: run_single(es, req, on_status=line.update))
    refresh_read_models(path)
    if json:
        print_json({"trial_id": str(result.trial_id), "outcome": result.outcome, "reason": result.reason,
                     "time_to_detect_s": result.time_to_detect_s, "time_to_recover_s": result.time_to_recover_s,
                     "store": str(path)})
    else:
        short = result.trial_id.hex[:SHORT]
        clock = "" if req.chaos.kind == "none" else f" ({clock_text(result.time_to_detect_s, result.time_to_recover_s)})"
        out.print(f"trial {short}: [bold]{result.outcome}[/bold] - {escape(result.reason)}{clock}", highlight=False)
        out.print(f"see the timeline: {hint('show ' + short)}", highlight=False, markup=False, soft_wrap=True)
    return for_outcome(result.outcome)


def _run_with_tui(store: str | None, window: float | None) -> int:
    """This very ``run``, in a child process, followed full screen (see ``opeval watch``)."""
    from opeval.cli._watch import run_with_tui

    invoked = list(sys.argv[1:] if INVOKED.argv is None else INVOKED.argv)
    return run_with_tui(without_view_options(invoked), store_path(store), thrashing_window_s=window)


def without_view_options(argv: list[str]) -> list[str]:
    """``argv`` less what only the view reads (``--tui``, ``--rules FILE``): the child's command line."""
    kept: list[str] = []
    skip = False
    for n, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--":
            kept.extend(argv[n:])
            break
        elif arg == "--rules":
            skip = True
        elif arg != "--tui" and not arg.startswith("--rules="):
            kept.append(arg)
    return kept


# --- what is in the store -----------------------------------------------------------------------
def _who(agent: str, variant: str | None) -> str:
    """``runbook``, or ``anthropic/sonnet`` for a named variant."""
    return agent if variant in (None, "default", agent) else f"{agent}/{variant}"


def _trial_rows(es: EventStore) -> list[dict[str, Any]]:
    """The trials, read from the event log itself (the read models are busy or unwritable)."""
    finished: dict[Any, Any] = {}
    for _, e in es.iter_events(topics=["opeval.trial:TrialFinished"]):
        finished[e.originator_id] = e
    rows = []
    for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"]):
        f = finished.get(e.originator_id)
        rows.append({
            "trial_id": str(e.originator_id), "campaign_id": str(e.campaign_id), "index": e.index,
            "started": e.timestamp.isoformat(timespec="seconds"), "subject": e.subject,
            "chaos": e.chaos.kind, "target": e.chaos.target, "agent": e.agent.name, "variant": e.agent.variant,
            "restart_policy": e.config.restart_policy, "seed": e.seed,
            "outcome": f.outcome if f else "running",
            "time_to_recover_s": f.time_to_recover_s if f else None,
        })
    return rows


def _trial_rows_from_read_models(path: Path) -> list[dict[str, Any]]:
    from opeval.projections import ReadModels, trial_listing

    rm = ReadModels(path)
    rm.update()
    with rm.connect() as con:
        rows = [msgspec.structs.asdict(t) for t in trial_listing(con)]
    for r in rows:
        r["trial_id"] = str(uuid.UUID(r["trial_id"]))
        r["campaign_id"] = str(uuid.UUID(r["campaign_id"]))
        r["started"] = r.pop("started_at")[:19]
        if r["time_to_recover_s"] is not None:
            r["time_to_recover_s"] = round(r["time_to_recover_s"], 6)
    return rows


def _hex(i: str) -> str:
    return i.replace("-", "")


@app.command(name="list")
def list_(*, campaign: CampaignId | None = None, store: StoreOption = None, json: JsonFlag = False,
          wide: WideFlag = False) -> int:
    """List the trials in the store, oldest first, with the campaign each belongs to.

    Parameters
    ----------
    campaign
        Only this campaign's trials (an id or unique prefix; a trial's id means its campaign).
    """
    path = store_path(store)
    with EventStore(path, writable=False) as es:
        try:
            rows = _trial_rows_from_read_models(path)
        except OpevalError:  # read models unavailable (busy, read-only directory): read the log itself
            rows = _trial_rows(es)
        short = short_ids(store_ids(es))
        if campaign is not None:
            cid = campaign_id(es, campaign)
            rows = [r for r in rows if _hex(r["campaign_id"]) == cid.hex]
    if json:
        print_json(rows)
        return ExitCode.OK
    if not rows:
        out.print(f"no trials yet: run `{hint('run --baseline')}`" if campaign is None
                  else "this campaign has no trials yet", highlight=False, markup=False)
        return ExitCode.OK
    cols = [Col("trial", keep=True), Col("campaign", keep=True), Col("started (UTC)", fold=False, drop=6),
            Col("subject", drop=9), Col("chaos → target", drop=2), Col("agent", drop=3),
            Col("seed", justify="right", fold=False, drop=7), Col("restart", drop=8),
            Col("outcome", keep=True, style=outcome_style), Col("TTR", justify="right", fold=False, drop=4)]
    table = [[short[_hex(r["trial_id"])], short[_hex(r["campaign_id"])], r["started"][5:16].replace("T", " "),
              r["subject"], f"{r['chaos']} → {r['target']}", _who(r["agent"], r.get("variant")), str(r["seed"]),
              r["restart_policy"], r["outcome"],
              "-" if r["time_to_recover_s"] is None else f"{r['time_to_recover_s']:.3f}s"] for r in rows]
    print_table(cols, table, wide=wide)
    return ExitCode.OK


def _readable_trial(es: EventStore, trial_id: uuid.UUID) -> Any:
    """The trial, or None if its first event cannot be decoded (the store has warned)."""
    try:
        return es.trial(trial_id)
    except StoreError:
        return None


def _campaign_rows_from_log(es: EventStore) -> list[dict[str, Any]]:
    """Campaigns counted from the event log (when the read models cannot be opened)."""
    from opeval.projections import REAL_OUTCOMES, campaign_title

    rows = []
    for _, e in es.iter_events(topics=["opeval.campaign:CampaignStarted"]):
        c: Campaign = es.campaign(e.originator_id)
        outcomes = [(c.trial_index[t], trial.outcome) for t in c.trial_ids if (trial := _readable_trial(es, t))]
        counts = {o: sum(1 for _, x in outcomes if x == o) for o in REAL_OUTCOMES}
        running = sum(1 for _, x in outcomes if x is None)
        rows.append({
            "campaign_id": e.originator_id.hex, "name": e.name, "title": campaign_title(e.name, e.spec, c.trials_planned),
            "started_at": e.timestamp.isoformat(), "trials_planned": c.trials_planned, "finished": c.finished,
            "file": e.spec.get("file"), "done": len({i for i, x in outcomes if x in REAL_OUTCOMES}),
            "aborted": sum(1 for _, x in outcomes if x == "aborted"), "running": running, **counts,
            "status": "finished" if c.finished else "running" if running else "interrupted",
        })
    return sorted(rows, key=lambda r: r["started_at"], reverse=True)


def _campaign_rows(path: Path, es: EventStore) -> list[dict[str, Any]]:
    from opeval.projections import ReadModels, campaign_overview

    try:
        rm = ReadModels(path)
        rm.update()
        with rm.connect() as con:
            rows = campaign_overview(con)
    except OpevalError:
        return _campaign_rows_from_log(es)
    # The columns the log's own answer has (the list's facets stay the viewer's).
    return [{k: v for k, v in msgspec.structs.asdict(r).items() if k not in _OVERVIEW_EXTRAS} for r in rows]


_OVERVIEW_EXTRAS = ("trials", "spec", "subjects", "chaos", "agents")


@app.command
def campaigns(*, store: StoreOption = None, json: JsonFlag = False, wide: WideFlag = False) -> int:
    """List the campaigns in the store, newest first, with their status and trials done.

    Each campaign's id, name, file, status (finished, running, interrupted), trials done of
    those planned (an index counts once, whatever its attempts), aborted attempts, and when
    it started. A one-trial ``opeval run`` is a campaign too, named after its subject,
    chaos, agent and seed.
    """
    path = store_path(store)
    with EventStore(path, writable=False) as es:
        rows = _campaign_rows(path, es)
        short = short_ids(store_ids(es))
    if json:
        print_json(rows)
        return ExitCode.OK
    if not rows:
        out.print(f"no campaigns yet: run `{hint('run --baseline')}` or `{hint('run campaign FILE')}`",
                  highlight=False, markup=False)
        return ExitCode.OK
    any_aborted = any(r["aborted"] for r in rows)
    cols = [Col("campaign", keep=True), Col("name", drop=1), Col("status", keep=True, style=outcome_style),
            Col("trials", keep=True, justify="right"),
            Col("aborted", justify="right", fold=False, drop=2 if any_aborted else 7),
            Col("recovered", justify="right", fold=False, drop=3), Col("started (UTC)", fold=False, drop=5),
            Col("file", drop=6)]
    table = []
    for r in rows:
        status = r["status"] + (f" ({r['running']})" if r["status"] == "running" else "")
        table.append([short[r["campaign_id"]], r["title"], status, f"{r['done']}/{r['trials_planned']}",
                      str(r["aborted"]), str(r["recovered"]), (r["started_at"] or "")[:16].replace("T", " "),
                      r["file"] or "-"])
    print_table(cols, table, wide=wide, caption="trials: indexes with an outcome of those planned; aborted: "
                                                "attempts stopped before an outcome (--resume runs them again)")
    return ExitCode.OK


@app.command
def show(id: AnyId, /, *, store: StoreOption = None, json: JsonFlag = False, wide: WideFlag = False) -> int:  # noqa: A002
    """Show a trial's timeline, or a campaign and its trials.

    Parameters
    ----------
    id
        A trial or campaign id, or a unique prefix of one (see ``opeval list`` and ``opeval campaigns``).
    """
    with EventStore(store_path(store), writable=False) as es:
        kind, oid = es.resolve(id)
        events = es.events(oid)
        trials: list[tuple[uuid.UUID, Any]] = []
        if kind == "campaign":
            campaign: Campaign = es.campaign(oid)
            trials = [(tid, tr) for tid in campaign.trial_ids if (tr := _readable_trial(es, tid))]
        short = short_ids(store_ids(es))
    if json:
        data: dict[str, Any] = {"kind": kind, "id": str(oid), "events": [event_json(None, e) for e in events]}
        if kind == "campaign":
            data["trials"] = [{"trial_id": str(t), "index": campaign.trial_index[t], "outcome": tr.outcome}
                              for t, tr in trials]
        print_json(data)
        return ExitCode.OK
    if kind == "campaign":
        c = events[0]  # a campaign whose first event cannot be decoded fails in es.campaign above
        out.print(f"campaign {oid.hex} [bold]{c.name}[/bold] started {c.timestamp:%Y-%m-%d %H:%M:%S} UTC",
                  highlight=False)
        cols = [Col("#", justify="right", drop=4), Col("trial", keep=True), Col("chaos → target", drop=2),
                Col("agent", drop=1), Col("seed", justify="right", drop=3),
                Col("outcome", keep=True, style=outcome_style)]
        print_table(cols, [[str(campaign.trial_index[tid]), short[tid.hex], f"{tr.chaos.kind} → {tr.chaos.target}",
                            _who(tr.agent.name, tr.agent.variant), str(tr.seed), tr.outcome or "running"]
                           for tid, tr in trials], wide=wide)
        return ExitCode.OK
    started = events[0] if events and isinstance(events[0], Trial.TrialStarted) else None
    from opeval.subjects import words_for  # the subject's screen words (imports the subjects: only here)

    words = words_for(started.subject if started is not None else "")
    if started is None:  # skipped as undecodable: the rest of the timeline still shows
        out.print(f"trial {oid.hex}  (its TrialStarted cannot be decoded)", highlight=False)
    else:
        out.print(f"trial {oid.hex}  started {started.timestamp:%Y-%m-%d %H:%M:%S} UTC  "
                  f"(campaign {short.get(started.campaign_id.hex, started.campaign_id.hex)})", highlight=False)
    print_table([Col("offset", keep=True, justify="right"), Col("event", keep=True), Col("detail", drop=1)],
                [[f"{e.offset_s:.3f}s", type(e).__name__, describe(e, words)] for e in events], wide=wide)
    return ExitCode.OK


@app.command(name="cleanup")
def cleanup_(*, store: StoreOption = None, json: JsonFlag = False) -> int:
    """Reap what killed harnesses left behind (processes, directories) and record their trials as aborted."""
    path = store_path(store)
    if store_exists(path):
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
            out.print(f"trial {r.trial_id[:SHORT]}: killed {len(r.killed)} processes, "
                      f"removed {len(r.removed)} directories")
        for t in report.aborted:
            out.print(f"trial {t.hex[:SHORT]}: recorded as aborted")
        for p in report.problems:
            err.print(p, highlight=False)
        if not (report.reaped or report.aborted or report.problems):
            out.print("nothing to clean up")
    return ExitCode.TRIAL_ERROR if report.problems else ExitCode.OK


@app.command
def verify(*, store: StoreOption = None, json: JsonFlag = False) -> int:
    """Check that the whole log replays: every event decodes, each campaign's and trial's
    events are in order (versions 1, 2, 3... as the log holds them), and each trial lives
    TrialStarted -> ... -> TrialFinished. Lists every problem; exits 7 if there is one.
    """
    from opeval.store import verify_log

    path = store_path(store)
    with EventStore(path, writable=False) as es:
        report = verify_log(es.recorder)
    if json:
        print_json({"store": str(path), "ok": report.ok, "events": report.events, "trials": report.trials,
                    "campaigns": report.campaigns, "unfinished": report.unfinished,
                    "problems": [vars(p) for p in report.problems]})
    else:
        for p in report.problems:
            out.print(p.line(), highlight=False, markup=False, soft_wrap=True)
        running = f", {len(report.unfinished)} without an end yet (running, or see `{hint('cleanup')}`)" \
            if report.unfinished else ""
        verdict = "ok" if report.ok else f"{len(report.problems)} problem{'s' if len(report.problems) != 1 else ''}"
        out.print(f"{path}: {report.events} events, {report.campaigns} campaigns, {report.trials} trials"
                  f"{running}: {verdict}", highlight=False, markup=False, soft_wrap=True)
    return ExitCode.OK if report.ok else ExitCode.LOG_DAMAGED


@app.command
def config(*, json: JsonFlag = False) -> int:
    """Show the defaults in effect (store, subject, parallel, model) and where each comes from.

    Sources, highest first: an option on the command line, an ``OPEVAL_*`` variable, the
    project's opeval.toml (this directory or the nearest parent with one), the user's
    ~/.config/opeval/opeval.toml ($XDG_CONFIG_HOME), the built-in default.
    """
    from ._config import KEYS, config_files, env_var, settings

    from opeval.store import default_store_path

    found = settings()
    built_in = {"store": str(default_store_path()), "subject": "etcd", "parallel": "the campaign file's, else 1",
                "model": DEFAULT_MODEL}
    from opeval.store import parse_store

    shown = {k: str(parse_store(s.value)) if k == "store" else s.value for k, s in found.items()}  # no password
    rows = [{"key": k, "value": shown[k] if k in found else None,
             "from": found[k].origin if k in found else "built-in default", "variable": env_var(k), "sets": what}
            for k, what in KEYS.items()]
    if json:
        print_json({"settings": rows, "files": [{"path": str(p), "exists": e} for p, e in config_files()]})
        return ExitCode.OK
    print_table([Col("key", keep=True), Col("value", drop=2), Col("from", drop=1), Col("variable", drop=3),
                 Col("sets", drop=4)],
                [[r["key"], built_in[r["key"]] if r["value"] is None else str(r["value"]), r["from"], r["variable"],
                  r["sets"]] for r in rows])
    for p, exists in config_files():
        out.print(f"{'read' if exists else 'absent'}: {p}", highlight=False, markup=False, soft_wrap=True)
    return ExitCode.OK


@app.command
def completion(shell: Literal["bash", "zsh", "fish"], /) -> int:
    """Print the shell completion script, to install by hand (``--install-completion`` does it for you).

    Parameters
    ----------
    shell
        The shell to complete for.
    """
    sys.stdout.write(app.generate_completion(prog_name="opeval", shell=shell))
    return ExitCode.OK


def _docstring(module: str, function: str) -> str:
    """A function's description (its docstring without the parameters), read from the module's
    source without importing it."""
    import ast
    import importlib.util
    import inspect

    origin = importlib.util.find_spec(module).origin  # type: ignore[union-attr]
    tree = ast.parse(Path(origin).read_text())  # type: ignore[arg-type]
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function)
    return inspect.cleandoc(ast.get_docstring(node) or "").split("\nParameters\n", 1)[0].strip()


# The analysis stack (DuckDB, Arrow, numpy, scipy) and the viewer load only when one of
# their commands runs: `opeval run` never imports them (docs/benchmarks.md has the figure).
for _name, _module, _function in (
        ("analyze", "_analysis", "analyze"), ("compare", "_analysis", "compare"),
        ("compare-baseline", "_analysis", "compare_baseline_"), ("rescore", "_analysis", "rescore"),
        ("export", "_analysis", "export"), ("classify", "_analysis", "classify"), ("view", "_view", "view"),
        ("watch", "_watch", "watch")):
    app.command(f"opeval.cli.{_module}:{_function}", name=_name,
                help=_docstring(f"opeval.cli.{_module}", _function))

store_app = App(name="store", help="Work on whole event stores: copy a log between SQLite and PostgreSQL.")
store_app.command("opeval.cli._store:copy", name="copy", help=_docstring("opeval.cli._store", "copy"))
app.command(store_app)


def _one_line(e: CycloptsError) -> str:
    text = " ".join(str(e).split())
    return text[:-1] if text.endswith(".") and not text.endswith("...") else text


class _Invoked:
    """The arguments main was called with (``run --tui`` runs them again, in a child process)."""

    argv: list[str] | None = None


INVOKED = _Invoked()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and an exit code, never a traceback."""
    INVOKED.argv = argv
    try:
        code = app(argv)
    except CycloptsError as e:
        _ending()
        err.print(f"opeval: error: {_one_line(e)} (see `{prog()} --help`)", highlight=False, markup=False,
                  soft_wrap=True)
        sys.exit(ExitCode.USAGE)
    except OpevalError as e:
        _ending()
        err.print(f"opeval: error: {with_prog(str(e))}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        _ending()
        err.print("opeval: interrupted", highlight=False)
        sys.exit(ExitCode.INTERRUPTED)
    _ending()
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


def _ending() -> None:
    """The outcome is decided: a Ctrl-C from here on would only turn the last line into a
    traceback or the exit code into a signal's, so it is ignored while the program exits."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
