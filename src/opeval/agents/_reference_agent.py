"""``opeval-agent``: the reference command-line agent. Its tools come from an MCP server
(streamable HTTP), its model from an OpenAI-compatible chat completions API.

    opeval-agent [--mcp-url URL] [--base-url URL] [--model M] [--tool-choice auto|required|shell|done]
                 [--max-turns N] [--max-tokens N] [--temperature T]

Each setting defaults to its ``OPEVAL_*`` variable (``OPEVAL_MCP_URL``, ``OPEVAL_BASE_URL``,
``OPEVAL_MODEL``...), which the command agent sets from the variant; the page is
``$OPEVAL_PROMPT``, the key the variable ``$OPEVAL_API_KEY_ENV`` names (none for a local
server). It lists the tools over MCP, offers them to the model, runs the model's tool calls
over MCP, and stops when ``done`` is called or after the last turn. A tool's name as
``--tool-choice`` offers only that tool and asks for ``required``: llama.cpp's server then
constrains the answer to a call of it.

What it prints is what the harness records as its reasoning. Standard library only: it
runs with the sandbox's system Python.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

#: What a model that answered without calling a tool is told.
REMINDER = ("You answered without calling a tool. Act only through the tools: call `shell` with "
            '{"command": "..."} to run a command, or `done` with {"summary": "...", "resolved": true|false}.')


def say(text: str) -> None:
    """One line of reasoning (stdout is recorded)."""
    print(text, flush=True)


def post(url: str, body: dict[str, Any], headers: dict[str, str], timeout: float) -> tuple[dict[str, Any], Any]:
    """POST JSON; the JSON answer (the first event of a server-sent stream) and the headers."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - the URLs it was given
        text = resp.read().decode()
        kind = resp.headers.get("Content-Type", "")
        if kind.startswith("text/event-stream"):
            text = "\n".join(line[5:].lstrip() for line in text.splitlines() if line.startswith("data:"))
        return (json.loads(text) if text.strip() else {}), resp.headers


class MCP:
    """A minimal MCP client over streamable HTTP (JSON-RPC over POST)."""

    def __init__(self, url: str) -> None:
        self.url, self.next_id, self.headers = url, 0, {}  # type: ignore[var-annotated]

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            body["params"] = params
        answer, headers = post(self.url, body, self.headers, timeout=3600)
        if headers.get("Mcp-Session-Id"):
            self.headers["Mcp-Session-Id"] = headers["Mcp-Session-Id"]
        if "error" in answer:
            raise RuntimeError(f"MCP {method}: {answer['error'].get('message')}")
        return answer.get("result") or {}

    def start(self) -> None:
        result = self.request("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                             "clientInfo": {"name": "opeval-agent", "version": "1"}})
        self.headers["MCP-Protocol-Version"] = result.get("protocolVersion", "2025-06-18")
        post(self.url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, self.headers, timeout=60)

    def tools(self) -> list[dict[str, Any]]:
        return list(self.request("tools/list").get("tools") or [])

    def call(self, name: str, arguments: Any) -> tuple[str, bool]:
        try:
            result = self.request("tools/call", {"name": name, "arguments": arguments})
        except RuntimeError as e:
            return str(e), True
        text = "\n".join(c.get("text", "") for c in result.get("content") or [] if c.get("type") == "text")
        return text, bool(result.get("isError"))


def settings(argv: list[str]) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="opeval-agent", description="The reference command-line agent.")
    p.add_argument("--mcp-url", default=env("OPEVAL_MCP_URL"))
    p.add_argument("--base-url", default=env("OPEVAL_BASE_URL"))
    p.add_argument("--model", default=env("OPEVAL_MODEL"))
    p.add_argument("--tool-choice", default=env("OPEVAL_TOOL_CHOICE", "auto"),
                   choices=("auto", "required", "shell", "done"))
    p.add_argument("--max-turns", type=int, default=int(env("OPEVAL_MAX_TURNS") or 20))
    p.add_argument("--max-tokens", type=int, default=int(env("OPEVAL_MAX_TOKENS") or 1024))
    p.add_argument("--temperature", type=float, default=float(env("OPEVAL_TEMPERATURE") or -1))
    p.add_argument("--request-timeout", type=float, default=float(env("OPEVAL_REQUEST_TIMEOUT_S") or 120))
    a = p.parse_args(argv)
    if not a.mcp_url or not a.base_url or not a.model:
        p.error("needs --mcp-url, --base-url and --model (or OPEVAL_MCP_URL, OPEVAL_BASE_URL, OPEVAL_MODEL)")
    return a


