"""Choosing the member a fault hits: roles, names, and reproducibility from the seed."""

from __future__ import annotations

import random

import pytest

from opeval.chaos import NodeKill, choose_member
from opeval.errors import UsageError
from opeval.events import ChaosSpec

NAMES = ["etcd-1", "etcd-2", "etcd-3"]


def test_same_seed_same_victim_and_seeds_differ() -> None:
    picks = {seed: choose_member("random", "etcd-1", NAMES, random.Random(seed)) for seed in range(40)}
    assert all(choose_member("random", "etcd-1", NAMES, random.Random(s)) == v for s, v in picks.items())
    assert set(picks.values()) == set(NAMES)


def test_a_follower_pick_is_the_random_pick_unless_that_one_leads() -> None:
    # So baseline and agent trials with one seed hit the same member whenever they can.
    for seed in range(30):
        for leader in NAMES:
            rand = choose_member("random", leader, NAMES, random.Random(seed))
            follower = choose_member("follower", leader, NAMES, random.Random(seed))
            assert follower != leader
            if rand != leader:
                assert follower == rand


def test_roles_resolve_against_the_current_leader() -> None:
    rng = random.Random(0)
    assert choose_member("leader", "etcd-2", NAMES, rng) == "etcd-2"
    assert all(choose_member("follower", "etcd-2", NAMES, rng) != "etcd-2" for _ in range(20))
    assert choose_member("etcd-3", "etcd-2", NAMES, rng) == "etcd-3"


@pytest.mark.parametrize("target", ["etcd-9", "Leader", ""])
def test_unknown_targets_are_refused_with_the_choices(target: str) -> None:
    with pytest.raises(UsageError, match="choose one of leader, follower, random, etcd-1"):
        NodeKill().validate(ChaosSpec(kind="node_kill", target=target), NAMES)
