"""The rate-limiter node opeval ships: a small HTTP service sharing its counters in Redis.

Each node answers ``/check?key=K``: a sliding window per key, kept in a Redis sorted set
and updated by one atomic Lua script (prune what left the window, count, add), timed by
Redis's own clock so every node judges alike. Management routes: ``/health``, ``/nodes``
(nodes register themselves with heartbeats), ``/counters``, ``/limits``, ``/blocks`` and
``/reset``. It finds the Redis primary through Sentinel and follows a failover.

Run as a process: ``python _service.py --name N --port P --sentinels H:P,... --config F``.
It imports only the standard library and ``redis`` (it starts once per member).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from redis.sentinel import Sentinel

#: KEYS[1]: the key's window; KEYS[2]: the blocked keys. ARGV: window (µs), limit, this
#: request's id, expiry (ms). Returns {admitted 0/1, count in the window, Redis time µs};
#: a blocked key answers count -1.
CHECK_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if redis.call('SISMEMBER', KEYS[2], KEYS[1]) == 1 then return {0, -1, now} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. now)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, n + 1, now}
end
return {0, n, now}
"""
COUNTER_PREFIX = "rl:c:"
BLOCKS = "rl:blocks"
NODES = "rl:nodes"
HEARTBEAT_S = 0.25


class RoutedSentinel(Sentinel):
    """Sentinel discovery, with addresses rewritten through ``routes`` (the fault proxy's
    fronts, when the harness plans them); remembers the primary it last found."""

    def __init__(self, sentinels: list[tuple[str, int]], routes: dict[str, tuple[str, int]], **kw: Any) -> None:
        super().__init__(sentinels, **kw)
        self.routes = routes
        self.primary = ""

    def discover_master(self, service_name: str) -> tuple[str, int]:
        host, port = super().discover_master(service_name)
        self.primary = f"{host}:{port}"
        return self.routes.get(self.primary, (host, port))

    def discover_slaves(self, service_name: str) -> list[tuple[str, int]]:
        return [self.routes.get(f"{h}:{p}", (h, p)) for h, p in super().discover_slaves(service_name)]


def _addr(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Node:
    """One limiter node: its settings, its Redis client and its heartbeat."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.name = args.name
        self.config_path = args.config
        with open(args.config) as f:
            config = json.load(f)
        self.config = config
        self.limit = int(config["limit"])
        self.window_s = float(config["window_s"])
        self.service = config.get("service", "opeval")
        routes = {}
        for pair in filter(None, (args.routes or "").split(",")):
            real, front = pair.split("=")
            routes[real] = _addr(front)
        timeout = float(config.get("redis_timeout_s", 0.5))
        sentinels = [routes.get(s, _addr(s)) for s in args.sentinels.split(",")]
        self.sentinel = RoutedSentinel(sentinels, routes, socket_timeout=timeout,
                                       sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout,
                                                        "client_name": self.name})
        self.redis = self.sentinel.master_for(self.service, socket_timeout=timeout, socket_connect_timeout=timeout,
                                              client_name=self.name, retry_on_timeout=False)
        self.script = self.redis.register_script(CHECK_SCRIPT)
        self.started = time.time()
        self.seq = 0
        self.lock = threading.Lock()
        self.last_beat = 0.0
        self.beat_error = "no heartbeat yet"
        self.redis_ms: float | None = None
        self.evicted = 0

    def save_limits(self) -> None:
        """Keep a changed limit across restarts: it is written back to the node's config file."""
        self.config.update(limit=self.limit, window_s=self.window_s)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)

    def heartbeat_forever(self, stop: threading.Event) -> None:
        """Every :data:`HEARTBEAT_S`: register this node in Redis (a write), time a PING and
        read the eviction count; ``/health`` answers from what the last beats found, so it
        answers at once however Redis is doing."""
        while not stop.is_set():
            reached = False
            try:
                t0 = time.perf_counter()
                self.redis.ping()
                self.redis_ms = round((time.perf_counter() - t0) * 1000, 3)
                self.evicted = int(self.redis.info("stats").get("evicted_keys", 0))
                reached = True
                self.redis.hset(NODES, self.name, json.dumps({"ts": time.time(), "limit": self.limit,
                                                              "window_s": self.window_s}))
                self.last_beat, self.beat_error = time.time(), ""
            except redis.RedisError as e:
                why = f"{type(e).__name__}: {e}"[:160]
                self.beat_error = f"writes failing: {why}" if reached else f"disconnected: {why}"
            stop.wait(HEARTBEAT_S)

    def check(self, key: str) -> dict[str, Any]:
        with self.lock:
            self.seq += 1
            rid = f"{self.name}:{self.seq}"
        admitted, count, now_us = self.script(
            keys=[COUNTER_PREFIX + key, BLOCKS],
            args=[int(self.window_s * 1_000_000), self.limit, rid, int(self.window_s * 2000) + 1000])
        return {"allowed": bool(admitted), "count": int(count), "limit": self.limit, "window_s": self.window_s,
                "time_us": int(now_us), "blocked": int(count) == -1, "node": self.name}

    def health(self) -> tuple[int, dict[str, Any]]:
        """200 while the last heartbeats reached Redis and wrote to it; 503 with the reason otherwise."""
        now = time.time()
        ok = bool(self.last_beat) and now - self.last_beat <= 4 * HEARTBEAT_S
        body: dict[str, Any] = {"node": self.name, "limit": self.limit, "window_s": self.window_s,
                                "uptime_s": round(now - self.started, 3), "primary": self.sentinel.primary,
                                "redis": "ok" if ok else (self.beat_error or (
                                    "heartbeat stale: Redis not answering" if self.last_beat else "no heartbeat yet")),
                                "redis_ms": self.redis_ms, "evicted_keys": self.evicted,
                                "heartbeat_age_s": round(now - self.last_beat, 3) if self.last_beat else None}
        return (200 if ok else 503), body


