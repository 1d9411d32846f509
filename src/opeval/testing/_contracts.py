"""Contract suites: one set of checks every subject, runtime, chaos kind and agent runs.

Subclass a suite in a pytest module and set its class attributes; pytest collects the
subclass (its name must start with ``Test``) and runs every ``test_`` method against your
plugin, as eventsourcing's recorder test cases run against every backend. Each suite
needs pytest's ``tmp_path`` and an ``OPEVAL_RUNTIME_DIR`` it may write to (the suites set
one per test). Checks that start a cluster are real: they run your members.
"""

from __future__ import annotations

import contextlib
import inspect
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest

from opeval.agents import AGENTS, Agent, AgentResult
from opeval.chaos import CHAOS, Chaos, check_chaos
from opeval.commands import CLASSES
from opeval.errors import UsageError
from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.params import Param, ParamError
from opeval.runner import TrialRequest, TrialResult, prepare, run_single
from opeval.runtimes import RUNTIMES, ContainerDefinition, Journal, MemberEvent, MemberSpec, RestartPolicy, Runtime
from opeval.store import EventStore
from opeval.subjects import SUBJECTS, Subject
from opeval.testing._fakes import FakeRuntime, FakeSubject


@contextlib.contextmanager
def fake_plugins() -> Iterator[None]:
    """Register :class:`FakeSubject` and :class:`FakeRuntime` as ``fake`` while the block runs."""
    with SUBJECTS.registered("fake", FakeSubject), RUNTIMES.registered("fake", FakeRuntime):
        yield


def run_one_trial(store_path: Path, req: TrialRequest, *, agent: Agent | None = None) -> tuple[TrialResult, list[Any]]:
    """Run ``req`` as a one-trial campaign in ``store_path``; its result and every event."""
    with EventStore(store_path) as store:
        result = anyio.run(lambda: run_single(store, req, handle_signals=False, agent=agent))
        return result, store.events(result.trial_id)


def _names(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def _eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:g}s")
        time.sleep(0.05)


