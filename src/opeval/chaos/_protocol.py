"""What a chaos kind is: inject -> verify (the effect observed) -> revert."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

from opeval.chaos._proxy import PeerProxy
from opeval.events import ChaosSpec, ClusterState, Scalar
from opeval.runtimes import Runtime
from opeval.subjects import Subject


@dataclass
class ChaosContext:
    """What a fault may touch: the live cluster, its runtime, a seeded random source."""

    subject: Subject
    runtime: Runtime
    http: httpx.AsyncClient
    before: ClusterState
    rng: random.Random
    clock: Callable[[], float]
    proxy: PeerProxy | None = None  # the fault proxy, for kinds with ``needs_peer_proxy``


@dataclass
class Injection:
    """What was done: the member hit and details (pid, signal...)."""

    target: str
    detail: dict[str, Scalar]


@dataclass
class Verification:
    """The fault's effect as observed on the subject."""

    effect: str
    observations: dict[str, Scalar]


class ChaosVerificationError(Exception):
    """The fault's effect was never observed within the verification timeout."""


class Chaos(Protocol):
    """A kind of fault."""

    kind: str

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Raise UsageError if ``spec`` cannot apply to a cluster of ``member_names``."""
        ...

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Apply the fault."""
        ...

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Return once the effect is observed; raise ChaosVerificationError otherwise."""
        ...

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Undo the fault if it is the harness's to undo; say what was done (None: nothing)."""
        ...
