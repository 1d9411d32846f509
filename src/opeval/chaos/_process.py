"""Process faults beyond a single crash: ``pause`` (SIGSTOP, a gray failure) and
``quorum_loss`` (a majority of members killed at once)."""

from __future__ import annotations

import signal
import time

import anyio

from opeval.chaos._node_kill import _port_refuses
from opeval.chaos._protocol import (
    ChaosContext,
    ChaosVerificationError,
    FaultBase,
    Injection,
    Verification,
)
from opeval.chaos._targets import choose_member, validate_target
from opeval.errors import UsageError
from opeval.params import DURATION
from opeval.events import ChaosSpec


class Pause(FaultBase):
    """SIGSTOP one member: the process lives and its port accepts connections, but it
    answers nothing (a gray failure). Reverted with SIGCONT when ``duration_s`` ends or
    at the end of the trial, unless the member was restarted meanwhile."""

    kind = "pause"
    params = (DURATION,)

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """A role or a member."""
        validate_target(self.kind, spec, member_names)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """SIGSTOP the chosen member's process."""
        names = [m.name for m in ctx.before.members]
        victim = choose_member(spec.target, ctx.before.leader, names, ctx.rng)
        pid = ctx.runtime.signal_member(victim, signal.SIGSTOP)
        return Injection(target=victim, detail={"pid": pid, "signal": "SIGSTOP",
                                                "was_leader": victim == ctx.before.leader})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the kernel reports the process stopped and its health endpoint
        times out although the process is alive."""
        victim, pid = injection.target, int(injection.detail["pid"])  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ctx.runtime.is_paused(victim) and not await ctx.subject.answers(ctx.http, victim, 0.5):
                role = "leader" if injection.detail["was_leader"] else "follower"
                return Verification(
                    effect=f"{victim} ({role}) is paused: process {pid} stopped (SIGSTOP), alive, "
                           "and its health probe does not answer",
                    observations={"member": victim, "pid": pid, "process_state": "T",
                                  "health_timed_out": True, "was_leader": bool(injection.detail["was_leader"])})
            await anyio.sleep(0.02)
        raise ChaosVerificationError(f"{victim} still answers {timeout_s:.0f}s after SIGSTOP")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """SIGCONT, if the same process is still stopped (idempotent)."""
        pid = int(injection.detail["pid"])  # type: ignore[arg-type]
        if ctx.runtime.pid(injection.target) != pid or not ctx.runtime.is_paused(injection.target):
            return None
        ctx.runtime.signal_member(injection.target, signal.SIGCONT)
        return f"SIGCONT to {injection.target} (pid {pid})"


class QuorumLoss(FaultBase):
    """SIGKILL a majority of the members at once: the survivors cannot elect a leader or
    commit a write until members come back."""

    kind = "quorum_loss"

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Needs at least 3 members (a majority of fewer is the whole cluster)."""
        if spec.target not in ("majority", "random"):
            raise UsageError(f"unknown target {spec.target!r} for quorum_loss: choose majority")
        if len(member_names) < 3:
            raise UsageError("quorum_loss needs at least 3 members")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """SIGKILL ``n // 2 + 1`` members chosen by the seed (the leader among them when the
        seed's order includes it)."""
        names = sorted(m.name for m in ctx.before.members)
        victims = sorted(ctx.rng.sample(names, len(names) // 2 + 1))
        pids = {v: ctx.runtime.signal_member(v, signal.SIGKILL) for v in victims}
        return Injection(target=",".join(victims), detail={
            "pids": ",".join(str(pids[v]) for v in victims), "signal": "SIGKILL",
            "leader_killed": ctx.before.leader in victims, "survivors": len(names) - len(victims)})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when every victim's process is gone and its client port refuses
        connections, all at the same moment: a majority down at once. (A supervisor may
        restart them within a fraction of a second, so the loss of quorum is observed as
        the members' absence, not by waiting for the survivors to notice.)"""
        victims = injection.target.split(",")
        pids = [int(p) for p in str(injection.detail["pids"]).split(",")]
        survivors = [n for n in ctx.runtime.members() if n not in victims]
        urls = [ctx.subject.endpoint(v).client_url for v in victims]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            gone = all(ctx.runtime.pid(v) != p for v, p in zip(victims, pids, strict=True))
            if gone and all(_port_refuses(u) for u in urls):
                return Verification(
                    effect=f"quorum lost: {', '.join(victims)} down at once (processes ended by SIGKILL, client "
                           f"ports refuse connections); {len(survivors)} of {len(victims) + len(survivors)} "
                           "members left, short of a majority",
                    observations={"members_down": injection.target, "survivors": ",".join(survivors),
                                  "majority_down": True, "leader_killed": bool(injection.detail["leader_killed"])})
            await anyio.sleep(0.005)
        raise ChaosVerificationError(f"{injection.target} were never all down at once within {timeout_s:.0f}s")
