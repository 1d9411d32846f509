"""What an agent is, what it is told, and the tools it gets."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import anyio

from opeval.sandbox import CommandResult, Sandbox
from opeval.events import AgentSpec, Trial

if TYPE_CHECKING:
    from opeval.agents._approval import ApprovalGate


class Price(NamedTuple):
    """USD per million tokens of one model: input, output, cache reads, cache writes."""

    input: float
    output: float
    cache_read: float
    cache_write: float

    @classmethod
    def parse(cls, value: Any) -> Price:
        """``[input, output]`` (cache tokens at the input rate) or ``[input, output, read, write]``."""
        shape = f"a price is [input, output] or [input, output, cache_read, cache_write] USD, not {value!r}"
        if not isinstance(value, list | tuple) or any(isinstance(x, bool) for x in value):
            raise ValueError(shape)
        try:
            v = [float(x) for x in value]
        except (TypeError, ValueError):
            raise ValueError(shape) from None
        if len(v) == 2:
            v += [v[0], v[0]]
        if len(v) != 4:
            raise ValueError(shape)
        if not all(math.isfinite(x) and x >= 0 for x in v):
            raise ValueError(f"a price is finite and not negative, not {value!r}")
        return cls(*v)


class TokenCount(NamedTuple):
    """One call's tokens; ``input`` excludes the cache's, so the call read input + cache_read + cache_write."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        """Every token of the call: what budgets count."""
        return self.input + self.output + self.cache_read + self.cache_write


def cost_usd(model: str, prices: dict[str, Price], input_tokens: int, output_tokens: int,
             cache_read_tokens: int = 0, cache_write_tokens: int = 0) -> float | None:
    """What a call cost by the longest price prefix matching ``model`` (None: no price known)."""
    prefixes = [m for m in prices if model.startswith(m)]
    if not prefixes:
        return None
    p = prices[max(prefixes, key=len)]
    return round((input_tokens * p.input + output_tokens * p.output + cache_read_tokens * p.cache_read
                  + cache_write_tokens * p.cache_write) / 1e6, 8)


class BudgetExhausted(Exception):
    """The agent used up a budget (steps or tokens); ``reason`` names which."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class Incident:
    """What the agent is told when paged.

    By default only the symptom an operator would see (the alert), never the fault that
    was injected.
    """

    alert: str
    subject: str
    members: list[str]
    tools: list[str]
    member_dirs: dict[str, str] = field(default_factory=dict)  # each member's directory, as the agent sees it
    guide: str = ""  # the subject's words about its own tools (Subject.operator_guide)

    def prompt(self) -> str:
        """The page, as text."""
        return (
            f"You are the on-call operator for a {self.subject} cluster with members "
            f"{', '.join(self.members)}.\n\nALERT: {self.alert}\n\n"
            f"You have a shell with these tools on the PATH: {', '.join(self.tools)} (plus the usual "
            f"Unix tools). {self.guide + ' ' if self.guide else ''}`nodectl status|start|stop|"
            "restart|logs <member>` controls the members' processes as a supervisor would.\n"
            + "".join(f"{name}'s directory (its data and log): {path}\n" for name, path in self.member_dirs.items())
            + 
            "Diagnose the problem and restore the cluster to full health without losing data. "
            "When you are finished, say so."
        )


@dataclass(frozen=True)
class AgentResult:
    """How the agent ended, in its own terms."""

    reason: str
    summary: str
    declared_resolved: bool | None = None


