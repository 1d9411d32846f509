"""The docker runtime on the real engine: the runtime and subject contracts, every fault the
issue names on containers, the runbook's repairs in the sandbox, a partition's iptables
chain made and removed, and a harness killed mid-trial reaped by ``opeval cleanup``.

Every test checks that nothing of its trial is left: no container, network or volume
with the trial's label."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx
import pytest

from opeval.events import AgentSpec, ChaosSpec, Trial, TrialConfig
from opeval.runner import TrialRequest
from opeval.runtimes import (
    ContainerDefinition,
    DockerRuntime,
    Journal,
    MemberSpec,
    RestartPolicy,
    Runtime,
)
from opeval.store import EventStore
from opeval.subjects import EtcdSubject, etcd_bin_dir
from opeval.testing import (
    ChaosContract,
    RuntimeContract,
    SubjectContract,
    run_one_trial,
)
from tests.opeval_cli import opeval

pytestmark = pytest.mark.integration


def labelled(kind: str) -> list[str]:
    """Names of every Docker object of ``kind`` that carries an opeval trial label."""
    r = subprocess.run(["docker", kind, "ls", *(["-a"] if kind == "container" else []), "--filter",
                        "label=opeval.trial", "--format", "{{.Names}}" if kind == "container" else "{{.Name}}"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


def assert_no_docker_leftovers() -> None:
    assert (labelled("container"), labelled("network"), labelled("volume")) == ([], [], [])


class TestDockerRuntime(RuntimeContract):
    runtime_name = "docker"

    def definition(self) -> ContainerDefinition:
        return EtcdSubject().container_definition()

    def member_spec(self, runtime: Runtime, name: str) -> MemberSpec:
        d = runtime.member_dir(name)
        return MemberSpec(name=name, argv=[str(etcd_bin_dir() / "etcd"), f"--name={name}", f"--data-dir={d}/data"],
                          env={}, cwd=str(d), log_path=str(d / "member.log"), data_dir=str(d / "data"))

    def test_nothing_is_left_in_the_engine(self, tmp_path: Path) -> None:
        self.test_resources_are_distinct_and_released(tmp_path)
        assert_no_docker_leftovers()


class TestEtcdOnDocker(SubjectContract):
    subject_name = "etcd"
    runtime_name = "docker"


class _OnDocker(ChaosContract):
    runtime_name = "docker"

    def test_a_trial_injects_verifies_and_leaves_nothing(self, tmp_path: Path) -> None:
        super().test_a_trial_injects_verifies_and_leaves_nothing(tmp_path)
        assert_no_docker_leftovers()


class TestNodeKillOnDocker(_OnDocker):
    kind = "node_kill"


class TestPauseOnDocker(_OnDocker):
    kind = "pause"
    params: ClassVar[dict[str, Any]] = {"duration_s": 1}


class TestPartitionOnDocker(_OnDocker):
    kind = "partition"
    params: ClassVar[dict[str, Any]] = {"duration_s": 1}


class TestLatencyOnDocker(_OnDocker):
    kind = "latency"
    params: ClassVar[dict[str, Any]] = {"duration_s": 1, "delay_ms": 100}


class TestDiskPressureOnDocker(_OnDocker):
    kind = "disk_pressure"
    target = "cluster"


@pytest.mark.parametrize(("kind", "target", "params"), [
    ("node_kill", "leader", {}),
    ("pause", "follower", {}),
    ("disk_pressure", "cluster", {}),
    ("disk_pressure", "follower", {"mode": "fill"}),
])
def test_the_runbook_repairs_containers_through_the_sandbox(store_path: Path, runtime_dir: Path, kind: str,
                                                            target: str, params: dict[str, Any]) -> None:
    req = TrialRequest(runtime="docker", chaos=ChaosSpec(kind=kind, target=target, params=params),
                       agent=AgentSpec(name="runbook"), seed=4,
                       config=TrialConfig(restart_policy="never", timeout_s=30, settle_s=1.0))
    result, events = run_one_trial(store_path, req)
    assert result.outcome == "recovered", result.reason
    assert events[0].runtime == "docker" and events[0].sandbox.mechanism == "bubblewrap"
    commands = [e for e in events if isinstance(e, Trial.AgentCommandExecuted)]
    # The agent reached the containers' own addresses from its namespace (etcdctl's member list).
    member_list = next(c for c in commands if "etcdctl member list" in c.command)
    assert member_list.exit_code == 0 and "10.213." in member_list.stdout
    assert any(isinstance(e, Trial.ChaosVerified) for e in events)
    assert_no_docker_leftovers()
    assert not list((runtime_dir / "trials").glob("*"))


def test_a_partition_is_a_chain_in_each_members_namespace_removed_on_heal(tmp_path: Path) -> None:
    subject = EtcdSubject()

    async def main() -> tuple[dict[str, bool], dict[str, bool], dict[str, bool]]:
        rt = DockerRuntime(trial_id=os.urandom(16).hex(), workspace=tmp_path / "w",
                           journal=Journal("chain", tmp_path / "x.db"), restart_policy=RestartPolicy.parse("never"))
        async with rt.session(), httpx.AsyncClient(trust_env=False) as http:
            await anyio.to_thread.run_sync(rt.prepare, "etcd", subject.container_definition())
            specs = subject.plan(rt, 3, "chain")
            for s in specs:
                await rt.start_member(s)
            await subject.wait_healthy(http, {s.name: True for s in specs})
            before = rt.chains()
            rt.cut([{"etcd-1"}, {"etcd-2", "etcd-3"}])
            during = rt.chains()
            for _ in range(150):  # the cut-off member loses its leader; the majority elects one of its own
                state = await subject.observe(http, {s.name: True for s in specs})
                if not state.members[0].healthy and state.members[1].healthy:
                    break
                await anyio.sleep(0.1)
            assert not state.members[0].healthy and state.members[1].healthy
            log = Path(specs[0].log_path)
            for _ in range(100):  # the cut-off member complains; its log file on disk says so too
                if log.exists() and log.read_text().strip():
                    break
                await anyio.sleep(0.1)
            last = log.read_text().strip().splitlines()[-1]
            assert last and last in rt.log_tail("etcd-1", 400)
            await rt.stop_member("etcd-2")  # a restarted member has a new namespace: the cut follows it
            await rt.start_member(rt.spec("etcd-2"), reason="test")
            assert rt.chains()["etcd-2"]
            assert rt.heal() and not rt.heal()
            return before, during, rt.chains()

    before, during, after = anyio.run(main)
    assert set(before.values()) == {False} and set(during.values()) == {True} and set(after.values()) == {False}
    assert_no_docker_leftovers()


def test_a_killed_harness_is_reaped_by_cleanup(tmp_path: Path, runtime_dir: Path) -> None:
    store = tmp_path / "e.db"
    env = {**os.environ, "OPEVAL_STORE": str(store)}
    harness = subprocess.Popen([sys.executable, "-m", "opeval", "run", "--runtime", "docker", "--chaos", "partition",
                                "--target", "leader", "--restart-policy", "never", "--timeout", "120"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:  # mid-trial: the fault is in place (the log says so)
            verified = []
            if store.exists():
                with EventStore(store, writable=False) as es:
                    verified = [e for _, e in es.iter_events(topics=["opeval.trial:ChaosVerified"])]
            if verified:
                break
            assert harness.poll() is None and time.monotonic() < deadline, "the trial never reached its fault"
            time.sleep(0.2)
        assert len(labelled("container")) == 3 and len(labelled("network")) == 1
        harness.send_signal(signal.SIGKILL)
        harness.wait(10)
        assert len(labelled("container")) == 3  # a killed harness cleans nothing itself
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
    opeval("cleanup", env=env, check=True)
    assert_no_docker_leftovers()  # the partition's chains lived in the members' namespaces, gone with them
    host_rules = subprocess.run(["iptables", "-w", "-S"], capture_output=True, text=True, check=True).stdout
    assert "OPEVAL-" not in host_rules
    assert not list((runtime_dir / "trials").glob("*")) and not list((runtime_dir / "journal").glob("*.json"))
    with EventStore(store) as es:
        (tid,) = {e.originator_id for _, e in es.iter_events(topics=["opeval.trial:TrialStarted"])}
        last = es.events(tid)[-1]
    assert isinstance(last, Trial.TrialFinished) and last.outcome == "aborted"
