"""``node_kill``: SIGKILL one member's process, as a crash or an OOM kill would."""

from __future__ import annotations

import signal
import socket
import time
from urllib.parse import urlparse

import anyio

from opeval.chaos._protocol import (
    ChaosContext,
    ChaosVerificationError,
    FaultBase,
    Injection,
    Verification,
)
from opeval.chaos._targets import choose_member, validate_target
from opeval.events import ChaosSpec


def _port_refuses(url: str) -> bool:
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname, u.port), timeout=0.05):
            return False
    except OSError:
        return True


class NodeKill(FaultBase):
    """Kill a member with SIGKILL; the effect is the member's absence (or a new leader)."""

    kind = "node_kill"

    def applies_to(self, subject: object) -> bool:
        """Any subject whose members are processes (all of them): it needs only the runtime and a
        member's endpoint."""
        return True

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """The target must be a role or one of the members."""
        validate_target(self.kind, spec, member_names)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """SIGKILL the chosen member's process."""
        names = [m.name for m in ctx.before.members]
        victim = choose_member(spec.target, ctx.before.leader, names, ctx.rng)
        restarts = ctx.runtime.restarts(victim)
        pid = ctx.runtime.signal_member(victim, signal.SIGKILL)
        return Injection(target=victim, detail={
            "pid": pid, "signal": "SIGKILL", "was_leader": victim == ctx.before.leader, "restarts_before": restarts,
        })

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the process is gone and the member's client port refuses connections,
        or, under a fast restart policy, when the supervisor has already restarted it (the
        crash then shows as a restart: a container engine restarts within ~100 ms)."""
        victim = injection.target
        url = ctx.subject.endpoint(victim).client_url
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            exited = ctx.runtime.pid(victim) != injection.detail["pid"]
            restarted = ctx.runtime.restarts(victim) > int(injection.detail.get("restarts_before") or 0)  # type: ignore[arg-type]
            if exited and restarted:
                role = "leader" if injection.detail["was_leader"] else "follower"
                return Verification(
                    effect=f"{victim} ({role}) crashed: process {injection.detail['pid']} ended by SIGKILL and the "
                           "supervisor has restarted it",
                    observations={"member": victim, "exit_code": ctx.runtime.last_exit(victim),
                                  "restarted": True, "was_leader": bool(injection.detail["was_leader"])})
            if exited and await anyio.to_thread.run_sync(_port_refuses, url):
                rc = ctx.runtime.last_exit(victim)
                role = "leader" if injection.detail["was_leader"] else "follower"
                return Verification(
                    effect=f"{victim} ({role}) is down: process ended by "
                    f"{'SIGKILL' if rc == -signal.SIGKILL else f'exit {rc}'}, client port refuses connections",
                    observations={"member": victim, "exit_code": rc, "client_port_refused": True,
                                  "was_leader": bool(injection.detail["was_leader"])},
                )
            await anyio.sleep(0.01)
        raise ChaosVerificationError(f"{victim} still answers {timeout_s:.0f}s after SIGKILL")
