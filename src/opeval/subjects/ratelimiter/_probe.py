"""The harness's view of Redis and Sentinel: one short-timeout probe per member."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError


@contextlib.asynccontextmanager
async def connect(url: str, timeout_s: float) -> AsyncIterator[aioredis.Redis]:
    """A one-connection client for ``redis://host:port``, closed on leaving."""
    u = urlsplit(url)
    client = aioredis.Redis(host=u.hostname or "127.0.0.1", port=u.port or 6379, socket_timeout=timeout_s,
                            socket_connect_timeout=timeout_s, single_connection_client=True,
                            client_name="opeval-harness")
    try:
        yield client
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled probe still closes its socket
            await client.aclose()


async def redis_info(url: str, timeout_s: float) -> dict[str, Any]:
    """``INFO replication``, ``stats`` and ``memory`` of one Redis server; ``{"_error": ...}`` if it
    does not answer."""
    try:
        async with connect(url, timeout_s) as r:
            info: dict[str, Any] = {}
            for section in ("replication", "stats", "memory"):
                info.update(await r.info(section))
            return info
    except (RedisError, OSError) as e:
        return {"_error": type(e).__name__}


async def sentinel_view(url: str, service: str, timeout_s: float) -> dict[str, Any]:
    """What one Sentinel says: the primary's address, and whether it has quorum."""
    try:
        async with connect(url, timeout_s) as r:
            addr = await r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", service)
            try:
                await r.execute_command("SENTINEL", "CKQUORUM", service)
                quorum, why = True, ""
            except ResponseError as e:
                quorum, why = False, str(e)[:120]
            primary = f"{_text(addr[0])}:{_text(addr[1])}" if addr else ""
            return {"primary": primary, "quorum": quorum, "quorum_error": why}
    except (RedisError, OSError) as e:
        return {"_error": type(e).__name__}


async def command(url: str, timeout_s: float, *args: Any) -> Any:
    """Run one command on ``url`` (for faults and their reverts)."""
    async with connect(url, timeout_s) as r:
        return await r.execute_command(*args)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
