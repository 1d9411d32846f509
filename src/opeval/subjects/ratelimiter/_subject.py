"""The rate-limiter subject: N limiter nodes sharing sliding-window counters in Redis, with
a primary, one replica and three Sentinels that fail over when the primary goes.

Members, in start order: ``redis-1`` (the first primary), ``redis-2`` (its replica),
``sentinel-1..3``, then ``limiter-1..N`` (``--members`` counts the limiter nodes; the Redis
tier is fixed). The cluster's ``leader`` is the Redis primary the Sentinels agree on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import yaml

from opeval._assets import asset_path
from opeval.commands import CommandRule
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ClusterState, MemberEndpoint, MemberState, Scalar
from opeval.runtimes import MemberSpec, Runtime
from opeval.subjects._base import SubjectBase
from opeval.subjects._symptoms import member_symptoms
from opeval.subjects.ratelimiter import _probe
from opeval.subjects.ratelimiter._commands import COMMAND_RULES
from opeval.subjects.ratelimiter._workload import LIMITER_WORDS, LimiterWorkload
from opeval.workload import WorkloadWindow

if TYPE_CHECKING:
    from opeval.agents import AgentResult, AgentTools, Incident

#: The kinds that apply: process faults, and the Redis-side ones of :mod:`opeval.chaos`.
CHAOS_KINDS = ("node_kill", "pause", "write_pause", "store_cut", "store_latency", "memory_pressure",
               "traffic_burst", "config_drift")
REDIS = ("redis-1", "redis-2")
SENTINELS = ("sentinel-1", "sentinel-2", "sentinel-3")
_SETNAME = re.compile(rb"\$7\r\nSETNAME\r\n\$\d+\r\n([^\r]+)\r\n", re.IGNORECASE)
SERVICE_PY = Path(__file__).with_name("_service.py")
RLCTL_PY = Path(__file__).with_name("_rlctl.py")


def redis_server_binary(configured: str) -> str:
    """The ``redis-server`` to run (``$OPEVAL_REDIS_SERVER``, else the subject's setting on the PATH)."""
    found = shutil.which(os.environ.get("OPEVAL_REDIS_SERVER") or configured)
    if not found:
        raise EnvironmentProblem("redis-server not found: install Debian's redis-server "
                                 "(apt-get install redis-server) or set OPEVAL_REDIS_SERVER")
    return found


class RateLimiterSubject(SubjectBase):
    """The rate limiter: start, observe and judge it."""

    name = "ratelimiter"
    chaos_kinds = CHAOS_KINDS
    tools = ("redis-cli", "rlctl")
    words = LIMITER_WORDS

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.settings = settings or yaml.safe_load(asset_path("subjects/ratelimiter/subject.yaml").read_text())
        self.default_members = int(self.settings["members"])
        self.start_timeout_s = float(self.settings["start_timeout_s"])
        self.probe_timeout_s = float(self.settings["probe_timeout_s"])
        self.limit = int(self.settings["limit"])
        self.window_s = float(self.settings["window_s"])
        self.service = str(self.settings["service"])
        self._fronts: dict[str, int] = {}
        self._by_addr: dict[str, str] = {}  # "127.0.0.1:port" of a Redis server -> its member name
        self._member_dirs: dict[str, Path] = {}
        self._probe_key = f"opeval/probe/{uuid.uuid4().hex[:12]}"

    # --- shape -------------------------------------------------------------------
    def member_names(self, count: int) -> list[str]:
        """The Redis tier (``redis-1``, ``redis-2``, ``sentinel-1..3``), then ``limiter-1..count``."""
        if not 1 <= count <= 9:
            raise UsageError(f"--members (limiter nodes) must be between 1 and 9 for ratelimiter, not {count}")
        return [*REDIS, *SENTINELS, *(f"limiter-{i}" for i in range(1, count + 1))]

    def limiters(self) -> list[str]:
        """The limiter nodes (the Redis tier's clients)."""
        return [e.name for e in self._endpoints if e.name.startswith("limiter-")]

    store_clients = limiters

    def store_members(self) -> list[str]:
        """The Redis servers and Sentinels."""
        return [e.name for e in self._endpoints if not e.name.startswith("limiter-")]

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        """One port per member; Redis and Sentinel config files and each node's limits in the
        members' directories. ``peer_fronts``: a front port per Redis server and Sentinel that
        the limiter nodes dial instead (the fault proxy's), so their links can be cut or slowed."""
        names = self.member_names(count)
        binary = redis_server_binary(str(self.settings["redis_server"]))
        store = [*REDIS, *SENTINELS]
        ports = runtime.allocate_ports(len(names) + (len(store) if peer_fronts else 0))
        port = dict(zip(names, ports, strict=False))
        self._fronts = dict(zip(store, ports[len(names):], strict=True)) if peer_fronts else {}
        addr = {n: f"{runtime.address(n)}:{port[n]}" for n in names}
        self._by_addr = {addr[n]: n for n in REDIS}
        self._endpoints = [MemberEndpoint(name=n, client_url=("http://" if n.startswith("limiter-") else "redis://")
                                          + addr[n], peer_url="") for n in names]
        routes = ",".join(f"{addr[n]}={runtime.host}:{self._fronts[n]}" for n in store if n in self._fronts)
        specs = []
        for n in names:
            mdir = self._member_dirs[n] = runtime.member_dir(n)
            (mdir / "data").mkdir(exist_ok=True)
            common = {"env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, "cwd": str(mdir),
                      "log_path": str(mdir / "member.log"), "data_dir": str(mdir / "data")}
            if n in REDIS:
                conf = mdir / "redis.conf"
                if not conf.exists():  # Sentinel rewrites it on a failover: a restart keeps its word
                    conf.write_text(self._redis_conf(port[n], mdir, None if n == REDIS[0] else addr[REDIS[0]]))
                argv = [binary, str(conf)]
            elif n in SENTINELS:
                conf = mdir / "sentinel.conf"
                if not conf.exists():
                    conf.write_text(self._sentinel_conf(port[n], mdir, addr[REDIS[0]]))
                argv = [binary, str(conf), "--sentinel"]
            else:
                conf = mdir / "limiter.json"
                conf.write_text(json.dumps({"limit": self.limit, "window_s": self.window_s, "service": self.service,
                                            "redis_timeout_s": float(self.settings["redis_timeout_s"])}))
                argv = [sys.executable, "-I", str(SERVICE_PY), f"--name={n}", f"--host={runtime.address(n)}",
                        f"--port={port[n]}", f"--sentinels={','.join(addr[s] for s in SENTINELS)}",
                        f"--config={conf}", f"--routes={routes}"]
            specs.append(MemberSpec(name=n, argv=argv, **common))
        return specs

    @staticmethod
    def _redis_conf(port: int, mdir: Path, primary: str | None) -> str:
        # a replica's full sync starts at once (the primary would wait 5 s for others to join it)
        lines = [f"port {port}", "bind 127.0.0.1", "protected-mode no", 'save ""', "appendonly no",
                 f"dir {mdir / 'data'}", 'logfile ""', "loglevel warning", "repl-diskless-sync-delay 0"]
        if primary:
            lines.append("replicaof " + primary.replace(":", " "))
        return "\n".join(lines) + "\n"

    def _sentinel_conf(self, port: int, mdir: Path, primary: str) -> str:
        s = self.settings["sentinel"]
        lines = [f"port {port}", "bind 127.0.0.1", "protected-mode no", f"dir {mdir / 'data'}", 'logfile ""',
                 "loglevel warning", f"sentinel monitor {self.service} {primary.replace(':', ' ')} {s['quorum']}"]
        lines += [f"sentinel {k} {self.service} {v}" for k, v in s.items() if k != "quorum"]
        return "\n".join(lines) + "\n"

    @property
    def peer_routes(self) -> dict[str, tuple[int, str, int]]:
        """Redis server or Sentinel -> (front port the limiter nodes dial, its real host and port)."""
        routes = {}
        for e in self._endpoints:
            if e.name in self._fronts:
                host, port = e.client_url.removeprefix("redis://").rsplit(":", 1)
                routes[e.name] = (self._fronts[e.name], host, int(port))
        return routes

    def peer_sender(self, head: bytes) -> str | None:
        """A limiter node names itself first on every Redis connection (``CLIENT SETNAME``)."""
        found = _SETNAME.search(head)
        name = found.group(1).decode(errors="replace") if found else None
        return name if name in self.limiters() else None

    def attach(self, endpoints: list[MemberEndpoint]) -> None:
        """Observe a running cluster at ``endpoints``."""
        super().attach(endpoints)
        self._by_addr = {e.client_url.removeprefix("redis://"): e.name for e in endpoints if e.name in REDIS}

    # --- observation ---------------------------------------------------------------
    async def _limiter_state(self, http: httpx.AsyncClient, e: MemberEndpoint, up: bool) -> MemberState:
        try:
            r = await http.get(e.client_url + "/health", timeout=self.probe_timeout_s)
            body = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            return MemberState(name=e.name, process_up=up, role="limiter", error=type(exc).__name__)
        detail: dict[str, Scalar] = {
            "primary": self._by_addr.get(body.get("primary") or "", body.get("primary") or None),
            "limit": body.get("limit"), "window_s": body.get("window_s"), "redis_ms": body.get("redis_ms"),
            "evicted_keys": body.get("evicted_keys"), "heartbeat_age_s": body.get("heartbeat_age_s")}
        ok = r.status_code == 200
        return MemberState(name=e.name, process_up=up, reachable=True, healthy=ok, role="limiter",
                           error=None if ok else f"Redis {body.get('redis', 'unknown')}",
                           detail={k: v for k, v in detail.items() if v is not None})

    async def _redis_state(self, e: MemberEndpoint, up: bool) -> MemberState:
        info = await _probe.redis_info(e.client_url, self.probe_timeout_s)
        if "_error" in info:
            return MemberState(name=e.name, process_up=up, error=info["_error"])
        primary = info.get("role") == "master"
        following = self._by_addr.get(f"{info.get('master_host')}:{info.get('master_port')}")
        link = info.get("master_link_status")
        detail: dict[str, Scalar] = {
            "replicas": int(info.get("connected_slaves", 0)), "following": following, "link": link,
            "evicted_keys": int(info.get("evicted_keys", 0)), "used_memory": int(info.get("used_memory", 0)),
            "maxmemory": int(info.get("maxmemory", 0)), "paused": info.get("paused_reason") or None}
        healthy = primary or link == "up"
        return MemberState(name=e.name, process_up=up, reachable=True, healthy=healthy,
                           role="primary" if primary else "replica",
                           error=None if healthy else f"replication link {link}",
                           detail={k: v for k, v in detail.items() if v is not None})

    async def _sentinel_state(self, e: MemberEndpoint, up: bool) -> MemberState:
        view = await _probe.sentinel_view(e.client_url, self.service, self.probe_timeout_s)
        if "_error" in view:
            return MemberState(name=e.name, process_up=up, role="sentinel", error=view["_error"])
        primary = self._by_addr.get(view["primary"], view["primary"] or None)
        return MemberState(name=e.name, process_up=up, reachable=True, healthy=bool(view["quorum"]),
                           role="sentinel", error=None if view["quorum"] else f"no quorum: {view['quorum_error']}",
                           detail={"primary": primary} if primary else {})

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Every member at once, with short timeouts."""
        states: dict[str, MemberState] = {}

        async def one(e: MemberEndpoint) -> None:
            up = running.get(e.name, False)
            if e.name in REDIS:
                states[e.name] = await self._redis_state(e, up)
            elif e.name in SENTINELS:
                states[e.name] = await self._sentinel_state(e, up)
            else:
                states[e.name] = await self._limiter_state(http, e, up)

        async with anyio.create_task_group() as tg:
            for e in self._endpoints:
                tg.start_soon(one, e)
        members = [states[e.name] for e in self._endpoints]
        named = {m.detail.get("primary") for m in members if m.role == "sentinel" and m.reachable}
        leader = next(iter(named)) if len(named) == 1 and None not in named else None
        return ClusterState(members=members, leader=str(leader) if leader else None,
                            healthy=sum(m.healthy for m in members), expected=len(members),
                            detail={"primary": str(leader)} if leader else {})

    # --- judgement -----------------------------------------------------------------
    def symptoms(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Nodes down, Redis disconnected, a failover, high latency, counter drift, ghost allowing."""
        found = member_symptoms(now)
        if now.leader is None:
            found.append("no agreed Redis primary")
        elif baseline.leader and now.leader != baseline.leader:
            found.append(f"Redis primary changed {baseline.leader} -> {now.leader} (failover)")
        nodes = [m for m in now.members if m.role == "limiter" and m.reachable]
        slow = [f"{m.name} {m.detail['redis_ms']} ms" for m in nodes
                if float(m.detail.get("redis_ms") or 0) > float(self.settings["high_latency_ms"])]
        if slow:
            found.append(f"high latency to Redis: {', '.join(slow)}")
        found += self._rogue_primaries(now)
        found += self._drift(now)
        found += self._ghosts(baseline, now)
        return found

    @staticmethod
    def _rogue_primaries(now: ClusterState) -> list[str]:
        """Redis servers that act as primary although the Sentinels name another (an old primary
        back from the dead before Sentinel demotes it: writes sent there would be lost)."""
        return [f"{m.name} is a second primary (the Sentinels name {now.leader})" for m in now.members
                if m.role == "primary" and now.leader and m.name != now.leader]

    def _drift(self, now: ClusterState) -> list[str]:
        nodes = [m for m in now.members if m.role == "limiter" and m.reachable]
        primaries = {m.name: m.detail.get("primary") for m in nodes if m.detail.get("primary")}
        found = []
        if len(set(primaries.values())) > 1:
            found.append("counter drift: nodes count in different Redis servers ("
                         + ", ".join(f"{n} -> {p}" for n, p in primaries.items()) + ")")
        wrong = [f"{m.name} {m.detail.get('limit')}" for m in nodes if m.detail.get("limit") != self.limit]
        if wrong:
            found.append(f"counter drift: limits differ from {self.limit} per {self.window_s:g}s ({', '.join(wrong)})")
        return found

    def _ghosts(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        def evicted(state: ClusterState) -> int:
            return sum(int(m.detail.get("evicted_keys") or 0) for m in state.members if m.role in ("primary", "replica"))

        found = []
        lost = evicted(now) - evicted(baseline)
        if lost > 0:
            found.append(f"ghost allowing: {lost} counters evicted from Redis (their keys admit afresh)")
        loose = [m.name for m in now.members if m.role == "limiter" and m.reachable
                 and int(m.detail.get("limit") or 0) > self.limit]
        if loose:
            found.append(f"ghost allowing: {', '.join(loose)} admit more than {self.limit} per window")
        return found

    def recovery_unmet(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        """Every member answers and is healthy (nodes reach Redis, replicas' links are up, each
        Sentinel has quorum); one primary the Sentinels and every node agree on, with its
        replicas connected; every node at the configured limit."""
        unmet = []
        by_name = {m.name: m for m in now.members}
        for m in baseline.members:
            n = by_name.get(m.name)
            if n is None or not n.reachable:
                unmet.append(f"{m.name} unreachable")
            elif not n.healthy:
                unmet.append(f"{m.name} unhealthy")
        leader = now.leader
        if leader is None:
            unmet.append("no agreed Redis primary")
            return unmet
        p = by_name.get(leader)
        if p is None or p.role != "primary":
            unmet.append(f"{leader} is not a primary")
        unmet += self._rogue_primaries(now)
        expected_replicas = sum(1 for m in baseline.members if m.role == "replica")
        if p is not None and int(p.detail.get("replicas") or 0) < expected_replicas:
            unmet.append(f"replication: {leader} has {p.detail.get('replicas', 0)} of {expected_replicas} replicas")
        for m in now.members:
            if m.role == "replica" and m.reachable and m.detail.get("following") != leader:
                unmet.append(f"{m.name} replicates {m.detail.get('following')}, not {leader}")
            if m.role == "limiter" and m.reachable and m.detail.get("primary") != leader:
                unmet.append(f"{m.name} uses {m.detail.get('primary')}, not {leader}")
            if m.role == "limiter" and m.reachable and m.detail.get("limit") != self.limit:
                unmet.append(f"{m.name} limit {m.detail.get('limit')}, not {self.limit}")
        return unmet

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        """A ``/check`` through one node, then its count read through another."""
        urls = [self.endpoint(n).client_url for n in self.limiters()]
        try:
            r = await http.get(f"{urls[0]}/check", params={"key": self._probe_key}, timeout=1.0)
            if r.status_code not in (200, 429):
                return f"probe check: HTTP {r.status_code} {r.text[:120]}"
            c = await http.get(f"{urls[-1]}/counters", params={"key": self._probe_key}, timeout=1.0)
            count = c.json().get(self._probe_key) if c.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as e:
            return f"probe failed: {type(e).__name__}"
        return None if count else f"probe: the count was not seen through {self.limiters()[-1]} ({count})"

    # --- what faults need -------------------------------------------------------------
    async def answers(self, http: httpx.AsyncClient, member: str, timeout_s: float) -> bool:
        """A node's ``/health`` or a Redis server's or Sentinel's PING answers within ``timeout_s``."""
        url = self.endpoint(member).client_url
        try:
            if url.startswith("http"):
                await http.get(url + "/health", timeout=timeout_s)
            else:
                await _probe.command(url, timeout_s, "PING")
        except (httpx.HTTPError, OSError, _probe.RedisError):
            return False
        return True

    async def timed_write(self, http: httpx.AsyncClient, member: str) -> float | None:
        """Milliseconds one ``/check`` through node ``member`` took (a Lua write in Redis)."""
        t0 = time.perf_counter()
        try:
            r = await http.get(f"{self.endpoint(member).client_url}/check", params={"key": self._probe_key},
                               timeout=10.0)
        except httpx.HTTPError:
            return None
        return (time.perf_counter() - t0) * 1000 if r.status_code in (200, 429) else None

    async def store_primary(self, http: httpx.AsyncClient) -> str | None:
        """The Redis server the Sentinels agree is primary now."""
        return (await self.observe(http, {})).leader

    async def store_command(self, member: str, *args: Scalar) -> Any:
        """One Redis command on ``member``."""
        return await _probe.command(self.endpoint(member).client_url, 2.0, *args)

    async def admit(self, http: httpx.AsyncClient, member: str, key: str) -> bool | None:
        """One ``/check`` on ``key`` through node ``member``."""
        try:
            r = await http.get(f"{self.endpoint(member).client_url}/check", params={"key": key}, timeout=1.0)
        except httpx.HTTPError:
            return None
        return {200: True, 429: False}.get(r.status_code)

    def set_configured_limit(self, member: str, limit: int | None) -> int:
        """Rewrite node ``member``'s ``limiter.json`` (read when it starts)."""
        path = self._member_dirs[member] / "limiter.json"
        config = json.loads(path.read_text())
        old = int(config["limit"])
        config["limit"] = self.limit if limit is None else limit
        path.write_text(json.dumps(config))
        return old

    async def live_limit(self, http: httpx.AsyncClient, member: str) -> int | None:
        """What node ``member``'s ``/limits`` says."""
        try:
            r = await http.get(f"{self.endpoint(member).client_url}/limits", timeout=1.0)
            return int(r.json()["limit"]) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    # --- the workload -------------------------------------------------------------------
    def workload(self, http: httpx.AsyncClient, *, rate_hz: float, clock: Callable[[], float], seed: int,
                 on_sample: Callable[[WorkloadWindow, float], Any]) -> LimiterWorkload:
        """Clients at known rates on known keys, judged for over-admission and wrongful rejection."""
        return LimiterWorkload(http, [self.endpoint(n).client_url for n in self.limiters()], rate_hz=rate_hz,
                               limit=self.limit, window_s=self.window_s,
                               tolerance=float(self.settings["wrongful_rejection_tolerance"]), clock=clock,
                               seed=seed, timeout_s=float(self.settings["redis_timeout_s"]) + 0.5,
                               on_sample=on_sample)

    # --- the operator's side ------------------------------------------------------------
    def operator_tools(self, bin_dir: Path) -> dict[str, str]:
        """``redis-cli`` (aimed at the primary the Sentinels name, unless told otherwise) and
        ``rlctl`` (the nodes' admin routes) on the PATH, configured by their environment."""
        bin_dir.mkdir(parents=True, exist_ok=True)
        real = shutil.which("redis-cli", path="/usr/bin:/usr/local/bin:" + os.environ.get("PATH", "")) or "redis-cli"
        cli = bin_dir / "redis-cli"
        cli.write_text(_REDIS_CLI.format(real=real))
        from opeval.sandbox import interpreter  # the Python the sandbox can run (its nodectl's)

        rlctl = bin_dir / "rlctl"  # standard library only: it starts in milliseconds
        rlctl.write_text(f"#!{interpreter()[0]} -I\n" + RLCTL_PY.read_text())
        for tool in (cli, rlctl):
            tool.chmod(0o755)
        ep = {e.name: e.client_url.split("://", 1)[1] for e in self._endpoints}
        return {
            "RATELIMITER_NODES": ",".join(f"{n}={self.endpoint(n).client_url}" for n in self.limiters()),
            "RATELIMITER_SENTINELS": ",".join(ep[s] for s in SENTINELS if s in ep),
            "RATELIMITER_REDIS": ",".join(f"{n}={ep[n]}" for n in REDIS if n in ep),
            "RATELIMITER_SERVICE": self.service,
        }

    def operator_guide(self) -> str:
        """The page's words about the rate limiter's tools."""
        return ("`redis-cli` talks to the Redis primary the Sentinels name (pass -p for another server: "
                "`rlctl topology` lists them); `redis-cli -p <sentinel port> SENTINEL ...` asks a Sentinel; "
                "`rlctl` shows and changes the limiter nodes (nodes, limits, counters, blocks, reset).")

    async def runbook(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """The rate limiter's runbook (see :mod:`opeval.subjects.ratelimiter._runbook`)."""
        from opeval.subjects.ratelimiter._runbook import run_runbook

        return await run_runbook(incident, tools, self.limit)

    def command_rules(self) -> dict[str, CommandRule]:
        """``redis-cli`` by command, ``rlctl`` by subcommand."""
        return dict(COMMAND_RULES)


_REDIS_CLI = """#!/bin/sh
# redis-cli for this rate limiter: with no -h/-p/-u it talks to the primary the Sentinels name.
for a in "$@"; do case "$a" in -h|-p|-u) exec {real} "$@";; esac; done
for s in $(echo "$RATELIMITER_SENTINELS" | tr , ' '); do
  addr=$({real} -h "${{s%:*}}" -p "${{s##*:}}" --raw SENTINEL get-master-addr-by-name "$RATELIMITER_SERVICE" 2>/dev/null)
  host=$(echo "$addr" | sed -n 1p); port=$(echo "$addr" | sed -n 2p)
  if [ -n "$port" ]; then exec {real} -h "$host" -p "$port" "$@"; fi
done
echo "redis-cli: no Sentinel named a primary; pass -p PORT (rlctl topology lists the servers)" >&2
exit 1
"""