class Handler(BaseHTTPRequestHandler):
    """The routes."""

    node: Node
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body leave in two writes: without this, Nagle and delayed ACKs add ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request would drown the member's log

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}") if n else {}

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        node = self.node
        try:
            if url.path == "/health":
                self._send(*node.health())
            elif url.path == "/check":
                key = q.get("key") or node_key_from(self._body() if method == "POST" else {})
                if not key:
                    self._send(400, {"error": "key required"})
                    return
                result = node.check(key)
                self._send(200 if result["allowed"] else 429, result)
            elif url.path == "/nodes":
                now = time.time()
                nodes = {n.decode(): json.loads(v) for n, v in node.redis.hgetall(NODES).items()}
                self._send(200, {n: {**v, "age_s": round(now - v["ts"], 3)} for n, v in sorted(nodes.items())})
            elif url.path == "/counters":
                self._send(200, self._counters(q.get("key")))
            elif url.path == "/limits":
                if method == "POST":
                    body = self._body()
                    node.limit = int(body.get("limit", node.limit))
                    node.window_s = float(body.get("window_s", node.window_s))
                    node.save_limits()
                self._send(200, {"node": node.name, "limit": node.limit, "window_s": node.window_s})
            elif url.path == "/blocks":
                if method == "POST":
                    node.redis.sadd(BLOCKS, COUNTER_PREFIX + q["key"])
                elif method == "DELETE":
                    node.redis.srem(BLOCKS, COUNTER_PREFIX + q["key"])
                blocked = sorted(b.decode().removeprefix(COUNTER_PREFIX) for b in node.redis.smembers(BLOCKS))
                self._send(200, {"blocked": blocked})
            elif url.path == "/reset" and method == "POST":
                keys = [COUNTER_PREFIX + q["key"]] if q.get("key") else list(node.redis.scan_iter(COUNTER_PREFIX + "*"))
                self._send(200, {"reset": node.redis.delete(*keys) if keys else 0})
            else:
                self._send(404, {"error": f"no route {method} {url.path}"})
        except redis.RedisError as e:
            self._send(503, {"error": f"redis: {type(e).__name__}: {e}"[:300], "node": node.name})
        except (KeyError, ValueError) as e:
            self._send(400, {"error": f"bad request: {e}"})

    def _counters(self, key: str | None) -> dict[str, int]:
        node = self.node
        now_us = int(time.time() * 1_000_000)
        keys = [COUNTER_PREFIX + key] if key else sorted(k.decode() for k in node.redis.scan_iter(COUNTER_PREFIX + "*"))
        pipe = node.redis.pipeline(transaction=False)
        for k in keys:
            pipe.zcount(k, now_us - int(node.window_s * 1_000_000), "+inf")
        return {k.removeprefix(COUNTER_PREFIX): int(n) for k, n in zip(keys, pipe.execute(), strict=True)}

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def node_key_from(body: dict[str, Any]) -> str:
    return str(body.get("key") or "")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ratelimiter-node")
    p.add_argument("--name", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sentinels", required=True, help="host:port,... of the Sentinels")
    p.add_argument("--config", required=True, help="JSON: limit, window_s, service")
    p.add_argument("--routes", default="", help="real=front,... address rewrites (the fault proxy)")
    args = p.parse_args(argv)
    node = Node(args)
    handler = type("NodeHandler", (Handler,), {"node": node})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    stop = threading.Event()
    threading.Thread(target=node.heartbeat_forever, args=(stop,), daemon=True).start()

    def on_term(signum: int, frame: Any) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    print(f"{node.name}: limit {node.limit} per {node.window_s:g}s, listening on {args.host}:{args.port}", flush=True)
    server.serve_forever(poll_interval=0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
