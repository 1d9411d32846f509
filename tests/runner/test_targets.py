"""Choosing the member a fault hits: roles, names, and reproducibility from the seed."""

from __future__ import annotations

import random

import pytest

from opeval.chaos import NodeKill, choose_member
from opeval.errors import UsageError
from opeval.events import ChaosSpec

NAMES = ["etcd-1", "etcd-2", "etcd-3"]


def test_same_seed_same_victim_and_seeds_differ() -> None:
    picks = {seed: choose_member("random", "etcd-1", NAMES, random.Random(seed).choice) for seed in range(40)}
    assert all(choose_member("random", "etcd-1", NAMES, random.Random(s).choice) == v for s, v in picks.items())
    assert set(picks.values()) == set(NAMES)


def test_roles_resolve_against_the_current_leader() -> None:
    rng = random.Random(0)
    assert choose_member("leader", "etcd-2", NAMES, rng.choice) == "etcd-2"
    assert all(choose_member("follower", "etcd-2", NAMES, rng.choice) != "etcd-2" for _ in range(20))
    assert choose_member("etcd-3", "etcd-2", NAMES, rng.choice) == "etcd-3"


@pytest.mark.parametrize("target", ["etcd-9", "Leader", ""])
def test_unknown_targets_are_refused_with_the_choices(target: str) -> None:
    with pytest.raises(UsageError, match="choose one of leader, follower, random, etcd-1"):
        NodeKill().validate(ChaosSpec(kind="node_kill", target=target), NAMES)
