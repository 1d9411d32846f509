"""``rlctl``: the rate limiter's admin command (the nodes' management routes).

    rlctl topology                      every node, Redis server and Sentinel, with its address
    rlctl nodes                         each node's health: Redis link, primary, limit, latency
    rlctl limits [NODE]                 limits per node;  rlctl limits set NODE|all LIMIT
    rlctl counters [KEY]                requests in the current window, per key
    rlctl check KEY                     one request through the first node that answers
    rlctl blocks [add|rm KEY]           blocked keys (always rejected)
    rlctl reset [KEY]                   empty one key's window (or every window)

Configured by its environment (``RATELIMITER_NODES`` ...). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 2.0


def _nodes() -> dict[str, str]:
    return dict(p.split("=", 1) for p in os.environ.get("RATELIMITER_NODES", "").split(",") if p)


def _call(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:  # noqa: S310 - the cluster's own URLs
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
    except (urllib.error.URLError, OSError) as e:
        return 0, {"error": f"unreachable: {getattr(e, 'reason', e)}"}


def _first(path: str, method: str = "GET") -> tuple[int, Any]:
    last: tuple[int, Any] = (0, {"error": "no nodes configured"})
    for url in _nodes().values():
        last = _call(url + path, method)
        if last[0] and last[0] < 500:
            return last
    return last


def main(argv: list[str]) -> int:
    """Run one subcommand; exit 0 on success, 1 if a node failed, 2 on bad usage."""
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1] if argv else __doc__, file=sys.stderr if not argv else sys.stdout)
        return 0 if argv else 2
    sub, rest = argv[0], argv[1:]
    nodes = _nodes()
    if sub == "topology":
        for n, url in nodes.items():
            print(f"{n:<12} node      {url}")
        for pair in filter(None, os.environ.get("RATELIMITER_REDIS", "").split(",")):
            n, addr = pair.split("=", 1)
            print(f"{n:<12} redis     {addr}")
        for i, addr in enumerate(filter(None, os.environ.get("RATELIMITER_SENTINELS", "").split(",")), 1):
            print(f"{'sentinel-' + str(i):<12} sentinel  {addr}   (master name {os.environ.get('RATELIMITER_SERVICE')})")
        return 0
    if sub in ("nodes", "health"):
        bad = 0
        print(f"{'NODE':<12} {'STATUS':<7} {'PRIMARY':<16} {'LIMIT':>5} {'WINDOW':>6} {'REDIS_MS':>8}  REDIS")
        for n, url in nodes.items():
            code, b = _call(url + "/health")
            b = b or {}
            bad += code != 200
            print(f"{n:<12} {code or 'down'!s:<7} {b.get('primary', '-')!s:<16} {b.get('limit', '-')!s:>5} "
                  f"{b.get('window_s', '-')!s:>6} {b.get('redis_ms', '-')!s:>8}  {b.get('redis', b.get('error', ''))}")
        code, registered = _first("/nodes")
        if code == 200:
            print("registered: " + ", ".join(f"{n} (heartbeat {v['age_s']:.1f}s ago, limit {v['limit']})"
                                             for n, v in registered.items()))
        return 1 if bad else 0
    if sub == "limits":
        if rest[:1] == ["set"]:
            if len(rest) != 3 or not rest[2].isdigit():
                print("usage: rlctl limits set NODE|all LIMIT", file=sys.stderr)
                return 2
            targets = nodes if rest[1] == "all" else {rest[1]: nodes.get(rest[1], "")}
            if not all(targets.values()):
                print(f"rlctl: no node {rest[1]!r} (rlctl topology lists them)", file=sys.stderr)
                return 2
            failed = 0
            for n, url in targets.items():
                code, b = _call(url + "/limits", "POST", {"limit": int(rest[2])})
                failed += code != 200
                print(f"{n}: {b}")
            return 1 if failed else 0
        failed = 0
        for n, url in nodes.items():
            if rest and n != rest[0]:
                continue
            code, b = _call(url + "/limits")
            failed += code != 200
            print(f"{n:<12} " + (f"limit {b['limit']} per {b['window_s']}s" if code == 200 else str(b)))
        return 1 if failed else 0
    if sub == "counters":
        code, b = _first("/counters" + (f"?key={urllib.parse.quote(rest[0])}" if rest else ""))
        for k, v in (b.items() if code == 200 else []):
            print(f"{v:>6}  {k}")
        if code != 200:
            print(b, file=sys.stderr)
        return 0 if code == 200 else 1
    if sub == "check" and rest:
        code, b = _first(f"/check?key={urllib.parse.quote(rest[0])}")
        print(b)
        return 0 if code in (200, 429) else 1
    if sub == "blocks":
        if rest[:1] in (["add"], ["rm"]) and len(rest) == 2:
            code, b = _first(f"/blocks?key={urllib.parse.quote(rest[1])}", "POST" if rest[0] == "add" else "DELETE")
        else:
            code, b = _first("/blocks")
        print(b)
        return 0 if code == 200 else 1
    if sub == "reset":
        code, b = _first("/reset" + (f"?key={urllib.parse.quote(rest[0])}" if rest else ""), "POST")
        print(b)
        return 0 if code == 200 else 1
    print(f"rlctl: unknown subcommand {sub!r} (rlctl --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
