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
from pathlib import Path
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import msgspec

import opeval
from opeval.agents import AGENTS, Agent, AgentResult, AgentTools, ApprovalGate, ApprovalPolicy, BudgetExhausted, Incident
from opeval.agents import NodeControl, StoreApprover
from opeval.agents import load_prices
from opeval.chaos import CHAOS, Chaos, ChaosContext, ChaosVerificationError, PeerProxy, check_chaos, control_alert
from opeval.errors import OpevalError, UsageError
from opeval.events import (
    AgentSpec,
    Campaign,
    ChaosSpec,
    ClusterState,
    HarnessInfo,
    MemberEndpoint,
    TimeWindow,
    Trial,
    TrialConfig,
    data_safe,
    time_to_recover,
)
from opeval.monitor import Monitor
from opeval.params import check_trial_settings
from opeval.runtimes import RUNTIMES, Journal, MemberEvent, MemberSpec, RestartPolicy, Runtime, runtime_dir, self_identity
from opeval.sandbox import check_mechanism, describe, operator_sandbox
from opeval.store import EventStore, read_model_path, store_address
from opeval.subjects import SUBJECTS, Subject
from opeval.workload import WorkloadWindow


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
    """Fail fast (before any cluster starts) on an unknown or unsupported subject, runtime,
    chaos kind, target or setting."""
    subject = SUBJECTS.get(req.subject)()
    RUNTIMES.get(req.runtime).preflight(subject.name, subject.container_definition())
    check_supported(subject, req.chaos.kind)
    names = subject.member_names(req.config.members)
    check_chaos(CHAOS.get(req.chaos.kind)(), req.chaos, names)
    check_trial_settings(msgspec.to_builtins(req.config))
    RestartPolicy.parse(req.config.restart_policy)
    if req.agent.name != "none":
        AGENTS.get(req.agent.name)(req.agent)  # its settings and key are checked as it is made
        load_prices()  # the costs its model calls are recorded at
        check_mechanism(req.sandbox)


def check_supported(subject: Subject, kind: str) -> None:
    """A chaos kind that does not apply to the subject is refused, naming those that do."""
    if not CHAOS.get(kind)().applies_to(subject):
        allowed = ", ".join(k for k in CHAOS.names() if CHAOS.get(k)().applies_to(subject))
        raise UsageError(f"subject {subject.name} does not support chaos kind {kind!r}: choose one of {allowed}")


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
    ttr: float | None = None
    scope = cancel_scope or anyio.CancelScope()
    journal = Journal(trial.id.hex, store_address(store.path))
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
                        run = _TrialRun(subject=subject, chaos=chaos, runtime=runtime, http=http, record=record,
                                        clock=clock, trial=trial, req=req, set_phase=set_phase, status=status,
                                        on_status=on_status, agent=agent)
                        outcome, reason, ttr = await run.incident()
                        set_phase("tearing down")
                finally:
                    with anyio.CancelScope(shield=True), _store_may_be_broken(error):
                        record(Trial.ClusterDown, graceful=True,
                               detail="every member stopped; ports, workspace and journal released")
        if scope.cancelled_caught:
            outcome, reason = "aborted", f"interrupted by {interrupted() or 'cancellation'}"
    except Exception as e:  # the trial is still recorded as ended before the error surfaces
        error = _first_user_error(e) or sole_error(e)
        outcome = "error"
        reason = str(error) if isinstance(error, OpevalError) else f"{type(error).__name__}: {error}"
    finally:
        with anyio.CancelScope(shield=True), _store_may_be_broken(error):
            if outcome == "aborted":
                record(Trial.TrialAborted, reason=reason, reaped=[])
            # From the offsets the log holds, by the definition the read models use too.
            ttd = trial.time_to_detect()
            ttr = ttr if outcome == "recovered" else None
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


