"""The etcd recovery criteria, judged on constructed cluster states (no cluster needed)."""

from __future__ import annotations

import msgspec
import pytest

from opeval.events import ClusterState, MemberState
from opeval.subjects import EtcdSubject

NAMES = ["etcd-1", "etcd-2", "etcd-3"]
IDS = {"etcd-1": "11", "etcd-2": "22", "etcd-3": "33"}


_TOP = ("name", "process_up", "reachable", "healthy", "alarms", "error")


def member(name: str, **over: object) -> MemberState:
    """An etcd member's state; etcd's own fields (leader_id, cluster_id...) go into ``detail``."""
    top = {"name": name, "process_up": True, "reachable": True, "healthy": True}
    detail = {"member_id": IDS[name], "leader_id": "11", "cluster_id": "c1", "raft_term": 2,
              "member_names": ",".join(NAMES)}
    for k, v in over.items():
        if k in _TOP:
            top[k] = v
        else:
            detail[k] = ",".join(v) if isinstance(v, list) else v  # type: ignore[arg-type]
    return MemberState(**top, role="leader" if detail["leader_id"] == IDS[name] else "follower",  # type: ignore[arg-type]
                       detail={k: v for k, v in detail.items() if v is not None})  # type: ignore[misc]


def cluster(*members: MemberState) -> ClusterState:
    return ClusterState(members=list(members), leader="etcd-1", healthy=sum(m.healthy for m in members),
                        expected=3, detail={"cluster_id": "c1"})


BASE = cluster(*(member(n) for n in NAMES))
judge = EtcdSubject.recovery_unmet


def test_the_healthy_baseline_meets_every_criterion() -> None:
    assert judge(BASE, BASE) == []


def test_a_new_leader_is_fine_if_everyone_agrees() -> None:
    now = cluster(*(member(n, leader_id="22", raft_term=3) for n in NAMES))
    assert judge(BASE, now) == []


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"reachable": False, "healthy": False}, "etcd-2 unreachable"),
        ({"healthy": False}, "etcd-2 unhealthy"),
        ({"leader_id": "33"}, "no single agreed leader"),
        ({"leader_id": None}, "no single agreed leader"),
        ({"cluster_id": "c2"}, "cluster id changed"),
        ({"member_names": ["etcd-1", "etcd-2"]}, "member set changed"),
        ({"member_names": [*NAMES, "etcd-4"]}, "member set changed"),
        ({"alarms": ["NOSPACE@22"]}, "alarms raised"),
    ],
)
def test_each_broken_criterion_is_named(changed: dict[str, object], expected: str) -> None:
    now = cluster(member("etcd-1"), member("etcd-2", **changed), member("etcd-3"))
    assert expected in judge(BASE, now)


def test_a_missing_member_counts_even_if_the_rest_agree() -> None:
    # Scaling the cluster down to the members that still answer is not recovery.
    now = msgspec.structs.replace(BASE, members=[member("etcd-1"), member("etcd-3")])
    assert judge(BASE, now) == ["etcd-2 unreachable"]


def test_a_rebuilt_cluster_is_not_the_same_cluster() -> None:
    # Wiping the data and starting a fresh cluster gives a new cluster id: not a repair.
    now = cluster(*(member(n, cluster_id="fresh") for n in NAMES))
    assert judge(BASE, now) == ["cluster id changed"]


def test_nothing_reachable_fails_leader_and_members() -> None:
    now = cluster(*(member(n, reachable=False, healthy=False, leader_id=None) for n in NAMES))
    unmet = judge(BASE, now)
    assert "no single agreed leader" in unmet
    assert sum(u.endswith("unreachable") for u in unmet) == 3
