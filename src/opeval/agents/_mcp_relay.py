"""``opeval-mcp``: the trial's MCP server over stdio, for agents that only spawn stdio servers.

    opeval-mcp [URL]        (default: $OPEVAL_MCP_URL)

It relays newline-delimited JSON-RPC between its stdin/stdout and the trial's streamable
HTTP endpoint, one message at a time. Standard library only: it runs with the sandbox's
system Python, copied onto the sandbox's tool PATH.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

#: Seconds one call may take (a shell command is bounded by the harness long before this).
TIMEOUT_S = 3600


def _error(msg_id: object, text: str) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": text}}


def _events(body: str) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream."""
    out, data = [], []
    for line in body.splitlines():
        if line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line.strip() and data:
            out.append("\n".join(data))
            data = []
    if data:
        out.append("\n".join(data))
    return out


def relay(url: str, line: str, state: dict[str, str]) -> list[str]:
    """POST one message; the messages to write back (none for a notification)."""
    try:
        message = json.loads(line)
    except ValueError as e:
        return [json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": f"parse error: {e}"}})]
    msg_id = message.get("id") if isinstance(message, dict) else None
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if state.get("version"):
        headers["MCP-Protocol-Version"] = state["version"]
    request = urllib.request.Request(url, data=line.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:  # noqa: S310 - the trial's own endpoint
            body = resp.read().decode()
            kind = resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace")
        try:
            answer = json.loads(body)
            if isinstance(answer, dict) and "error" in answer:
                answer["id"] = msg_id
                return [json.dumps(answer)] if msg_id is not None else []
        except ValueError:
            pass
        return [json.dumps(_error(msg_id, f"HTTP {e.code}: {body[:500]}"))] if msg_id is not None else []
    except (OSError, urllib.error.URLError) as e:
        return [json.dumps(_error(msg_id, f"the trial's MCP endpoint is unreachable: {e}"))] if msg_id is not None else []
    answers = _events(body) if kind.startswith("text/event-stream") else ([body] if body.strip() else [])
    for text in answers:
        try:
            result = json.loads(text).get("result") or {}
        except (ValueError, AttributeError):
            continue
        if isinstance(result, dict) and isinstance(result.get("protocolVersion"), str):
            state["version"] = result["protocolVersion"]
    return [json.dumps(json.loads(a)) for a in answers]  # one line each


def main(argv: list[str]) -> int:
    """Relay until stdin closes."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 0
    url = argv[0] if argv else os.environ.get("OPEVAL_MCP_URL", "")
    if not url:
        print("opeval-mcp: give the endpoint's URL (or set OPEVAL_MCP_URL)", file=sys.stderr)
        return 2
    state: dict[str, str] = {}
    for line in sys.stdin:
        if not line.strip():
            continue
        for out in relay(url, line.strip(), state):
            sys.stdout.write(out + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
