"""Every built-in plugin runs its contract suite: etcd and the fake subject, the local and
the fake runtime, every chaos kind, the runbook agent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import pytest

from opeval.testing import AgentContract, ChaosContract, RuntimeContract, SubjectContract, fake_plugins


@pytest.fixture
def fakes() -> Iterator[None]:
    with fake_plugins():
        yield


@pytest.mark.integration
class TestEtcdSubject(SubjectContract):
    subject_name = "etcd"


@pytest.mark.usefixtures("fakes")
class TestFakeSubject(SubjectContract):
    subject_name = "fake"
    runtime_name = "fake"


class TestLocalRuntime(RuntimeContract):
    runtime_name = "local"


@pytest.mark.usefixtures("fakes")
class TestFakeRuntime(RuntimeContract):
    runtime_name = "fake"


@pytest.mark.integration
class TestNodeKillOnEtcd(ChaosContract):
    kind = "node_kill"


@pytest.mark.integration
class TestPauseOnEtcd(ChaosContract):
    kind = "pause"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


@pytest.mark.integration
class TestQuorumLossOnEtcd(ChaosContract):
    kind = "quorum_loss"
    target = "majority"


@pytest.mark.integration
class TestPartitionOnEtcd(ChaosContract):
    kind = "partition"
    params: ClassVar[dict[str, object]] = {"duration_s": 1}


@pytest.mark.integration
class TestLatencyOnEtcd(ChaosContract):
    kind = "latency"
    params: ClassVar[dict[str, object]] = {"duration_s": 1, "delay_ms": 100}


@pytest.mark.integration
class TestDiskPressureOnEtcd(ChaosContract):
    kind = "disk_pressure"
    target = "cluster"


@pytest.mark.integration
class TestControlOnEtcd(ChaosContract):
    kind = "none"
    target = "none"


@pytest.mark.usefixtures("fakes")
class TestNodeKillOnFakes(ChaosContract):
    kind = "node_kill"
    subject_name = "fake"
    runtime_name = "fake"


@pytest.mark.usefixtures("fakes")
class TestPauseOnFakes(ChaosContract):
    kind = "pause"
    subject_name = "fake"
    runtime_name = "fake"
    params: ClassVar[dict[str, object]] = {"duration_s": 0.5}


@pytest.mark.usefixtures("fakes")
class TestQuorumLossOnFakes(ChaosContract):
    kind = "quorum_loss"
    target = "majority"
    subject_name = "fake"
    runtime_name = "fake"


class TestRunbookAgent(AgentContract):
    agent_name = "runbook"
    repairs_node_kill = True


@pytest.mark.integration
class TestRateLimiterSubject(SubjectContract):
    subject_name = "ratelimiter"
