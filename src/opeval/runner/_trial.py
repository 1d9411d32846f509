"""Running one trial: cluster up, workload, fault, (agent), recovery, data check, teardown.

Every step is an event appended durably as it happens. Whatever goes wrong, the cluster
is torn down and the trial ends with a TrialFinished: ``recovered``, ``not_recovered``,
``error`` (the harness or the fault failed) or ``aborted`` (interrupted).
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

import opeval
from opeval.agents import AGENTS, Agent, AgentResult, AgentTools, BudgetExhausted, Incident, NodeControl
from opeval.agents import load_prices, require_api_key
from opeval.chaos import CHAOS, ChaosContext, ChaosVerificationError, PeerProxy
from opeval.errors import OpevalError
from opeval.events import (
    AgentSpec,
    Campaign,
    ChaosSpec,
    ClusterState,
    HarnessInfo,
    Trial,
    TrialConfig,
)
from opeval.monitor import Monitor
from opeval.runtimes import RUNTIMES, Journal, MemberEvent, RestartPolicy, runtime_dir, self_identity
from opeval.sandbox import check_mechanism, describe, operator_sandbox
from opeval.store import EventStore, read_model_path
from opeval.subjects import SUBJECTS
from opeval.workload import Workload, WorkloadWindow


@dataclass(frozen=True)
class TrialRequest:
    """What to run: validated by :func:`prepare` before anything starts."""

    subject: str = "etcd"
    runtime: str = "local"
    chaos: ChaosSpec = field(default_factory=lambda: ChaosSpec(kind="node_kill"))
    agent: AgentSpec = field(default_factory=AgentSpec)
    config: TrialConfig = field(default_factory=TrialConfig)
    seed: int = 0
    sandbox: str = "bubblewrap"  # how the agent's commands are isolated (``none``: unisolated, on request)


@dataclass
class TrialStatus:
    """The live view of a running trial, for status lines."""

    trial_id: uuid.UUID
    phase: str
    elapsed_s: float
    state: ClusterState | None = None


@dataclass
class TrialResult:
    """How a trial ended."""

    trial_id: uuid.UUID
    outcome: str
    reason: str
    time_to_detect_s: float | None
    time_to_recover_s: float | None


def harness_info() -> HarnessInfo:
    """This process, as recorded in TrialStarted and CampaignStarted."""
    pid, ticks = self_identity()
    return HarnessInfo(host=socket.gethostname(), pid=pid, start_ticks=ticks, version=opeval.__version__)


def prepare(req: TrialRequest) -> None:
    """Fail fast (before any cluster starts) on an unknown subject, runtime, chaos or target."""
    subject = SUBJECTS.get(req.subject)()
    RUNTIMES.get(req.runtime)
    names = subject.member_names(req.config.members)
    CHAOS.get(req.chaos.kind)().validate(req.chaos, names)
    RestartPolicy.parse(req.config.restart_policy)
    if req.agent.name != "none":
        AGENTS.get(req.agent.name)
        check_mechanism(req.sandbox)
        if req.agent.name == "anthropic":
            require_api_key()
    if req.config.timeout_s <= 0 or req.config.settle_s < 0:
        raise OpevalError("--timeout must be positive and --settle not negative")


class TrialClock:
    """Monotonic seconds since the trial started."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self) -> float:
        return round(time.monotonic() - self._t0, 6)


class _Recorder:
    """Appends one event at a time, each in its own durable transaction."""

    def __init__(self, store: EventStore, trial: Trial, clock: TrialClock) -> None:
        self.store, self.trial, self.clock = store, trial, clock

    def __call__(self, event_class: type[Trial.Event], **fields: Any) -> None:
        fields.setdefault("offset_s", self.clock())
        self.trial.record(event_class, **fields)
        self.store.save(self.trial)