def sole_error(exc: BaseException) -> BaseException:
    """The one error inside nested groups of one (task groups wrap a lone failure), else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def _store_may_be_broken(error: BaseException | None) -> Iterator[None]:
    """While ending a trial that failed, a store error must not hide the first error."""
    try:
        yield
    except OpevalError:
        if error is None:
            raise


@dataclass
class _TrialRun:
    """One trial's run: everything its steps share, in one place."""

    subject: Subject
    chaos: Chaos
    runtime: Runtime
    http: httpx.AsyncClient
    record: _Recorder
    clock: TrialClock
    trial: Trial
    req: TrialRequest
    set_phase: Callable[[str], None]
    status: TrialStatus
    on_status: Callable[[TrialStatus], Any]
    agent: Agent | None
    specs: list[MemberSpec] = field(default_factory=list)
    proxy: PeerProxy | None = None
    gate: ApprovalGate | None = None  # the variant's approval policy, if it has one

    @property
    def control(self) -> bool:
        """A no-fault control trial (``--chaos none``)."""
        return self.req.chaos.kind == "none"

    def running(self) -> dict[str, bool]:
        """Which members' processes are alive now."""
        return {s.name: self.runtime.is_running(s.name) for s in self.specs}

    async def incident(self) -> tuple[str, str, float | None]:
        """Plan the members (through the fault proxy if the kind needs it), then run the incident."""
        cfg, chaos = self.req.config, self.chaos
        await anyio.to_thread.run_sync(self.runtime.prepare, self.subject.name, self.subject.container_definition())
        proxied = chaos.needs_peer_proxy(self.runtime)
        self.specs = self.subject.plan(self.runtime, cfg.members, cluster_token=self.trial.id.hex, peer_fronts=proxied)
        if proxied:
            self.proxy = PeerProxy(self.runtime.host, self.subject.peer_routes, self.subject.peer_sender)
        # e.g. a small quota or capped disks, before anything starts
        self.specs = chaos.prepare_members(self.req.chaos, self.specs, self.runtime, self.subject)
        async with contextlib.AsyncExitStack() as stack:
            if self.proxy is not None:  # members reach each other only through it, from their first start
                await stack.enter_async_context(self.proxy.serving())
            return await self._incident()

    async def _cluster_up(self) -> ClusterState:
        started = self.clock()
        for spec in self.specs:
            await self.runtime.start_member(spec)
        state = await self.subject.wait_healthy(self.http, self.running())
        ids = {m.name: str(m.detail.get("member_id") or "") for m in state.members}
        endpoints = [MemberEndpoint(name=e.name, client_url=e.client_url, peer_url=e.peer_url, member_id=ids.get(e.name, ""))
                     for e in self.subject.endpoints]
        self.record(Trial.ClusterUp, members=endpoints, cluster_id=str(state.detail.get("cluster_id") or ""),
                    time_to_healthy_s=round(self.clock() - started, 6))
        self.record(Trial.StateSnapshot, phase="before", state=state)
        return state

    async def _incident(self) -> tuple[str, str, float | None]:  # noqa: PLR0915 - the steps, in order
        req, cfg, record, clock, chaos = self.req, self.req.config, self.record, self.clock, self.chaos
        state = await self._cluster_up()

        def on_state(s: ClusterState) -> None:
            self.status.state, self.status.elapsed_s = s, clock()
            self.on_status(self.status)

        monitor = Monitor(
            subject=self.subject, http=self.http, running=self.running, record=record, clock=clock, baseline=state,
            poll_interval_s=cfg.poll_interval_s, snapshot_interval_s=cfg.snapshot_interval_s,
            settle_s=cfg.settle_s, on_state=on_state,
        )

        def on_sample(w: WorkloadWindow, end_s: float) -> None:
            record(Trial.WorkloadSampled, window=TimeWindow(w.start_s, end_s), writes_ok=w.writes_ok,
                   writes_failed=w.writes_failed, reads_ok=w.reads_ok, reads_failed=w.reads_failed,
                   latency_p50_ms=w.percentile(0.5), latency_p99_ms=w.percentile(0.99))

        workload = self.subject.workload(self.http, rate_hz=cfg.workload_rate_hz, clock=clock, seed=req.seed,
                                         on_sample=on_sample)
        outcome, reason = "not_recovered", ""
        ttr = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(monitor.run)
            record(Trial.WorkloadStarted, rate_hz=cfg.workload_rate_hz, key_prefix=workload.key_prefix)
            tg.start_soon(workload.run)
            self.set_phase("warming up")
            await anyio.sleep(cfg.warmup_s)

            self.set_phase("paging on a false alarm" if self.control else f"injecting {req.chaos.kind}")
            ctx = ChaosContext(subject=self.subject, runtime=self.runtime, http=self.http, before=state,
                               rng=random.Random(req.seed), clock=clock, proxy=self.proxy)
            monitor.armed = True
            injection = await chaos.inject(req.chaos, ctx)
            record(Trial.ChaosInjected, kind=req.chaos.kind, target=injection.target,
                   params=req.chaos.params, detail=injection.detail)
            try:
                try:
                    verification = await chaos.verify(injection, ctx, cfg.verify_timeout_s)
                except ChaosVerificationError as e:
                    tg.cancel_scope.cancel()
                    return "error", f"fault not verified: {e}", None
                verified_at = clock()  # TTD and TTR count from this very offset
                record(Trial.ChaosVerified, effect=verification.effect, observations=verification.observations,
                       offset_s=verified_at)
                monitor.verified_at, monitor.verified = verified_at, True
                # A fault is judged from its verification; a control once the agent has stopped.
                if not self.control or self.agent is None:
                    monitor.judge_from(verified_at)
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
                if self.agent is not None:
                    self.set_phase("agent at work")
                    with anyio.move_on_at(deadline):
                        await self._run_agent(self.agent, monitor, deadline)
                if self.control:
                    # Judged after the agent: healthy for the settle window, within the verification
                    # timeout, however long the agent took (it may have left the system broken).
                    monitor.judge_from(clock())
                    deadline = max(deadline, anyio.current_time() + cfg.settle_s + cfg.verify_timeout_s)
                self.set_phase("waiting for recovery")
                with anyio.move_on_at(deadline):
                    await monitor.recovered.wait()
                if monitor.recovered.is_set():
                    assert monitor.met_since is not None
                    outcome = "recovered"
                    if self.control:
                        reason = "control: the system was healthy at the end (criteria held for the settle window)"
                    else:
                        # The agent's time waiting for a person is not its own: shown apart, not counted.
                        waited = self.gate.waited_between(verified_at, monitor.met_since) if self.gate else 0.0
                        ttr = time_to_recover(verified_at, monitor.met_since, waited)
                        reason = "recovery criteria held for the settle window"
                else:
                    unmet = "; ".join(monitor.unmet) or "criteria not met"
                    reason = (f"control: left unhealthy: {unmet}" if self.control
                              else f"not recovered within {cfg.timeout_s:g}s: {unmet}")
            finally:  # every path from the injection on, an error or Ctrl-C included, reverts
                with anyio.CancelScope(shield=True):
                    action = await chaos.revert(injection, ctx)
                    if action:
                        record(Trial.ChaosReverted, kind=req.chaos.kind, target=injection.target, action=action)
            tg.cancel_scope.cancel()

        record(Trial.WorkloadStopped, writes_ok=workload.totals.writes_ok, writes_failed=workload.totals.writes_failed,
               reads_ok=workload.totals.reads_ok, reads_failed=workload.totals.reads_failed,
               acknowledged=workload.acknowledged, unavailable=workload.unavailable,
               longest_unavailable_s=workload.longest_unavailable_s)
        self.set_phase("checking data")
        after = await self.subject.observe(self.http, self.running())
        record(Trial.StateSnapshot, phase="after", state=after)
        safety = await workload.check_data()
        record(Trial.DataSafetyChecked, acknowledged=safety.acknowledged, present=safety.present,
               missing=safety.missing, wrong=safety.wrong, unreadable=safety.unreadable,
               sample_missing=safety.sample_missing, error=safety.error)
        if outcome == "recovered" and safety.fails_recovery and not data_safe(safety.missing, safety.wrong,
                                                                                 safety.unreadable, safety.error):
            outcome = "not_recovered"
            reason = safety.violation()
            ttr = None  # as the read models say: a trial that did not recover has no time to recover
        return outcome, reason, ttr

    async def _run_agent(self, agent: Agent, monitor: Monitor, deadline: float) -> None:
        """Page the agent with the alert, let it work, record how it stopped.

        The caller's deadline (the trial timeout) cancels it; so does recovery being
        detected, unless the agent's config says ``stop_on_recovery: false``.
        """
        req, record, runtime, subject = self.req, self.record, self.runtime, self.subject
        if self.control:
            alert = control_alert(req.chaos)
        else:
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
            mechanism=req.sandbox, root=root, trial_id=self.trial.id.hex, tool_env=subject.operator_tools(root / "bin"),
            control_socket=ctl, allowed_tools=allowed, client_urls=[e.client_url for e in subject.endpoints],
            member_dirs={e.name: runtime.member_dir(e.name) for e in subject.endpoints},
            mount_capped=runtime.mount_capped,
            secrets=[p for p in (record.store.path, read_model_path(record.store.path), runtime_dir())
                     if isinstance(p, Path)],
        ) as sandbox:
            incident = Incident(alert=alert, subject=req.subject, members=[e.name for e in subject.endpoints],
                                tools=sandbox.tools, member_dirs=sandbox.member_dirs, guide=subject.operator_guide())
            policy = ApprovalPolicy.from_config(req.agent.config)
            if policy is not None:
                self.gate = ApprovalGate(policy, record=record, clock=self.clock, trial_id=self.trial.id,
                                         approver=StoreApprover(record.store))
            tools = AgentTools(sandbox=sandbox, record=record, clock=self.clock, spec=req.agent,
                               recovered=monitor.recovered, prices=load_prices(), gate=self.gate)
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
