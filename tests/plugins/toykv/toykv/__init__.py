"""toykv: N members, each keeping keys as files; a client writes to all and trusts a majority."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx

from opeval.events import ClusterState, MemberEndpoint, MemberState
from opeval.runtimes import MemberSpec, Runtime
from opeval.subjects import SubjectBase
from opeval.workload import KeyValueWorkload


class ToyClient:
    """Writes go to every member and count once a majority took them; reads ask every member."""

    def __init__(self, http: httpx.AsyncClient, urls: list[str]) -> None:
        self.http, self.urls = http, urls

    async def _all(self, method: str, path: str, body: str | None = None) -> list[httpx.Response]:
        answers: list[httpx.Response] = []

        async def one(url: str) -> None:
            try:
                answers.append(await self.http.request(method, url + path, content=body, timeout=0.5))
            except httpx.HTTPError:
                pass

        async with anyio.create_task_group() as tg:
            for url in self.urls:
                tg.start_soon(one, url)
        if len(answers) <= len(self.urls) // 2:
            raise ConnectionError(f"only {len(answers)} of {len(self.urls)} members answered")
        return answers

    async def put(self, key: str, value: str) -> None:
        ok = [r for r in await self._all("PUT", f"/kv/{key}", value) if r.status_code == 204]
        if len(ok) <= len(self.urls) // 2:
            raise ConnectionError("no majority took the write")

    async def get(self, key: str) -> str | None:
        values = Counter(r.text for r in await self._all("GET", f"/kv/{key}") if r.status_code == 200)
        return values.most_common(1)[0][0] if values else None

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        merged: dict[str, str] = {}
        for r in await self._all("GET", f"/kv?prefix={prefix}"):
            merged.update(r.json())
        return merged


class ToyKV(SubjectBase):
    """The subject: members are local processes of ``server.py``."""

    name = "toykv"
    chaos_kinds = ("node_kill", "pause")

    def plan(self, runtime: Runtime, count: int, cluster_token: str, *, peer_fronts: bool = False) -> list[MemberSpec]:
        names, ports = self.member_names(count), runtime.allocate_ports(count)
        self._endpoints = [MemberEndpoint(name=n, client_url=f"http://{runtime.address(n)}:{p}", peer_url="")
                           for n, p in zip(names, ports, strict=True)]
        server = str(Path(__file__).with_name("server.py"))
        specs = []
        for e, port in zip(self._endpoints, ports, strict=True):
            home = runtime.member_dir(e.name)
            specs.append(MemberSpec(name=e.name, argv=[sys.executable, server, f"--port={port}",
                                                       f"--data-dir={home / 'data'}"],
                                    env={}, cwd=str(home), log_path=str(home / "member.log"),
                                    data_dir=str(home / "data")))
        return specs

    async def observe(self, http: httpx.AsyncClient, running: dict[str, bool]) -> ClusterState:
        states: dict[str, MemberState] = {}

        async def one(e: MemberEndpoint) -> None:
            try:
                r = await http.get(e.client_url + "/health", timeout=0.3)
                states[e.name] = MemberState(name=e.name, process_up=running.get(e.name, False), reachable=True,
                                             healthy=r.status_code == 200, error=None if r.status_code == 200
                                             else f"HTTP {r.status_code}")
            except httpx.HTTPError as exc:
                states[e.name] = MemberState(name=e.name, process_up=running.get(e.name, False),
                                             error=type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for e in self._endpoints:
                tg.start_soon(one, e)
        members = [states[e.name] for e in self._endpoints]
        return ClusterState(members=members, healthy=sum(m.healthy for m in members), expected=len(members))

    def recovery_unmet(self, baseline: ClusterState, now: ClusterState) -> list[str]:
        healthy = {m.name for m in now.members if m.healthy}
        return [f"{m.name} unhealthy" for m in baseline.members if m.name not in healthy]

    async def write_read_probe(self, http: httpx.AsyncClient) -> str | None:
        client = self.client(http)
        try:
            await client.put("probe", "1")
            return None if await client.get("probe") == "1" else "probe read back something else"
        except ConnectionError as e:
            return f"probe failed: {e}"

    def client(self, http: httpx.AsyncClient) -> ToyClient:
        return ToyClient(http, [e.client_url for e in self._endpoints])

    def workload(self, http: httpx.AsyncClient, **settings: Any) -> KeyValueWorkload:
        return KeyValueWorkload(self.client(http), **settings)
