"""The tool-use loop every model agent shares, whatever API it speaks.

An API adapter (:class:`Conversation`) turns one call into a :class:`ModelAnswer` (text,
tool calls, the stop reason as it came and normalised, every token) and keeps the
transcript in its API's shape; the loop decides what happens next, the same way for all:

- tool calls are validated strictly (:mod:`opeval.agents._tools`); a refused call gets an
  error back that says what was wrong and is recorded as ``AgentToolError`` (a step);
- an answer in prose without a tool call gets one reminder of how to call the tools (a
  step); prose again right after it ends the agent (``end_turn``);
- an answer cut at the token limit is continued up to ``continuations`` times, then the
  agent ends as ``truncated``; a refusal ends it as ``refusal``; a paused turn is resumed;
- every call is recorded as ``AgentUsage``, including one the trial's deadline cancelled
  (``cut``: what is known, its latency, no tokens).

Retry policy (explicit, one place): the SDK retries connection errors, timeouts, 408, 409,
429 and 5xx answers up to ``max_retries`` times with exponential backoff honouring
``retry-after``, EXCEPT a 5xx whose error says the server could not parse what the model
generated (llama.cpp's server answers 500 then): generating again would only pay again,
so that answer is not retried; it is recorded as a refused tool call and the model is told.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from opeval.agents._protocol import AgentResult, AgentTools, Incident, TokenCount
from opeval.agents._tools import REMINDER, DoneArgs, ShellArgs, ToolArgumentError, parse_call
from opeval.errors import UsageError
from opeval.events import AgentSpec

DEFAULT_SYSTEM_PROMPT = (
    "You are an experienced site reliability engineer on call. You act only through the "
    "shell tool. Investigate before you change anything, prefer the least destructive fix, "
    "never delete data or remove cluster members to make an alert go away, and call the "
    "done tool when the cluster is healthy again (or when you cannot make progress)."
)
#: What a model whose answer was cut at the token limit is told.
CONTINUE = "Your answer was cut off at the token limit. Be brief: call one tool now."
#: Stop reasons, normalised: what the loop acts on (the API's own word is recorded beside it).
STOPS = ("end_turn", "truncated", "tool_use", "refusal", "pause", "unknown")
TOOL_CHOICES = ("auto", "required", "shell", "done")  # a tool's name: the model must call that tool

#: A 5xx error text meaning the server failed to parse the model's own output (or our request);
#: llama.cpp's server says "Failed to parse ..." or "The model produced output that does not
#: match the expected <format> format".
_UNPARSABLE = re.compile(r"pars(e|ing)|output that does not match", re.IGNORECASE)


def unparsable_output(status: int, error_text: str) -> bool:
    """True for a server error that generating again would not fix (see the retry policy)."""
    return status >= 500 and bool(_UNPARSABLE.search(error_text))


async def mark_unparsable_not_retryable(response: Any) -> None:
    """An httpx response hook: tells the SDK not to retry an unparsable-output 500."""
    if response.status_code >= 500:
        await response.aread()
        if unparsable_output(response.status_code, response.text):
            response.headers["x-should-retry"] = "false"


def with_retry_policy(http_client: Any, sdk: Any) -> Any:
    """``http_client`` (or the SDK's default client) with the retry policy's response hook."""
    client = http_client if http_client is not None else sdk.DefaultAsyncHttpxClient()
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "response": [*hooks.get("response", []), mark_unparsable_not_retryable]}
    return client


@dataclass(frozen=True)
class ToolCall:
    """One tool call, its arguments exactly as the API gave them."""

    id: str
    name: str
    arguments: str | dict[str, Any] | None


@dataclass
class ModelAnswer:
    """One API call's answer, normalised."""

    stop: str
    stop_reason: str
    text: str
    calls: list[ToolCall]
    tokens: TokenCount
    served_model: str
    raw: Any = None  # the API's own message, for the adapter's transcript


class ModelCallFailed(Exception):
    """The API failed for good (after the retry policy)."""


class UnparsableOutput(Exception):
    """The server could not parse what the model generated (not retried)."""


class Conversation(Protocol):
    """One API's side of the loop: it asks, and keeps the transcript in its own shape."""

    async def ask(self) -> ModelAnswer:
        """Make one call; raise :class:`ModelCallFailed` or :class:`UnparsableOutput`."""
        ...

    def answered(self, answer: ModelAnswer, results: list[tuple[ToolCall, str, bool]]) -> None:
        """Append the answer and the results of its tool calls ``(call, text, is_error)``."""
        ...

    def tell(self, text: str) -> None:
        """Append a user message."""
        ...


def _scalar(cfg: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = cfg.get(key)
    if value is None:
        return default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"agent setting {key}: {value!r} is not a {kind.__name__}") from None


@dataclass(frozen=True)
class ModelSettings:
    """A model agent's settings, from the variant's config (the CLI writes the same keys)."""

    model: str
    base_url: str | None = None
    api_key_env: str = ""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_turns: int = 40
    max_tokens: int = 4096
    temperature: float | None = None
    request_timeout_s: float = 120.0
    max_retries: int = 2
    continuations: int = 1
    tool_choice: str = "auto"

    @classmethod
    def from_spec(cls, spec: AgentSpec, *, default_model: str | None, key_env: str) -> ModelSettings:
        """Read and check the settings; a bad one is a UsageError naming it."""
        cfg = dict(spec.config)
        model = str(cfg.get("model") or default_model or "")
        if not model:
            raise UsageError(f"agent {spec.name} needs a model: give --model (or model: in the variant)")
        s = cls(
            model=model,
            base_url=str(cfg["base_url"]) if cfg.get("base_url") else None,
            api_key_env=str(cfg.get("api_key_env") or key_env),
            system_prompt=str(cfg.get("system_prompt") or DEFAULT_SYSTEM_PROMPT),
            max_turns=_scalar(cfg, "max_turns", int, 40),
            max_tokens=_scalar(cfg, "max_tokens", int, 4096),
            temperature=_scalar(cfg, "temperature", float, None),
            request_timeout_s=_scalar(cfg, "request_timeout_s", float, 120.0),
            max_retries=_scalar(cfg, "max_retries", int, 2),
            continuations=_scalar(cfg, "continuations", int, 1),
            tool_choice=str(cfg.get("tool_choice") or "auto"),
        )
        if s.max_tokens < 1 or s.max_turns < 1 or s.request_timeout_s <= 0 or s.max_retries < 0:
            raise UsageError("agent settings: max_tokens, max_turns and request_timeout_s must be positive, "
                             "max_retries not negative")
        if s.tool_choice not in TOOL_CHOICES:
            raise UsageError(f"agent setting tool_choice: {s.tool_choice!r} is not one of {', '.join(TOOL_CHOICES)}")
        return s

    def api_key(self) -> str:
        """The key from ``api_key_env``; a local server (``base_url`` set) needs none."""
        key = os.environ.get(self.api_key_env, "").strip()
        if key:
            return key
        if self.base_url:
            return "unused"  # the SDKs insist on a key; a local server ignores it
        raise UsageError(f"{self.api_key_env} is not set: export it, give --base-url for a local server, "
                         "or use --agent runbook for an offline run")


def _arguments_text(arguments: str | dict[str, Any] | None) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


async def run_loop(conv: Conversation, tools: AgentTools, settings: ModelSettings) -> AgentResult:
    """Work the incident through ``conv`` until done, a stop, a budget or the deadline."""
    reminded = False
    continued = 0
    last_text = ""
    for _ in range(settings.max_turns):
        started = time.monotonic()
        try:
            answer = await conv.ask()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                tools.usage(settings.model, TokenCount(), stop_reason="cancelled",
                            latency_s=round(time.monotonic() - started, 6), cut=True)
            raise
        except UnparsableOutput as e:
            tools.usage(settings.model, TokenCount(), stop_reason="unparsable_output",
                        latency_s=round(time.monotonic() - started, 6))
            error = f"the server could not parse your answer as a tool call ({e}). {REMINDER}"
            tools.tool_error("", "", error)
            conv.tell(error)
            continue
        except ModelCallFailed as e:
            return AgentResult("error", str(e))
        tools.usage(settings.model, answer.tokens, served_model=answer.served_model, stop_reason=answer.stop_reason,
                    latency_s=round(time.monotonic() - started, 6))
        if answer.text.strip():
            last_text = answer.text
            tools.note(answer.text)
        results: list[tuple[ToolCall, str, bool]] = []
        done: DoneArgs | None = None
        for call in answer.calls:
            try:
                args = parse_call(call.name, call.arguments)
            except ToolArgumentError as e:
                tools.tool_error(call.name, _arguments_text(call.arguments), str(e))
                results.append((call, str(e), True))
                continue
            if isinstance(args, ShellArgs):
                r = await tools.shell(args.command)
                results.append((call, r.as_text(), r.exit_code != 0))
            else:
                done = args
                results.append((call, "acknowledged", False))
        conv.answered(answer, results)
        if done is not None:
            return AgentResult("done", done.summary, done.resolved)
        if results:
            reminded = False
            continue
        if answer.stop == "pause":
            continue
        if answer.stop == "refusal":
            return AgentResult("refusal", last_text or f"the model refused ({answer.stop_reason})")
        if answer.stop == "truncated":
            if continued < settings.continuations:
                continued += 1
                conv.tell(CONTINUE)
                continue
            return AgentResult("truncated", f"answer cut at the token limit ({settings.max_tokens} tokens)"
                               + (f": {last_text}" if last_text else ""))
        if not reminded:  # prose (end_turn) or a stop reason nobody knows: one reminder
            reminded = True
            tools.tool_error("", "", REMINDER)
            conv.tell(REMINDER)
            continue
        return AgentResult("end_turn", last_text)
    return AgentResult("max_turns", f"stopped after {settings.max_turns} turns")


class ModelAgent:
    """What every model agent is: its settings read from the variant, a key checked before
    any cluster starts, the API's official SDK with the retry policy, and :func:`run_loop`.

    A subclass names its API: ``sdk`` (the module), ``client_class`` (its async client),
    ``conversation`` (its :class:`Conversation`), ``key_env`` and ``default_model``.
    ``http_client`` (an ``httpx2.AsyncClient``, the SDKs' HTTP package) lets tests put a
    transport at the edge; the real SDK does everything else, retries included.
    """

    name = ""
    sdk = ""
    client_class = ""
    key_env = ""
    default_model: str | None = None
    conversation: Any = None

    def __init__(self, spec: AgentSpec | None = None, *, http_client: Any = None) -> None:
        self.spec = spec or AgentSpec(name=self.name)
        self.settings = ModelSettings.from_spec(self.spec, default_model=self.default_model, key_env=self.key_env)
        self.model = self.settings.model
        self.settings.api_key()  # a missing key fails before any cluster starts
        self.http_client = http_client

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """The tool-use loop."""
        sdk = importlib.import_module(self.sdk)  # heavy: only when a trial of this agent runs
        s = self.settings
        client = getattr(sdk, self.client_class)(api_key=s.api_key(), base_url=s.base_url,
                                                 http_client=with_retry_policy(self.http_client, sdk),
                                                 max_retries=s.max_retries, timeout=s.request_timeout_s)
        async with client:
            return await run_loop(self.conversation(client, s, incident.prompt()), tools, s)
