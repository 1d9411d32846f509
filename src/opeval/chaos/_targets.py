"""Whom a fault hits: roles resolved against a seeded order, and the check every kind
makes of its target before anything starts (parameters are checked by their declarations:
:mod:`opeval.params`)."""

from __future__ import annotations

import random

from opeval.errors import UsageError
from opeval.events import ChaosSpec

ROLE_TARGETS = ("leader", "follower", "random")


def choose_member(target: str, before_leader: str | None, names: list[str], rng: random.Random) -> str:
    """Resolve a role (``leader``/``follower``/``random``) or a member name to a member.

    Roles are resolved against one seeded order of the members: ``random`` is its first
    member, ``follower`` its first member that does not lead. So one seed hits the same
    member in every trial whenever the roles allow it.
    """
    if target == "leader":
        if before_leader is None:
            raise UsageError("target leader: the cluster has no leader to kill")
        return before_leader
    order = rng.sample(sorted(names), len(names))
    if target == "random":
        return order[0]
    if target == "follower":
        followers = [n for n in order if n != before_leader]
        if not followers:
            raise UsageError("target follower: a one-member cluster has no follower")
        return followers[0]
    return target


def validate_target(kind: str, spec: ChaosSpec, member_names: list[str]) -> None:
    """A role or a member name, and a follower only where there can be one."""
    if spec.target not in ROLE_TARGETS and spec.target not in member_names:
        raise UsageError(f"unknown target {spec.target!r} for {kind}: choose one of "
                         f"{', '.join([*ROLE_TARGETS, *member_names])}")
    if spec.target == "follower" and len(member_names) < 2:
        raise UsageError("target follower needs at least 2 members")

