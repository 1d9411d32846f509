"""Network faults between members, made by the fault proxy: ``partition`` and ``latency``.

Neither can be undone from an operator's shell (the network is not the operator's);
with ``duration_s`` the harness ends them, otherwise they end with the trial. The agent
is judged on noticing them and on not making things worse.
"""

from __future__ import annotations

import time

import anyio

from opeval.chaos._protocol import (
    ChaosContext,
    ChaosVerificationError,
    FaultBase,
    Injection,
    Verification,
)
from opeval.chaos._proxy import PeerProxy
from opeval.chaos._targets import choose_member, validate_target
from opeval.errors import UsageError
from opeval.events import ChaosSpec
from opeval.params import DURATION, Param
from opeval.runtimes import LinkCutter, Runtime


def _proxy(ctx: ChaosContext) -> PeerProxy:
    if ctx.proxy is None:
        raise RuntimeError("network faults need the fault proxy (needs_peer_proxy)")
    return ctx.proxy


DELAY = Param("delay_ms", float, "milliseconds added to every message to and from the member", 200.0, low=1,
              high=10_000)


class Partition(FaultBase):
    """Cut a member off from every other (``target``: a role or a member), or split the
    cluster in two (``target: split``: a seeded minority against the rest)."""

    kind = "partition"
    params = (DURATION,)

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """Through the fault proxy, unless the runtime cuts links itself (iptables)."""
        return not isinstance(runtime, LinkCutter)

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """A role, a member or ``split``; at least 3 members."""
        if spec.target != "split":
            validate_target(self.kind, spec, member_names)
        if len(member_names) < 3:
            raise UsageError("partition needs at least 3 members (a majority on one side)")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Cut the links between the two sides, open connections included."""
        names = sorted(m.name for m in ctx.before.members)
        if spec.target == "split":
            minority = set(ctx.rng.sample(names, (len(names) - 1) // 2))
        else:
            minority = {choose_member(spec.target, ctx.before.leader, names, ctx.rng)}
        majority = set(names) - minority
        if isinstance(ctx.runtime, LinkCutter):
            ctx.runtime.cut([minority, majority])
        else:
            _proxy(ctx).partition([minority, majority])
        return Injection(target=",".join(sorted(minority)), detail={
            "majority": ",".join(sorted(majority)), "leader_before": ctx.before.leader,
            "leader_isolated": ctx.before.leader in minority})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when every cut-off member reports unhealthy (it lost its leader) and the
        majority has a leader of its own: a real partition, not just a closed socket."""
        minority = injection.target.split(",")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = await ctx.subject.observe(ctx.http, ctx.running())
            by = {m.name: m for m in state.members}
            cut_off_unhealthy = all(by[n].reachable and not by[n].healthy for n in minority)
            majority = str(injection.detail["majority"]).split(",")
            leader = state.leader  # the one leader every reachable member that has one agrees on
            if cut_off_unhealthy and leader in majority and all(by[n].healthy for n in majority):
                return Verification(
                    effect=f"{', '.join(minority)} cut off from the others: unhealthy on its side while "
                           f"{injection.detail['majority'].replace(',', ', ')} follow leader {leader}"
                           + (" (a new leader: the old one was cut off)" if injection.detail["leader_isolated"] else ""),
                    observations={"cut_off": injection.target, "majority": injection.detail["majority"],
                                  "leader_before": injection.detail["leader_before"], "leader_after": leader,
                                  "leader_changed": leader != injection.detail["leader_before"],
                                  "cut_off_healthy": False,
                                  "refused_connections": ctx.proxy.refused if ctx.proxy else None})
            await anyio.sleep(0.1)
        raise ChaosVerificationError(f"no partition observed {timeout_s:.0f}s after cutting {injection.target} off")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Restore every link (idempotent)."""
        healed = ctx.runtime.heal() if isinstance(ctx.runtime, LinkCutter) else _proxy(ctx).heal()
        return "links restored" if healed else None


class Latency(FaultBase):
    """Delay every message to and from one member (``params.delay_ms``, default 200)."""

    kind = "latency"
    params = (DELAY, DURATION)

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """Always: the delay is the proxy's (this kernel has no netem)."""
        return True

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """A role or a member; at least 2 members."""
        validate_target(self.kind, spec, member_names)
        if len(member_names) < 2:
            raise UsageError("latency needs at least 2 members (it slows the links between them)")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Slow the member's links; a write through it, timed first, is the yardstick."""
        names = sorted(m.name for m in ctx.before.members)
        victim = choose_member(spec.target, ctx.before.leader, names, ctx.rng)
        before_ms = await ctx.subject.timed_write(ctx.http, victim)
        delay_ms = float(spec.params.get("delay_ms", DELAY.default))  # type: ignore[arg-type]
        _proxy(ctx).add_latency(victim, delay_ms / 1000)
        return Injection(target=victim, detail={"delay_ms": delay_ms, "write_ms_before": before_ms,
                                                "was_leader": victim == ctx.before.leader})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when a write through the member takes at least the added delay (it must
        cross the slowed links to commit) where it took far less before."""
        delay_ms = float(injection.detail["delay_ms"])  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            took = await ctx.subject.timed_write(ctx.http, injection.target)
            if took is not None and took >= delay_ms:
                before = injection.detail["write_ms_before"]
                return Verification(
                    effect=f"{injection.target}'s links slowed by {delay_ms:g} ms: a write through it took "
                           f"{took:.0f} ms" + (f" (before: {before:.0f} ms)" if isinstance(before, float) else ""),
                    observations={"member": injection.target, "delay_ms": delay_ms, "write_ms": round(took, 1),
                                  "write_ms_before": before})
            await anyio.sleep(0.1)
        raise ChaosVerificationError(f"writes through {injection.target} never slowed by {delay_ms:g} ms")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Remove the delay (idempotent)."""
        if _proxy(ctx).clear_latency(injection.target):
            return "added delay removed"
        return None
