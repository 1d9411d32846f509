"""What a chaos kind is: inject -> verify (the effect observed) -> revert."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import httpx

from opeval.chaos._proxy import PeerProxy
from opeval.events import ChaosSpec, ClusterState, Scalar
from opeval.params import Param, check_params
from opeval.runtimes import MemberSpec, Runtime
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

    def running(self) -> dict[str, bool]:
        """Which members' processes are alive now (what ``Subject.observe`` takes)."""
        return {n: self.runtime.is_running(n) for n in self.runtime.members()}


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


@runtime_checkable
class Chaos(Protocol):
    """A kind of fault: validated before anything starts, then inject -> verify -> revert.

    The runner calls, in order: :meth:`applies_to` and :meth:`validate` (before any
    cluster starts), :meth:`needs_peer_proxy` and :meth:`prepare_members` (before the
    members first start), :meth:`inject`, :meth:`verify` (the clock for time to detect and
    recover starts when it returns), and :meth:`revert` (when ``duration_s`` ends and at
    the end of every trial, so it must be idempotent). Whatever a kind needs to know of
    the system it asks the subject (``ctx.subject``), never the system directly.
    """

    kind: str
    #: The parameters ``params`` may set (:class:`opeval.params.Param`): name, type, range,
    #: default, help. Anything else is refused before anything starts.
    params: tuple[Param, ...]

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """Must members reach each other through the fault proxy (``ctx.proxy``) from their
        first start, on ``runtime``?"""
        ...

    def applies_to(self, subject: Subject) -> bool:
        """Can this kind break ``subject``? Built-in kinds ask the subject (its ``chaos_kinds``);
        a kind that needs nothing of the subject (only the runtime) may say yes to any."""
        ...

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Raise UsageError if ``spec`` cannot apply to a cluster of ``member_names`` (its
        target, its parameters together); each parameter alone is already checked against
        its declaration in :attr:`params`."""
        ...

    def prepare_members(self, spec: ChaosSpec, specs: list[MemberSpec], runtime: Runtime,
                        subject: Subject) -> list[MemberSpec]:
        """Before the cluster starts: adjust the members (a quota, capped disks); most return ``specs``."""
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


class FaultBase:
    """Defaults for a chaos kind: no proxy, members as planned, nothing to revert.
    Subclass it and write :meth:`validate`, :meth:`inject` and :meth:`verify`."""

    kind = ""
    params: tuple[Param, ...] = ()

    def applies_to(self, subject: Subject) -> bool:
        """When the subject lists this kind in its ``chaos_kinds``."""
        return self.kind in subject.chaos_kinds

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """No proxy."""
        return False

    def prepare_members(self, spec: ChaosSpec, specs: list[MemberSpec], runtime: Runtime,
                        subject: Subject) -> list[MemberSpec]:
        """The members as the subject planned them."""
        return specs

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Nothing to undo (a crash's repair is the agent's work being judged)."""
        return None


def check_chaos(chaos: Chaos, spec: ChaosSpec, member_names: list[str]) -> ChaosSpec:
    """``spec`` checked for ``chaos``: its parameters against their declarations (normalised),
    then the kind's own :meth:`Chaos.validate`."""
    checked = ChaosSpec(kind=spec.kind, target=spec.target, params=check_params(chaos.params, spec.params, spec.kind))
    chaos.validate(checked, member_names)
    return checked


#: A chaos kind's class: constructed with no arguments.
ChaosFactory = Callable[[], Chaos]