class AgentTools:
    """The agent's only way to act (the shell) and to be heard (notes, usage): each call
    becomes an event."""

    def __init__(self, *, sandbox: Sandbox, record: Callable[..., Any], clock: Callable[[], float],
                 spec: AgentSpec, recovered: anyio.Event, prices: dict[str, Price],
                 gate: ApprovalGate | None = None) -> None:
        self.sandbox = sandbox
        self.gate = gate  # the variant's approval policy, applied before each command runs
        self.record = record
        self.clock = clock
        self.recovered = recovered
        self.prices = prices
        cfg = spec.config
        self.max_steps = int(cfg.get("max_steps") or 30)  # type: ignore[arg-type]
        self.command_timeout_s = float(cfg.get("command_timeout_s") or 30.0)  # type: ignore[arg-type]
        self.output_cap = int(cfg.get("output_cap_bytes") or 16384)  # type: ignore[arg-type]
        self.max_total_tokens = int(cfg.get("max_total_tokens") or 400_000)  # type: ignore[arg-type]
        self.step = 0
        self.commands = 0
        self.tokens = 0
        self.calls = 0

    async def shell(self, command: str) -> CommandResult:
        """Run one command in the sandbox and record it."""
        if self.commands >= self.max_steps:
            raise BudgetExhausted("max_steps", f"step budget of {self.max_steps} commands used up")
        self.commands += 1
        self.step += 1
        if self.gate is not None and (refusal := await self.gate.review(self.step, command)) is not None:
            return refusal
        r = await self.sandbox.run(command, timeout_s=self.command_timeout_s, output_cap=self.output_cap,
                                   clock=self.clock)
        self.record(Trial.AgentCommandExecuted, step=self.step, command=r.command, exit_code=r.exit_code,
                    timed_out=r.timed_out, stdout=r.stdout, stderr=r.stderr, stdout_bytes=r.stdout_bytes,
                    stderr_bytes=r.stderr_bytes, stdout_truncated=r.stdout_truncated,
                    stderr_truncated=r.stderr_truncated, started_offset_s=r.started_offset_s,
                    duration_s=r.duration_s)
        return r

    def note(self, text: str) -> None:
        """Record the agent's reasoning."""
        self.step += 1
        self.record(Trial.AgentReasoning, step=self.step, text=text)

    def usage(self, model: str, tokens: TokenCount, *, served_model: str = "", stop_reason: str = "",
              latency_s: float | None = None, cut: bool = False) -> None:
        """Record one API call's usage (``model``: the one asked for, which prices it); stop the
        agent once its token budget, counted over every token, is spent."""
        self.calls += 1
        self.tokens += tokens.total
        cost = cost_usd(model, self.prices, *tokens)
        self.record(Trial.AgentUsage, call=self.calls, model=model, input_tokens=tokens.input,
                    output_tokens=tokens.output, cache_read_tokens=tokens.cache_read,
                    cache_write_tokens=tokens.cache_write, cost_usd=cost, served_model=served_model or model,
                    stop_reason=stop_reason, latency_s=latency_s, cut=cut)
        if self.tokens >= self.max_total_tokens:
            raise BudgetExhausted("token_budget", f"token budget of {self.max_total_tokens} used up")

    def tool_error(self, tool: str, arguments: str, error: str) -> None:
        """Record a tool call the harness refused (or an answer that called no tool); it is a step."""
        self.step += 1
        self.record(Trial.AgentToolError, step=self.step, tool=_capped(tool, 200), arguments=_capped(arguments, 4096),
                    error=_capped(error, 4096))


def _capped(text: str, limit: int) -> str:
    """``text`` up to ``limit`` characters, saying how much more there was."""
    return text if len(text) <= limit else f"{text[:limit]}[... {len(text) - limit} more characters not recorded]"


@runtime_checkable
class Agent(Protocol):
    """Something that repairs an incident using only :class:`AgentTools`.

    The runner constructs it from the variant's :class:`~opeval.events.AgentSpec`
    (see :data:`AgentFactory`), calls :meth:`run` once per trial inside the trial's
    sandbox, and cancels it at the trial's deadline or when recovery is detected.
    Whatever it does must go through ``tools``. What it raises is recorded as the agent's
    own failure (``AgentFinished`` reason ``error``), not the harness's; a
    :class:`BudgetExhausted` ends it with the budget's name, and an ``OpevalError`` (the
    harness's own: a broken store, a sandbox that cannot start) ends the trial in error.
    """

    name: str

    async def run(self, incident: Incident, tools: AgentTools) -> AgentResult:
        """Work the incident until done (or until cancelled by the runner)."""
        ...


#: An agent class: constructed from the variant's spec (name, variant, config).
AgentFactory = Callable[[AgentSpec], Agent]