async def run_trial(
    store: EventStore,
    campaign: Campaign,
    index: int,
    req: TrialRequest,
    *,
    cancel_scope: anyio.CancelScope | None = None,
    interrupted: Callable[[], str | None] = lambda: None,
    on_status: Callable[[TrialStatus], Any] = lambda s: None,
    agent: Agent | None = None,
) -> TrialResult:
    """Run one trial of ``campaign`` and record it in ``store``.

    ``cancel_scope`` is cancelled by the caller on Ctrl-C/SIGTERM; ``interrupted``
    then names the signal so the trial is recorded as aborted. ``agent`` replaces the
    agent the request names (tests use it to put a fake transport under a real agent).
    """
    if agent is None:
        prepare(req)
        if req.agent.name != "none":
            agent = AGENTS.get(req.agent.name)(req.agent)
    subject = SUBJECTS.get(req.subject)()
    chaos = CHAOS.get(req.chaos.kind)()
    cfg = req.config
    clock = TrialClock()
    trial = Trial._create(
        Trial.TrialStarted, id=uuid.uuid4(), campaign_id=campaign.id, index=index,
        subject=req.subject, runtime=req.runtime, chaos=req.chaos, agent=req.agent,
        seed=req.seed, config=cfg, harness=harness_info(), offset_s=0.0,
        sandbox=describe(req.sandbox) if req.agent.name != "none" else None,
    )
    campaign.trigger_event(Campaign.TrialScheduled, trial_id=trial.id, index=index)
    store.save(campaign, trial)
    record = _Recorder(store, trial, clock)
    status = TrialStatus(trial_id=trial.id, phase="starting cluster", elapsed_s=0.0)

    def set_phase(phase: str) -> None:
        status.phase, status.elapsed_s = phase, clock()
        on_status(status)

    def on_member_event(e: MemberEvent) -> None:
        if e.kind == "started":
            record(Trial.MemberProcessStarted, member=e.member, pid=e.pid, restarts=e.restarts, reason=e.reason)
        else:
            record(Trial.MemberProcessExited, member=e.member, pid=e.pid, exit_code=e.exit_code, signal=e.signal)

    outcome, reason = "error", "the trial did not reach its end"
    ttd: float | None = None
    ttr: float | None = None
    scope = cancel_scope or anyio.CancelScope()
    journal = Journal(trial.id.hex, store.path)
    runtime = RUNTIMES.get(req.runtime)(
        trial_id=trial.id.hex, workspace=runtime_dir() / "trials" / trial.id.hex, journal=journal,
        restart_policy=RestartPolicy.parse(cfg.restart_policy), on_event=on_member_event,
    )
    error: BaseException | None = None
    try:
        with scope:
            async with httpx.AsyncClient(trust_env=False, limits=httpx.Limits(max_connections=200)) as http:
                try:
                    async with runtime.session():  # leaving it stops every member, shielded from cancellation
                        outcome, reason, ttd, ttr = await _incident(
                            subject, chaos, runtime, http, record, clock, trial, req, set_phase, status, on_status,
                            agent)
                        set_phase("tearing down")
                finally:
                    with anyio.CancelScope(shield=True), _store_may_be_broken(error):
                        record(Trial.ClusterDown, graceful=True,
                               detail="every member stopped; ports, workspace and journal released")
        if scope.cancelled_caught:
            outcome, reason = "aborted", f"interrupted by {interrupted() or 'cancellation'}"
    except Exception as e:  # the trial is still recorded as ended before the error surfaces
        error = _first_user_error(e) or e
        outcome = "error"
        reason = str(error) if isinstance(error, OpevalError) else f"{type(error).__name__}: {error}"
    finally:
        with anyio.CancelScope(shield=True), _store_may_be_broken(error):
            if outcome == "aborted":
                record(Trial.TrialAborted, reason=reason, reaped=[])
            record(Trial.TrialFinished, outcome=outcome, reason=reason,
                   time_to_detect_s=ttd, time_to_recover_s=ttr)
    if error is not None:
        raise error
    set_phase(f"finished: {outcome}")
    return TrialResult(trial.id, outcome, reason, ttd, ttr)