class _Isolated:
    """Each check gets its own runtime directory (journals, workspaces, port locks)."""

    runtime_dir: Path

    @pytest.fixture(autouse=True)
    def _opeval_runtime_dir(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        # Short: a trial's control socket lives under it, and Unix socket paths are short.
        path = Path(tempfile.mkdtemp(prefix="opeval-rt-"))
        monkeypatch.setenv("OPEVAL_RUNTIME_DIR", str(path))
        self.runtime_dir = path
        yield path
        shutil.rmtree(path, ignore_errors=True)

    def _left_behind(self) -> list[Path]:
        return [p for sub in ("journal", "trials") if (self.runtime_dir / sub).exists()
                for p in (self.runtime_dir / sub).iterdir()]


class SubjectContract(_Isolated):
    """What every subject must do. Set :attr:`subject_name` (registered, e.g. by entry point).

    The live checks start the subject on :attr:`runtime_name` (``local``: real processes).
    """

    subject_name: ClassVar[str]
    runtime_name: ClassVar[str] = "local"
    #: Seconds a killed member may take to show, and a restarted one to be healthy again.
    settle_timeout_s: ClassVar[float] = 30.0

    def make_subject(self) -> Subject:
        """The subject under test, through its registry entry."""
        return SUBJECTS.get(self.subject_name)()

    def make_runtime(self, tmp_path: Path, policy: str = "never",
                     on_event: Callable[[MemberEvent], Any] = lambda e: None) -> Runtime:
        """A runtime for the live checks."""
        return RUNTIMES.get(self.runtime_name)(
            trial_id=f"contract{uuid.uuid4().hex[:12]}", workspace=tmp_path / "workspace", journal=Journal("contract", tmp_path / "none.db"),
            restart_policy=RestartPolicy.parse(policy), on_event=on_event)

    # --- shape and declarations -------------------------------------------------------
    def test_it_is_registered_and_complete(self) -> None:
        subject = self.make_subject()
        assert self.subject_name in SUBJECTS.names()
        assert isinstance(subject, Subject), "the class lacks members of the Subject protocol"
        assert subject.name == self.subject_name

    def test_member_names_are_distinct_and_sizes_are_checked(self) -> None:
        subject = self.make_subject()
        names = subject.member_names(subject.default_members)
        assert len(names) == len(set(names)) >= subject.default_members
        # ``count`` sizes the scalable tier; a fixed tier (the rate limiter's Redis) may come with it
        assert len(subject.member_names(subject.default_members + 1)) == len(names) + 1
        with pytest.raises(UsageError):
            subject.member_names(0)

    def test_it_supports_only_chaos_kinds_that_exist(self) -> None:
        subject = self.make_subject()
        assert subject.chaos_kinds, "a subject supports at least one fault"
        assert set(subject.chaos_kinds) <= set(CHAOS.names())

    def test_a_kind_it_does_not_support_is_refused_before_anything_starts(self) -> None:
        subject = self.make_subject()
        unsupported = [k for k in CHAOS.names() if not CHAOS.get(k)().applies_to(subject)]
        for kind in unsupported:
            with pytest.raises(UsageError, match="does not support"):
                prepare(TrialRequest(subject=self.subject_name, chaos=ChaosSpec(kind=kind)))
        prepare(TrialRequest(subject=self.subject_name, runtime=self.runtime_name,
                             chaos=ChaosSpec(kind="none", target="none"),
                             config=TrialConfig(members=subject.default_members)))

    def test_its_command_rules_answer_a_class(self) -> None:
        for tool, rule in self.make_subject().command_rules().items():
            for words in ([], ["--help"], ["status"], ["no-such-subcommand", "--force"]):
                assert rule(words) in CLASSES, (tool, words)

    def test_its_runbook_is_a_coroutine(self) -> None:
        assert inspect.iscoroutinefunction(self.make_subject().runbook)

    # --- a live cluster ---------------------------------------------------------------
    def test_a_live_cluster_is_observed_broken_and_recovered(self, tmp_path: Path) -> None:
        subject = self.make_subject()
        count = subject.default_members

        async def main() -> None:
            runtime = self.make_runtime(tmp_path)
            async with runtime.session(), httpx.AsyncClient(trust_env=False) as http:
                await anyio.to_thread.run_sync(runtime.prepare, subject.name, subject.container_definition())
                specs = subject.plan(runtime, count, cluster_token="contract")
                assert [s.name for s in specs] == subject.member_names(count)
                for spec in specs:
                    await runtime.start_member(spec)

                def running() -> dict[str, bool]:
                    return {s.name: runtime.is_running(s.name) for s in specs}

                base = await subject.wait_healthy(http, running())
                assert [m.name for m in base.members] == [s.name for s in specs]
                assert base.healthy == base.expected == len(specs)
                assert subject.recovery_unmet(base, base) == []
                assert subject.symptoms(base, base) == []
                assert await subject.write_read_probe(http) is None
                env = subject.operator_tools(tmp_path / "bin")
                assert all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
                for tool in subject.tools:
                    assert (tmp_path / "bin" / tool).exists(), f"operator tool {tool} not installed"
                assert isinstance(subject.operator_guide(), str)
                victim = specs[-1].name
                assert await subject.answers(http, victim, 2.0)

                runtime.signal_member(victim, signal.SIGKILL)
                deadline = time.monotonic() + self.settle_timeout_s
                while True:
                    now = await subject.observe(http, running())
                    if not next(m for m in now.members if m.name == victim).healthy:
                        break
                    assert time.monotonic() < deadline, f"{victim} still healthy after SIGKILL"
                    await anyio.sleep(0.05)
                assert subject.recovery_unmet(base, now), "a dead member must fail the recovery criteria"
                assert subject.symptoms(base, now), "a dead member must show a symptom"
                assert not await subject.answers(http, victim, 1.0)

                await runtime.start_member(runtime.spec(victim), reason="contract restart")
                while True:
                    now = await subject.observe(http, running())
                    if not subject.recovery_unmet(base, now):
                        break
                    assert time.monotonic() < deadline + self.settle_timeout_s, \
                        f"not recovered after restarting {victim}: {subject.recovery_unmet(base, now)}"
                    await anyio.sleep(0.05)
                assert await subject.write_read_probe(http) is None

        anyio.run(main)

    def test_its_workload_keeps_its_promises_on_a_healthy_cluster(self, tmp_path: Path) -> None:
        subject = self.make_subject()
        samples: list[Any] = []

        async def main() -> Any:
            runtime = self.make_runtime(tmp_path)
            async with runtime.session(), httpx.AsyncClient(trust_env=False) as http:
                await anyio.to_thread.run_sync(runtime.prepare, subject.name, subject.container_definition())
                specs = subject.plan(runtime, subject.default_members, cluster_token="contract")
                for spec in specs:
                    await runtime.start_member(spec)
                await subject.wait_healthy(http, {s.name: True for s in specs})
                t0 = time.monotonic()
                workload = subject.workload(http, rate_hz=50.0, clock=lambda: time.monotonic() - t0, seed=1,
                                            on_sample=lambda w, end: samples.append(w))
                with anyio.move_on_after(1.5):
                    await workload.run()
                return workload, await workload.check_data()

        workload, safety = anyio.run(main)
        assert workload.acknowledged > 0 and samples, "the workload made no acknowledged progress"
        assert (safety.missing, safety.wrong, safety.error) == (0, 0, None)
        assert safety.present == safety.acknowledged == workload.acknowledged

    # --- whole trials -----------------------------------------------------------------
    def _trial(self, tmp_path: Path, chaos: ChaosSpec) -> tuple[TrialResult, list[Any]]:
        subject = self.make_subject()
        req = TrialRequest(subject=self.subject_name, runtime=self.runtime_name, chaos=chaos,
                           agent=AgentSpec(name="runbook"), sandbox="none", seed=7,
                           config=TrialConfig(members=subject.default_members, restart_policy="never",
                                              timeout_s=20.0, settle_s=0.5, warmup_s=0.3))
        result, events = run_one_trial(tmp_path / f"{chaos.kind}.db", req)
        names = _names(events)
        assert result.outcome in ("recovered", "not_recovered"), (chaos.kind, result.reason)
        assert "ChaosVerified" in names and "AgentFinished" in names and names[-1] == "TrialFinished"
        assert self._left_behind() == [], "journal or workspace left behind"
        return result, events

    def test_a_trial_of_its_first_kind_with_the_runbook_ends_with_a_real_outcome(self, tmp_path: Path) -> None:
        kind = self.make_subject().chaos_kinds[0]
        self._trial(tmp_path, ChaosSpec(kind=kind, target=self.target_for(kind)))

    def test_a_control_trial_leaves_it_healthy(self, tmp_path: Path) -> None:
        result, _ = self._trial(tmp_path, ChaosSpec(kind="none", target="none"))
        assert result.outcome == "recovered", f"the runbook harmed a healthy {self.subject_name}: {result.reason}"
        assert result.time_to_detect_s is None and result.time_to_recover_s is None

    def target_for(self, kind: str) -> str:
        """The target the trial check uses for ``kind`` (``majority`` for quorum_loss)."""
        return {"quorum_loss": "majority", "disk_pressure": "cluster"}.get(kind, "random")


class RuntimeContract(_Isolated):
    """What every runtime must do. Set :attr:`runtime_name`; override :meth:`member_spec` if
    the runtime cannot run a plain process."""

    runtime_name: ClassVar[str]

    def definition(self) -> ContainerDefinition | None:
        """What :meth:`Runtime.prepare` gets before members start (container runtimes need one)."""
        return None

    def member_spec(self, runtime: Runtime, name: str) -> MemberSpec:
        """A member that runs until stopped (a sleeping Python process)."""
        d = runtime.member_dir(name)
        return MemberSpec(name=name, argv=[sys.executable, "-c", "import time; time.sleep(600)"], env={},
                          cwd=str(d), log_path=str(d / "member.log"), data_dir=str(d / "data"))

    def _runtime(self, tmp_path: Path, policy: str, events: list[MemberEvent]) -> Runtime:
        return RUNTIMES.get(self.runtime_name)(
            trial_id=f"contract{uuid.uuid4().hex[:12]}", workspace=tmp_path / "workspace", journal=Journal("contract", tmp_path / "none.db"),
            restart_policy=RestartPolicy.parse(policy), on_event=events.append)

    def _live(self, tmp_path: Path, policy: str, body: Callable[[Runtime, list[MemberEvent]], Any]) -> list[MemberEvent]:
        events: list[MemberEvent] = []

        async def main() -> None:
            runtime = self._runtime(tmp_path, policy, events)
            async with runtime.session():
                await anyio.to_thread.run_sync(runtime.prepare, "contract", self.definition())
                await body(runtime, events)
            for name in runtime.members():
                assert not runtime.is_running(name), f"{name} outlived the runtime's session"

        anyio.run(main)
        assert self._left_behind() == [], "journal or workspace left behind"
        return events

    def test_it_is_registered_and_complete(self, tmp_path: Path) -> None:
        runtime = self._runtime(tmp_path, "never", [])
        assert isinstance(runtime, Runtime), "the class lacks members of the Runtime protocol"
        assert runtime.name == self.runtime_name

    def test_a_member_starts_and_is_seen_running(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            pid = await rt.start_member(self.member_spec(rt, "m1"))
            assert rt.is_running("m1") and rt.pid("m1") == pid and not rt.is_paused("m1")
            assert rt.state("m1") == "running" and rt.members() == ["m1"] and rt.restarts("m1") == 0
            assert rt.spec("m1").name == "m1"
            assert isinstance(rt.log_tail("m1"), str)

        events = self._live(tmp_path, "never", body)
        assert [(e.member, e.kind) for e in events][:1] == [("m1", "started")]

    def test_a_killed_member_stays_down_under_never(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            await rt.start_member(self.member_spec(rt, "m1"))
            pid = rt.signal_member("m1", signal.SIGKILL)
            deadline = time.monotonic() + 10
            while rt.is_running("m1") or not any(e.kind == "exited" for e in events):  # reported as it happens
                assert time.monotonic() < deadline, "a killed member is still running, or its exit was not reported"
                await anyio.sleep(0.02)
            assert rt.last_exit("m1") == -signal.SIGKILL
            assert rt.state("m1").startswith("exited")
            await anyio.sleep(0.5)
            assert not rt.is_running("m1") and rt.restarts("m1") == 0, "restarted under never"
            assert any(e.kind == "exited" and e.pid == pid and e.signal == signal.SIGKILL for e in events)

        self._live(tmp_path, "never", body)

    def test_a_killed_member_is_restarted_under_on_failure(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            first = await rt.start_member(self.member_spec(rt, "m1"))
            rt.signal_member("m1", signal.SIGKILL)
            deadline = time.monotonic() + 10
            while not (rt.is_running("m1") and rt.pid("m1") != first and len(events) >= 3):
                assert time.monotonic() < deadline, "not restarted by the supervisor (or not reported)"
                await anyio.sleep(0.02)
            assert rt.restarts("m1") == 1
            assert [e.kind for e in events] == ["started", "exited", "started"]

        self._live(tmp_path, "on-failure", body)

    def test_a_stopped_member_is_not_restarted(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            await rt.start_member(self.member_spec(rt, "m1"))
            await rt.stop_member("m1")
            await anyio.sleep(0.5)
            assert not rt.is_running("m1") and rt.state("m1") == "stopped"
            again = await rt.start_member(rt.spec("m1"), reason="operator")
            assert rt.is_running("m1") and rt.pid("m1") == again

        self._live(tmp_path, "on-failure", body)

    def test_pause_and_resume(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            await rt.start_member(self.member_spec(rt, "m1"))
            rt.signal_member("m1", signal.SIGSTOP)
            _ = [await anyio.sleep(0.02) for _ in range(100) if not rt.is_paused("m1")]
            assert rt.is_paused("m1") and rt.is_running("m1") and rt.state("m1").startswith("paused")
            rt.signal_member("m1", signal.SIGCONT)
            _ = [await anyio.sleep(0.02) for _ in range(100) if rt.is_paused("m1")]
            assert not rt.is_paused("m1") and rt.state("m1") == "running"

        self._live(tmp_path, "never", body)

    def test_resources_are_distinct_and_released(self, tmp_path: Path) -> None:
        async def body(rt: Runtime, events: list[MemberEvent]) -> None:
            ports = rt.allocate_ports(4)
            assert len(set(ports)) == 4 and all(isinstance(p, int) for p in ports)
            a, b = rt.member_dir("m1"), rt.member_dir("m2")
            assert a != b and a.is_dir() and b.is_dir()
            for name in ("m1", "m2"):
                await rt.start_member(self.member_spec(rt, name))
            assert rt.members() == ["m1", "m2"]

        self._live(tmp_path, "on-failure", body)


class ChaosContract(_Isolated):
    """What every chaos kind must do, on a subject that supports it. Set :attr:`kind` (and
    :attr:`target`, :attr:`params`, :attr:`subject_name` as the kind needs)."""

    kind: ClassVar[str]
    target: ClassVar[str] = "random"
    params: ClassVar[dict[str, Any]] = {}
    subject_name: ClassVar[str] = "etcd"
    runtime_name: ClassVar[str] = "local"
    restart_policy: ClassVar[str] = "on-failure"
    #: Whether the harness must have undone the fault (a ``ChaosReverted`` in the log).
    reverts: ClassVar[bool] = False

    def spec(self) -> ChaosSpec:
        """The fault the checks inject."""
        return ChaosSpec(kind=self.kind, target=self.target, params=dict(self.params))

    def test_it_is_registered_and_complete(self) -> None:
        chaos = CHAOS.get(self.kind)()
        assert isinstance(chaos, Chaos), "the class lacks members of the Chaos protocol"
        assert chaos.kind == self.kind
        assert isinstance(chaos.needs_peer_proxy(RUNTIMES.get(self.runtime_name)(
            trial_id=f"contract{uuid.uuid4().hex[:12]}", workspace=self.runtime_dir / "w", journal=Journal("contract", self.runtime_dir / "x"),
            restart_policy=RestartPolicy.parse("never"), on_event=lambda e: None)), bool)

    def test_it_validates_before_anything_starts(self) -> None:
        chaos = CHAOS.get(self.kind)()
        names = SUBJECTS.get(self.subject_name)().member_names(3)
        chaos.validate(self.spec(), names)
        with pytest.raises(UsageError):
            chaos.validate(ChaosSpec(kind=self.kind, target="no-such-member", params=dict(self.params)), names)

    def test_it_declares_its_parameters(self) -> None:
        chaos = CHAOS.get(self.kind)()
        names = SUBJECTS.get(self.subject_name)().member_names(3)
        for p in chaos.params:
            assert isinstance(p, Param) and p.help, f"parameter {p.name!r}: declare it with opeval.params.Param and help"
            if p.default is not None:
                assert p.check(p.default) == p.default, f"parameter {p.name!r}: its default is out of its range"
        check_chaos(chaos, self.spec(), names)  # the contract's own params pass their declarations
        with pytest.raises(ParamError, match="unknown parameter"):
            check_chaos(chaos, ChaosSpec(kind=self.kind, target=self.target, params={"no_such_param": 1}), names)

    def test_a_trial_injects_verifies_and_leaves_nothing(self, tmp_path: Path) -> None:
        req = TrialRequest(subject=self.subject_name, runtime=self.runtime_name, chaos=self.spec(), seed=5,
                           config=TrialConfig(restart_policy=self.restart_policy, timeout_s=15.0, settle_s=0.5,
                                              warmup_s=0.3))
        result, events = run_one_trial(tmp_path / "events.db", req)
        names = _names(events)
        assert result.outcome in ("recovered", "not_recovered"), result.reason
        injected = next(e for e in events if isinstance(e, Trial.ChaosInjected))
        verified = next(e for e in events if isinstance(e, Trial.ChaosVerified))
        assert injected.kind == self.kind and verified.effect
        assert names.index("ChaosInjected") < names.index("ChaosVerified") < names.index("TrialFinished")
        if self.reverts:
            assert names.index("ChaosVerified") < names.index("ChaosReverted"), "the fault was not reverted"
        assert self._left_behind() == []


class AgentContract(_Isolated):
    """What every agent must do: work a real trial (on the fakes, so it is fast) through its
    tools only, and end with a recorded result. Set :attr:`agent_name` and, if it needs
    them, :attr:`config` settings; or override :meth:`make_agent`."""

    agent_name: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    #: Whether the agent is expected to repair a member killed under ``never``.
    repairs_node_kill: ClassVar[bool] = False

    def spec(self) -> AgentSpec:
        """The variant the checks run."""
        return AgentSpec(name=self.agent_name, variant="contract", config=dict(self.config))

    def make_agent(self) -> Agent:
        """The agent, through its registry entry."""
        return AGENTS.get(self.agent_name)(self.spec())

    def test_it_is_registered_and_complete(self) -> None:
        assert isinstance(self.make_agent(), Agent), "the class lacks members of the Agent protocol"

    def _trial(self, tmp_path: Path, chaos: ChaosSpec) -> tuple[TrialResult, list[Any]]:
        req = TrialRequest(subject="fake", runtime="fake", chaos=chaos, agent=self.spec(), sandbox="none", seed=3,
                           config=TrialConfig(restart_policy="never", timeout_s=20.0, settle_s=0.3, warmup_s=0.2))
        with fake_plugins():
            return run_one_trial(tmp_path / "events.db", req, agent=self.make_agent())

    def test_it_works_a_trial_and_everything_is_recorded(self, tmp_path: Path) -> None:
        result, events = self._trial(tmp_path, ChaosSpec(kind="node_kill", target="random"))
        names = _names(events)
        assert result.outcome in ("recovered", "not_recovered"), result.reason
        assert names.index("ChaosVerified") < names.index("AgentStarted") < names.index("AgentFinished")
        steps = [e.step for e in events if isinstance(e, Trial.AgentCommandExecuted | Trial.AgentReasoning)]
        assert steps == sorted(steps) and len(set(steps)) == len(steps), "steps must count up, one per action"
        finished = next(e for e in events if isinstance(e, Trial.AgentFinished))
        assert finished.reason and finished.steps == (max(steps) if steps else 0)
        if self.repairs_node_kill:
            assert result.outcome == "recovered", result.reason

    def test_a_false_alarm_is_worked_and_recorded(self, tmp_path: Path) -> None:
        result, events = self._trial(tmp_path, ChaosSpec(kind="none", target="none", params={"alert": "disk 91% full"}))
        started = next(e for e in events if isinstance(e, Trial.AgentStarted))
        assert "disk 91% full" in started.context
        assert result.time_to_recover_s is None and result.outcome in ("recovered", "not_recovered")


__all__ = ["AgentContract", "AgentResult", "ChaosContract", "RuntimeContract", "SubjectContract", "fake_plugins",
           "run_one_trial"]