def main(argv: list[str]) -> int:
    """Work the incident; exit 0 after ``done``, 1 after the last turn, 2 on a broken setting."""
    a = settings(argv)
    mcp = MCP(a.mcp_url)
    mcp.start()
    listed = mcp.tools()
    offered = [t for t in listed if t["name"] == a.tool_choice] or listed
    say(f"tools: {', '.join(t['name'] for t in listed)}; offering {', '.join(t['name'] for t in offered)}")
    tools = [{"type": "function", "function": {"name": t["name"], "description": t.get("description", ""),
                                               "parameters": t.get("inputSchema") or {"type": "object"}}}
             for t in offered]
    key = os.environ.get(os.environ.get("OPEVAL_API_KEY_ENV") or "OPENAI_API_KEY") or "unused"
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": os.environ.get("OPEVAL_SYSTEM_PROMPT") or "You are the on-call operator."},
        {"role": "user", "content": os.environ.get("OPEVAL_PROMPT") or "The cluster is unhealthy: repair it."}]
    for turn in range(1, a.max_turns + 1):
        body: dict[str, Any] = {"model": a.model, "messages": messages, "tools": tools, "max_tokens": a.max_tokens,
                                "tool_choice": "auto" if a.tool_choice == "auto" else "required"}
        if a.temperature >= 0:
            body["temperature"] = a.temperature
        try:
            answer, _ = post(a.base_url.rstrip("/") + "/chat/completions", body,
                             {"Authorization": f"Bearer {key}"}, timeout=a.request_timeout)
        except urllib.error.HTTPError as e:
            say(f"turn {turn}: the model server answered {e.code}: {e.read().decode(errors='replace')[:300]}")
            messages.append({"role": "user", "content": REMINDER})
            continue
        except OSError as e:
            say(f"turn {turn}: the model server is unreachable: {e}")
            return 1
        message = (answer.get("choices") or [{}])[0].get("message") or {}
        usage = answer.get("usage") or {}
        say(f"turn {turn}: {usage.get('prompt_tokens', '?')} tokens in, {usage.get('completion_tokens', '?')} out")
        if message.get("content"):
            say(message["content"])
        calls = message.get("tool_calls") or []
        messages.append({"role": "assistant", "content": message.get("content") or "",
                         **({"tool_calls": calls} if calls else {})})
        if not calls:
            messages.append({"role": "user", "content": REMINDER})
            continue
        for call in calls:
            fn = call.get("function") or {}
            name, raw = fn.get("name", ""), fn.get("arguments") or "{}"
            try:
                arguments = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError as e:
                arguments, problem = None, f"not valid JSON ({e})"
            else:
                problem = "" if isinstance(arguments, dict) else "not a JSON object"
            if problem:  # MCP carries arguments as an object: this call cannot be made, the model is told
                text = f"{name}: the arguments are {problem}: {raw!s:.200}"
                say(f"not calling {name}: {text}")
                messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": "ERROR " + text})
                continue
            say(f"calling {name} {raw if isinstance(raw, str) else json.dumps(raw)}")
            text, is_error = mcp.call(name, arguments)
            say(("ERROR " if is_error else "") + text[:2000])
            messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "content": text})
            if name == "done" and not is_error:
                return 0
    say(f"stopped after {a.max_turns} turns")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
