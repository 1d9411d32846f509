"""Faults of a shared store and its clients (a :class:`~opeval.subjects.SharedStore`: the rate
limiter's Redis with Sentinel and its limiter nodes).

* ``write_pause``: the primary refuses writes (Redis ``CLIENT PAUSE ... WRITE``); reads and
  pings still answer, so Sentinel sees nothing wrong.
* ``store_cut``: one client cut off from every store member (through the fault proxy).
* ``store_latency``: one client's links to the store slowed (through the fault proxy).
* ``memory_pressure``: the primary capped just above its use, with an eviction policy that
  drops keys with an expiry (the counters), and filled with ballast: counters are evicted.
* ``traffic_burst``: several times the workload's rate on one key through every client.
* ``config_drift``: one client restarted with a wrong limit in its configuration file.

Each is verified by its effect on the system, and reverted idempotently; what only the
operator can repair (a drifted node already running) is left to the operator.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import httpx

from opeval.chaos._protocol import ChaosContext, ChaosVerificationError, FaultBase, Injection, Verification
from opeval.chaos._proxy import PeerProxy
from opeval.errors import UsageError
from opeval.events import ChaosSpec
from opeval.params import DURATION, Param
from opeval.runtimes import Runtime
from opeval.subjects import SharedStore, Subject

_BALLAST = "opeval:chaos:ballast:"
_BALLAST_BYTES = 16384


def _store(ctx: ChaosContext) -> SharedStore:
    assert isinstance(ctx.subject, SharedStore)
    return ctx.subject


def _client_target(spec: ChaosSpec, ctx: ChaosContext) -> str:
    """``random`` (a seeded choice) or a named client of the store."""
    clients = sorted(_store(ctx).store_clients())
    if spec.target == "random":
        return ctx.rng.choice(clients)
    if spec.target not in clients:
        raise UsageError(f"{spec.kind}: target {spec.target!r} is not a client of the store: choose random or one of "
                         f"{', '.join(clients)}")
    return spec.target


def _validate_client_target(spec: ChaosSpec, member_names: list[str]) -> None:
    if spec.target != "random" and spec.target not in member_names:
        raise UsageError(f"unknown target {spec.target!r} for {spec.kind}: choose random or a node "
                         f"({', '.join(member_names)})")


DELAY = Param("delay_ms", float, "milliseconds added to every message between the node and Redis", 100.0, low=1,
              high=5000)
HEADROOM = Param("headroom_mb", float, "MB of memory the cap leaves above what Redis uses now", 1.0, low=1, high=64)
BALLAST = Param("ballast_mb", float, "MB of data written to push Redis past its cap", 64.0, low=1, high=1024)
RATE = Param("rate_hz", float, "burst requests per second, spread over every node", 125.0, low=1, high=2000)
LIMIT = Param("limit", int, "the wrong limit the node restarts with (not set: three times its own)", None, low=1,
              high=100_000)


def _number(spec: ChaosSpec, param: Param) -> float:
    """A parameter's value (checked against its declaration before the fault is validated)."""
    return float(spec.params.get(param.name, param.default))  # type: ignore[arg-type]


class StoreFault(FaultBase):
    """Applies to subjects that share a store (and list the kind)."""

    def applies_to(self, subject: Subject) -> bool:
        """When the subject is a :class:`SharedStore` and lists this kind."""
        return isinstance(subject, SharedStore) and self.kind in subject.chaos_kinds