def _first_user_error(exc: BaseException) -> OpevalError | None:
    """The first OpevalError inside ``exc`` (task groups wrap errors in groups)."""
    if isinstance(exc, OpevalError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_user_error(inner)
            if found is not None:
                return found
    return None


@contextlib.contextmanager
def _store_may_be_broken(error: BaseException | None) -> Iterator[None]:
    """While ending a trial that failed, a store error must not hide the first error."""
    try:
        yield
    except OpevalError:
        if error is None:
            raise


async def _incident(  # noqa: PLR0913, PLR0915 - the trial's steps, in order, in one place
    subject: Any, chaos: Any, runtime: Any, http: httpx.AsyncClient, record: _Recorder,
    clock: TrialClock, trial: Trial, req: TrialRequest,
    set_phase: Callable[[str], None], status: TrialStatus, on_status: Callable[[TrialStatus], Any],
    agent: Agent | None,
) -> tuple[str, str, float | None, float | None]:
    cfg = req.config
    if getattr(chaos, "needs_peer_proxy", False):
        specs = subject.plan(runtime, cfg.members, cluster_token=trial.id.hex, peer_fronts=True)
        proxy: PeerProxy | None = PeerProxy(runtime.host, subject.peer_routes)
    else:
        specs = subject.plan(runtime, cfg.members, cluster_token=trial.id.hex)
        proxy = None
    if hasattr(chaos, "prepare_members"):  # e.g. a small quota or capped disks, before anything starts
        specs = chaos.prepare_members(req.chaos, specs, runtime)
    async with contextlib.AsyncExitStack() as stack:
        if proxy is not None:  # members reach each other only through it, from their first start
            await stack.enter_async_context(proxy.serving())
        return await _incident_with(subject, chaos, runtime, http, record, clock, trial, req, set_phase, status,
                                    on_status, agent, specs, proxy)


async def _incident_with(  # noqa: PLR0913, PLR0915 - the trial's steps, in order, in one place
    subject: Any, chaos: Any, runtime: Any, http: httpx.AsyncClient, record: _Recorder,
    clock: TrialClock, trial: Trial, req: TrialRequest,
    set_phase: Callable[[str], None], status: TrialStatus, on_status: Callable[[TrialStatus], Any],
    agent: Agent | None, specs: list[Any], proxy: PeerProxy | None,
) -> tuple[str, str, float | None, float | None]:
    cfg = req.config
    started = clock()
    for spec in specs:
        await runtime.start_member(spec)

    def running() -> dict[str, bool]:
        return {s.name: runtime.is_running(s.name) for s in specs}

    state = await subject.wait_healthy(http, running())
    endpoints = [e.__class__(name=e.name, client_url=e.client_url, peer_url=e.peer_url,
                             member_id=next((m.member_id or "" for m in state.members if m.name == e.name), ""))
                 for e in subject.endpoints]
    record(Trial.ClusterUp, members=endpoints, cluster_id=state.cluster_id or "",
           time_to_healthy_s=round(clock() - started, 6))
    record(Trial.StateSnapshot, phase="before", state=state)

    def on_state(s: ClusterState) -> None:
        status.state, status.elapsed_s = s, clock()
        on_status(status)

    monitor = Monitor(
        subject=subject, http=http, running=running, record=record, clock=clock, baseline=state,
        poll_interval_s=cfg.poll_interval_s, snapshot_interval_s=cfg.snapshot_interval_s,
        settle_s=cfg.settle_s, on_state=on_state,
    )

    def on_sample(w: WorkloadWindow, end_s: float) -> None:
        from opeval.events import TimeWindow

        record(Trial.WorkloadSampled, window=TimeWindow(w.start_s, end_s), writes_ok=w.writes_ok,
               writes_failed=w.writes_failed, reads_ok=w.reads_ok, reads_failed=w.reads_failed,
               latency_p50_ms=w.percentile(0.5), latency_p99_ms=w.percentile(0.99))

    workload = Workload(subject.client(http), rate_hz=cfg.workload_rate_hz, clock=clock,
                        seed=req.seed, on_sample=on_sample)
    outcome, reason = "not_recovered", ""
    ttd = ttr = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(monitor.run)
        record(Trial.WorkloadStarted, rate_hz=cfg.workload_rate_hz, key_prefix=workload.key_prefix)
        tg.start_soon(workload.run)
        set_phase("warming up")
        await anyio.sleep(cfg.warmup_s)

        set_phase(f"injecting {req.chaos.kind}")
        ctx = ChaosContext(subject=subject, runtime=runtime, http=http, before=state,
                           rng=random.Random(req.seed), clock=clock, proxy=proxy)
        monitor.armed = True
        injection = await chaos.inject(req.chaos, ctx)
        record(Trial.ChaosInjected, kind=req.chaos.kind, target=injection.target,
               params=req.chaos.params, detail=injection.detail)
        try:
            verification = await chaos.verify(injection, ctx, cfg.verify_timeout_s)
        except ChaosVerificationError as e:
            tg.cancel_scope.cancel()
            return "error", f"fault not verified: {e}", None, None
        verified_at = clock()  # TTD and TTR count from this very offset
        record(Trial.ChaosVerified, effect=verification.effect, observations=verification.observations,
               offset_s=verified_at)
        monitor.verified_at, monitor.verified = verified_at, True
        duration = req.chaos.params.get("duration_s")
        if duration:
            async def end_fault() -> None:  # the fault lasts its duration unless repaired first
                await anyio.sleep(float(duration))  # type: ignore[arg-type]
                action = await chaos.revert(injection, ctx)
                if action:
                    record(Trial.ChaosReverted, kind=req.chaos.kind, target=injection.target,
                           action=f"{action} (its {float(duration):g}s duration ended)")  # type: ignore[arg-type]

            tg.start_soon(end_fault)

        deadline = anyio.current_time() + cfg.timeout_s
        if agent is not None:
            set_phase("agent at work")
            with anyio.move_on_at(deadline):
                await _run_agent(agent, req, subject, runtime, monitor, record, clock, trial, deadline)
        set_phase("waiting for recovery")
        with anyio.move_on_at(deadline):
            await monitor.recovered.wait()
        if monitor.fault_detected_at is not None:
            ttd = round(max(0.0, monitor.fault_detected_at - verified_at), 6)
        if monitor.recovered.is_set():
            assert monitor.met_since is not None
            outcome, ttr = "recovered", round(max(0.0, monitor.met_since - verified_at), 6)
            reason = "recovery criteria held for the settle window"
        else:
            unmet = "; ".join(monitor.unmet) or "criteria not met"
            reason = f"not recovered within {cfg.timeout_s:g}s: {unmet}"
        action = await chaos.revert(injection, ctx)
        if action:
            record(Trial.ChaosReverted, kind=req.chaos.kind, target=injection.target, action=action)
        tg.cancel_scope.cancel()

    record(Trial.WorkloadStopped, writes_ok=workload.totals.writes_ok, writes_failed=workload.totals.writes_failed,
           reads_ok=workload.totals.reads_ok, reads_failed=workload.totals.reads_failed,
           acknowledged=len(workload.ledger), unavailable=workload.unavailable,
           longest_unavailable_s=workload.longest_unavailable_s)
    set_phase("checking data")
    after = await subject.observe(http, running())
    record(Trial.StateSnapshot, phase="after", state=after)
    safety = await workload.check_data()
    record(Trial.DataSafetyChecked, acknowledged=safety.acknowledged, present=safety.present,
           missing=safety.missing, wrong=safety.wrong, unreadable=safety.unreadable,
           sample_missing=safety.sample_missing, error=safety.error)
    if outcome == "recovered" and (safety.missing or safety.wrong or safety.error):
        outcome = "not_recovered"
        reason = (f"acknowledged writes lost: {safety.missing} missing, {safety.wrong} wrong"
                  + (f" ({safety.error})" if safety.error else ""))
    return outcome, reason, ttd, ttr


async def _run_agent(  # noqa: PLR0913
    agent: Agent, req: TrialRequest, subject: Any, runtime: Any, monitor: Monitor,
    record: _Recorder, clock: TrialClock, trial: Trial, deadline: float,
) -> None:
    """Page the agent with the alert, let it work, record how it stopped.

    The caller's deadline (the trial timeout) cancels it; so does recovery being
    detected, unless the agent's config says ``stop_on_recovery: false``.
    """
    with anyio.move_on_after(5):  # the alert fires when the monitor sees a symptom
        while monitor.fault_detected_at is None:
            await anyio.sleep(0.02)
    alert = "; ".join(monitor.symptoms) or "cluster health check failing"
    if req.agent.config.get("context") == "full":
        alert += f" (injected fault: {req.chaos.kind}, target {req.chaos.target})"
    root = runtime.workspace / "operator"
    tools_cfg = req.agent.config.get("tools")
    allowed = None if tools_cfg is None else {t.strip() for t in str(tools_cfg).split(",") if t.strip()}
    ctl = runtime.workspace / "ctl.sock"
    stop_on_recovery = req.agent.config.get("stop_on_recovery", True) is not False
    result: AgentResult | None = None
    async with NodeControl(runtime).serving(ctl), operator_sandbox(
        mechanism=req.sandbox, root=root, trial_id=trial.id.hex, tool_env=subject.operator_tools(root / "bin"),
        control_socket=ctl, allowed_tools=allowed, client_urls=[e.client_url for e in subject.endpoints],
        member_dirs={e.name: runtime.member_dir(e.name) for e in subject.endpoints},
        mount_capped=runtime.mount_capped,
        secrets=[record.store.path, read_model_path(record.store.path), runtime_dir()],
    ) as sandbox:
        incident = Incident(alert=alert, subject=req.subject, members=[e.name for e in subject.endpoints],
                            tools=sandbox.tools, member_dirs=sandbox.member_dirs)
        tools = AgentTools(sandbox=sandbox, record=record, clock=clock, spec=req.agent,
                           recovered=monitor.recovered, prices=load_prices())
        record(Trial.AgentStarted, agent=req.agent, context=incident.prompt(), tools=sandbox.tools)
        try:
            async with anyio.create_task_group() as tg:

                async def stop_when_recovered() -> None:
                    await monitor.recovered.wait()
                    tg.cancel_scope.cancel()

                if stop_on_recovery:
                    tg.start_soon(stop_when_recovered)
                try:
                    result = await agent.run(incident, tools)
                except BudgetExhausted as e:
                    result = AgentResult(e.reason, str(e))
                except OpevalError:
                    raise
                except Exception as e:  # noqa: BLE001 - an agent's own failure is a result, not a harness crash
                    result = AgentResult("error", f"{type(e).__name__}: {e}")
                tg.cancel_scope.cancel()
        finally:
            if result is None:
                if monitor.recovered.is_set():
                    stopped_by = "recovered"
                elif anyio.current_time() >= deadline:
                    stopped_by = "time_budget"
                else:
                    stopped_by = "interrupted"
                result = AgentResult(stopped_by, f"stopped by the harness ({stopped_by})")
            with anyio.CancelScope(shield=True):
                record(Trial.AgentFinished, reason=result.reason, summary=result.summary, steps=tools.step,
                       declared_resolved=result.declared_resolved)
