"""What etcd reports as a fault's symptoms (the monitor pages the agent with them)."""

from __future__ import annotations

from opeval.events import ClusterState, MemberState
from opeval.subjects import EtcdSubject

symptoms = EtcdSubject.symptoms


def state(leader: str | None, *members: MemberState) -> ClusterState:
    return ClusterState(members=list(members), leader=leader, healthy=sum(m.healthy for m in members),
                        expected=len(members))


OK = [MemberState(name=n, process_up=True, reachable=True, healthy=True) for n in ("a", "b", "c")]


def test_a_healthy_cluster_has_no_symptoms() -> None:
    assert symptoms(state("a", *OK), state("a", *OK)) == []


def test_unreachable_unhealthy_and_leader_change_are_reported() -> None:
    now = state("b", OK[0], MemberState(name="b", process_up=True, reachable=True, healthy=False, error="slow"),
                MemberState(name="c", process_up=False))
    found = symptoms(state("a", *OK), now)
    assert found == ["b unhealthy (slow)", "c unreachable", "leader changed a -> b"]


def test_no_leader_is_a_symptom() -> None:
    assert symptoms(state("a", *OK), state(None, *OK)) == ["no agreed leader"]