class WritePause(StoreFault):
    """The primary refuses writes for ``duration_s`` (default: until reverted)."""

    kind = "write_pause"
    params = (DURATION,)

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Target: the primary (``leader``, ``primary`` or ``random``); optional ``duration_s``."""
        if spec.target not in ("leader", "primary", "random"):
            raise UsageError(f"write_pause pauses the store's primary: target leader, not {spec.target!r}")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """``CLIENT PAUSE <ms> WRITE`` on the primary."""
        store = _store(ctx)
        primary = await store.store_primary(ctx.http) or str(ctx.before.leader)
        ms = int(float(spec.params.get("duration_s", 3600)) * 1000)  # type: ignore[arg-type]
        await store.store_command(primary, "CLIENT", "PAUSE", ms, "WRITE")
        return Injection(target=primary, detail={"command": f"CLIENT PAUSE {ms} WRITE", "pause_ms": ms})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when a request through a client gets no decision (its write waits) while
        the primary still answers PING."""
        store = _store(ctx)
        client = sorted(store.store_clients())[0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            decided = await store.admit(ctx.http, client, "opeval/chaos/write-pause")
            alive = await ctx.subject.answers(ctx.http, injection.target, 0.5)
            if decided is None and alive:
                return Verification(
                    effect=f"{injection.target} (primary) refuses writes: a request through {client} got no "
                           "decision while the primary still answers PING",
                    observations={"member": injection.target, "request_decided": False, "ping_answers": True})
            await anyio.sleep(0.1)
        raise ChaosVerificationError(f"writes to {injection.target} still succeed after CLIENT PAUSE")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """``CLIENT UNPAUSE`` (harmless if no pause is on)."""
        try:
            await _store(ctx).store_command(injection.target, "CLIENT", "UNPAUSE")
        except Exception:  # noqa: BLE001 - the member may be down: nothing of ours is left on it
            return None
        return f"CLIENT UNPAUSE on {injection.target}"


def _proxy(ctx: ChaosContext) -> PeerProxy:
    if ctx.proxy is None:
        raise RuntimeError(f"{type(ctx).__name__}: store link faults need the fault proxy")
    return ctx.proxy


class StoreCut(StoreFault):
    """One client cut off from every store member (``duration_s``, default: until the trial ends)."""

    kind = "store_cut"
    params = (DURATION,)

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """Clients reach the store through the fault proxy."""
        return True

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """``random`` or a client; optional ``duration_s``."""
        _validate_client_target(spec, member_names)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Cut every link between the client and the store, open connections included."""
        victim = _client_target(spec, ctx)
        _proxy(ctx).partition([{victim}, set(_store(ctx).store_members())])
        return Injection(target=victim, detail={"cut_from": ",".join(_store(ctx).store_members())})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the client answers but reports the store unreachable, while the others
        are healthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = await ctx.subject.observe(ctx.http, ctx.running())
            by = {m.name: m for m in state.members}
            v = by[injection.target]
            others = [by[n] for n in _store(ctx).store_clients() if n != injection.target]
            if v.reachable and not v.healthy and any(m.healthy for m in others):
                return Verification(
                    effect=f"{injection.target} cut off from the store: it answers but reports {v.error}; "
                           f"{', '.join(m.name for m in others if m.healthy)} healthy",
                    observations={"member": injection.target, "error": v.error,
                                  "others_healthy": ",".join(m.name for m in others if m.healthy),
                                  "refused_connections": _proxy(ctx).refused})
            await anyio.sleep(0.1)
        raise ChaosVerificationError(f"{injection.target} still reaches the store after the cut")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Restore the links (idempotent)."""
        return "links to the store restored" if _proxy(ctx).heal() else None


class StoreLatency(StoreFault):
    """Every byte between one client and the store delayed by ``delay_ms`` (default 100)."""

    kind = "store_latency"
    params = (DELAY, DURATION)

    def needs_peer_proxy(self, runtime: Runtime) -> bool:
        """The delay is the proxy's."""
        return True

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """``random`` or a client; ``delay_ms`` 1..5000; optional ``duration_s``."""
        _validate_client_target(spec, member_names)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Time a request through the client, then slow its links."""
        victim = _client_target(spec, ctx)
        before = await ctx.subject.timed_write(ctx.http, victim)
        delay_ms = _number(spec, DELAY)
        _proxy(ctx).add_latency(victim, delay_ms / 1000)
        return Injection(target=victim, detail={"delay_ms": delay_ms, "request_ms_before": before})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when a request through the client takes at least the added delay."""
        delay_ms = float(injection.detail["delay_ms"])  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            took = await ctx.subject.timed_write(ctx.http, injection.target)
            if took is not None and took >= delay_ms:
                before = injection.detail["request_ms_before"]
                return Verification(
                    effect=f"{injection.target}'s links to the store slowed by {delay_ms:g} ms: a request through it "
                           f"took {took:.0f} ms" + (f" (before: {before:.0f} ms)" if isinstance(before, float) else ""),
                    observations={"member": injection.target, "delay_ms": delay_ms, "request_ms": round(took, 1),
                                  "request_ms_before": before})
            await anyio.sleep(0.1)
        raise ChaosVerificationError(f"requests through {injection.target} never slowed by {delay_ms:g} ms")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Remove the delay (idempotent)."""
        return "added delay removed" if _proxy(ctx).clear_latency(injection.target) else None


class MemoryPressure(StoreFault):
    """A noisy neighbour in the store: the primary capped just above its use with
    ``volatile-random`` eviction, and ballast (keys without expiry) written up to the cap,
    then a trickle more: counters (keys with an expiry) are evicted one by one while writes
    still succeed, so their keys admit afresh. The writer stops at ``ballast_mb`` (default 64)."""

    kind = "memory_pressure"
    params = (HEADROOM, BALLAST, DURATION)

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.written = 0

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Target: the primary; ``headroom_mb`` 1..64 (default 1); ``ballast_mb`` 1..1024; optional ``duration_s``."""
        if spec.target not in ("leader", "primary", "random"):
            raise UsageError(f"memory_pressure caps the store's primary: target leader, not {spec.target!r}")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Save the primary's memory settings, cap it, start the ballast writer."""
        store = _store(ctx)
        primary = await store.store_primary(ctx.http) or str(ctx.before.leader)
        old_max = _config(await store.store_command(primary, "CONFIG", "GET", "maxmemory"))
        old_policy = _config(await store.store_command(primary, "CONFIG", "GET", "maxmemory-policy"))
        info = await store.store_command(primary, "INFO", "memory")
        used = int(info["used_memory"]) if isinstance(info, dict) else 0
        cap = used + int(_number(spec, HEADROOM) * 1024 * 1024)
        await store.store_command(primary, "CONFIG", "SET", "maxmemory-policy", "volatile-random")
        await store.store_command(primary, "CONFIG", "SET", "maxmemory", cap)
        keys = int(_number(spec, BALLAST) * 1024 * 1024) // _BALLAST_BYTES
        self._stop.clear()
        self._writer = threading.Thread(target=anyio.run, args=(self._fill, store, primary, cap, keys), daemon=True,
                                        name="opeval-ballast")
        self._writer.start()
        return Injection(target=primary, detail={
            "maxmemory_before": old_max, "policy_before": old_policy, "maxmemory": cap, "ballast_keys": keys})

    async def _fill(self, store: SharedStore, primary: str, cap: int, keys: int) -> None:
        """Fill to just under the cap in 16 KiB pieces, then trickle 512 bytes every 0.1 s: each
        trickle evicts about one counter, while writes still succeed (counters come back)."""
        for i in range(keys):
            if self._stop.is_set():
                return
            try:
                used = int((await store.store_command(primary, "INFO", "memory"))["used_memory"])
                size = _BALLAST_BYTES if used < cap - 4 * _BALLAST_BYTES else 512
                await store.store_command(primary, "SET", f"{_BALLAST}{i}", "x" * size)
                self.written = i + 1
            except Exception:  # noqa: BLE001 - out of memory (nothing left to evict) or down: keep pressing
                pass
            if size < _BALLAST_BYTES:
                await anyio.sleep(0.1)

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the primary reports keys evicted (``evicted_keys`` grows: the counters)."""
        store = _store(ctx)
        start = _evicted(await store.store_command(injection.target, "INFO", "stats"))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            evicted = _evicted(await store.store_command(injection.target, "INFO", "stats"))
            if evicted > start:
                return Verification(
                    effect=f"{injection.target} (primary) is under memory pressure: capped at "
                           f"{int(injection.detail['maxmemory']) // 1024} KiB and filling, it evicted "
                           f"{evicted - start} counters",
                    observations={"member": injection.target, "evicted_keys": evicted - start,
                                  "maxmemory": injection.detail["maxmemory"], "ballast_keys": self.written})
            await anyio.sleep(0.05)
        raise ChaosVerificationError(f"{injection.target} evicted nothing under its memory cap")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Stop the writer, drop the ballast, restore the memory cap and policy (idempotent)."""
        if self._writer is not None:
            self._stop.set()
            await anyio.to_thread.run_sync(self._writer.join, 5.0)
            self._writer = None
        store, target, done = _store(ctx), injection.target, []
        try:  # the settings first: they are what keeps evicting counters
            if _config(await store.store_command(target, "CONFIG", "GET", "maxmemory")) != str(
                    injection.detail["maxmemory_before"]):
                await store.store_command(target, "CONFIG", "SET", "maxmemory", injection.detail["maxmemory_before"])
                await store.store_command(target, "CONFIG", "SET", "maxmemory-policy", injection.detail["policy_before"])
                done.append(f"maxmemory {injection.detail['maxmemory_before']} and policy "
                            f"{injection.detail['policy_before']} restored on {target}")
            keys = int(injection.detail["ballast_keys"])  # type: ignore[arg-type]
            removed = 0
            for i in range(0, keys, 256):
                removed += int(await store.store_command(target, "UNLINK", *(
                    f"{_BALLAST}{j}" for j in range(i, min(i + 256, keys)))))
            if removed:
                done.append(f"{removed} ballast keys removed")
        except Exception:  # noqa: BLE001 - the member is gone: its settings and ballast went with it
            pass
        return "; ".join(done) or None


def _config(reply: Any) -> str:
    """The value of a one-parameter ``CONFIG GET`` reply (a mapping or a pair)."""
    value = next(iter(reply.values())) if isinstance(reply, dict) else reply[1]
    return value.decode() if isinstance(value, bytes) else str(value)


def _evicted(info: Any) -> int:
    return int(info.get("evicted_keys", 0)) if isinstance(info, dict) else 0


class TrafficBurst(StoreFault):
    """``factor`` times the workload's per-key rate (default 5x of 25/s) on one key, through
    every client, from threads of the harness, for ``duration_s`` (default: until reverted)."""

    kind = "traffic_burst"
    params = (RATE, DURATION)

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sent = self.admitted = self.rejected = self.failed = 0

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """Target ``cluster`` (or ``random``); ``rate_hz`` 1..2000 (default 125); optional ``duration_s``."""
        if spec.target not in ("cluster", "random"):
            raise UsageError(f"traffic_burst loads every node: target cluster, not {spec.target!r}")

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Start the burst's senders."""
        store = _store(ctx)
        urls = [ctx.subject.endpoint(n).client_url for n in store.store_clients()]
        rate = _number(spec, RATE)
        key = f"opeval/chaos/burst-{int(time.time())}"
        senders = 4
        self._stop.clear()
        for i in range(senders):
            t = threading.Thread(target=self._send, args=(urls, key, rate / senders, i), daemon=True,
                                 name=f"opeval-burst-{i}")
            t.start()
            self._threads.append(t)
        return Injection(target="cluster", detail={"key": key, "rate_hz": rate, "senders": senders})

    def _send(self, urls: list[str], key: str, rate: float, offset: int) -> None:
        interval, n = 1.0 / rate, offset
        next_at = time.monotonic()
        with httpx.Client(trust_env=False) as http:
            while not self._stop.is_set():
                n += 1
                try:
                    r = http.get(f"{urls[n % len(urls)]}/check", params={"key": key}, timeout=1.0)
                    self.admitted += r.status_code == 200
                    self.rejected += r.status_code == 429
                    self.failed += r.status_code not in (200, 429)
                except httpx.HTTPError:
                    self.failed += 1
                self.sent += 1
                next_at = max(next_at + interval, time.monotonic())
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the limiter rejects the burst's excess (429s on its key)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.rejected >= 10:
                return Verification(
                    effect=f"a burst of {float(injection.detail['rate_hz']):g} requests/s on one key: "
                           f"{self.admitted} admitted, {self.rejected} rejected, {self.failed} failed so far",
                    observations={"sent": self.sent, "admitted": self.admitted, "rejected": self.rejected,
                                  "failed": self.failed, "rate_hz": injection.detail["rate_hz"]})
            await anyio.sleep(0.05)
        raise ChaosVerificationError(f"the burst drew no rejection ({self.sent} sent, {self.failed} failed)")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Stop the senders (idempotent)."""
        if not self._threads:
            return None
        self._stop.set()
        threads, self._threads = self._threads, []
        for t in threads:
            await anyio.to_thread.run_sync(t.join, 5.0)
        return f"burst stopped after {self.sent} requests ({self.admitted} admitted, {self.rejected} rejected)"


class ConfigDrift(StoreFault):
    """One client restarted with a wrong limit in its configuration file (``limit``, default
    three times the subject's): it admits more than the others."""

    kind = "config_drift"
    params = (LIMIT, DURATION)

    def validate(self, spec: ChaosSpec, member_names: list[str]) -> None:
        """``random`` or a client; ``limit`` 1..100000 if given."""
        _validate_client_target(spec, member_names)

    async def inject(self, spec: ChaosSpec, ctx: ChaosContext) -> Injection:
        """Rewrite its configuration and restart it (stop, start: as a deploy would)."""
        store = _store(ctx)
        victim = _client_target(spec, ctx)
        current = await store.live_limit(ctx.http, victim) or 1
        wrong = int(spec.params.get("limit", current * 3))  # type: ignore[call-overload]
        right = store.set_configured_limit(victim, wrong)
        await ctx.runtime.stop_member(victim)
        await ctx.runtime.start_member(ctx.runtime.spec(victim), reason="config drift")
        return Injection(target=victim, detail={"limit": wrong, "configured_limit": right})

    async def verify(self, injection: Injection, ctx: ChaosContext, timeout_s: float) -> Verification:
        """Observed when the restarted node answers with the wrong limit."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            live = await _store(ctx).live_limit(ctx.http, injection.target)
            if live == injection.detail["limit"]:
                return Verification(
                    effect=f"{injection.target} restarted with limit {live} per window where the others "
                           f"apply {injection.detail['configured_limit']}",
                    observations={"member": injection.target, "limit": live,
                                  "configured_limit": injection.detail["configured_limit"]})
            await anyio.sleep(0.05)
        raise ChaosVerificationError(f"{injection.target} never came back with limit {injection.detail['limit']}")

    async def revert(self, injection: Injection, ctx: ChaosContext) -> str | None:
        """Put the right limit back in the file if it is still wrong (the running node is the
        operator's to fix: it keeps the limit it started with until restarted or set)."""
        store = _store(ctx)
        old = store.set_configured_limit(injection.target, None)
        if old == injection.detail["configured_limit"]:
            return None
        return f"{injection.target}'s configuration file set back to limit {injection.detail['configured_limit']}"
