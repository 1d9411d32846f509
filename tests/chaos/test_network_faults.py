"""partition and latency through the fault proxy on real etcd clusters: the fault took
effect (observed on the cluster, in ChaosVerified), it was reverted, nothing was left."""

from __future__ import annotations

from pathlib import Path

import pytest

from opeval.errors import UsageError
from opeval.events import ChaosSpec, Trial
from opeval.runner import TrialRequest, prepare
from tests.chaos.test_process_faults import run
from tests.conftest import port_is_bound
from tests.runner.helpers import of


@pytest.mark.integration
def test_a_partitioned_leader_is_replaced_and_rejoins_when_the_partition_ends(store_path: Path,
                                                                               no_leaks: None) -> None:
    result, events = run(store_path, "partition", "leader", params={"duration_s": 4.0}, timeout=25.0)
    before = of(events, Trial.StateSnapshot)[0].state
    (injected,) = of(events, Trial.ChaosInjected)
    (verified,) = of(events, Trial.ChaosVerified)
    obs = verified.observations
    assert injected.target == before.leader == obs["leader_before"]
    # a real partition: the majority elected a leader of its own, the cut-off member is unhealthy
    assert obs["leader_changed"] is True and obs["leader_after"] != before.leader
    assert obs["cut_off_healthy"] is False and obs["refused_connections"] > 0
    assert of(events, Trial.MemberProcessExited)[0].offset_s > verified.offset_s + 3  # nobody crashed: teardown only
    (reverted,) = of(events, Trial.ChaosReverted)
    assert reverted.action == "links restored (its 4s duration ended)"
    assert result.outcome == "recovered", result.reason  # the old leader rejoined the same cluster
    assert result.time_to_recover_s >= 4.0 - 0.35  # less one observation round, as for pause
    (up,) = of(events, Trial.ClusterUp)
    assert all(not port_is_bound(m.peer_url) for m in up.members)


@pytest.mark.integration
def test_latency_slows_writes_through_the_member_until_removed(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "latency", "follower", params={"duration_s": 3.0, "delay_ms": 250}, timeout=20.0)
    (verified,) = of(events, Trial.ChaosVerified)
    obs = verified.observations
    assert obs["delay_ms"] == 250.0 and obs["write_ms"] >= 250.0
    assert obs["write_ms_before"] is not None and obs["write_ms_before"] < 100.0
    (reverted,) = of(events, Trial.ChaosReverted)
    assert reverted.action == "added delay removed (its 3s duration ended)"
    assert result.outcome == "recovered", result.reason


@pytest.mark.integration
def test_a_split_without_duration_lasts_until_the_trial_ends(store_path: Path, no_leaks: None) -> None:
    result, events = run(store_path, "partition", "split", timeout=4.0)
    (injected,) = of(events, Trial.ChaosInjected)
    assert len(injected.target.split(",")) == 1 and len(injected.detail["majority"].split(",")) == 2
    assert result.outcome == "not_recovered"
    (reverted,) = of(events, Trial.ChaosReverted)  # healed by the harness at the end, all the same
    assert reverted.action == "links restored"


def test_network_fault_parameters_are_validated() -> None:
    with pytest.raises(UsageError, match="delay_ms must be a number >= 1 and <= 10000, not 0"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="latency", params={"delay_ms": 0})))
    with pytest.raises(UsageError, match="unknown target 'etcd-9' for partition"):
        prepare(TrialRequest(chaos=ChaosSpec(kind="partition", target="etcd-9")))
