"""Agents: what opeval evaluates. Each gets an incident and a shell; all it does is recorded.

Built in: ``none`` (the baseline: no agent), ``runbook`` (deterministic, offline),
``anthropic`` (Claude, or any server speaking the Messages API), ``openai`` (any
OpenAI-compatible chat completions server) and ``command`` (an external agent's command
line, run in the sandbox with the trial's tools as its MCP server, ``_mcp``); the two model
agents share one loop (``_loop``), and every agent one definition of the tools (``_tools``). Others plug in through the entry-point
group ``opeval.agents``: a class taking an :class:`~opeval.events.AgentSpec` and
implementing :class:`Agent`.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from opeval._plugins import Registry
from opeval.errors import UsageError, yaml_problem
from opeval.agents._anthropic import DEFAULT_MODEL, AnthropicAgent, require_api_key
from opeval.agents._approval import (
    DEFAULT_GATED,
    MODES,
    ApprovalGate,
    ApprovalPolicy,
    Approver,
    StoreApprover,
    Verdict,
)
from opeval.agents._command import CommandAgent, CommandSettings
from opeval.agents._control import NodeControl
from opeval.agents._labeller import DEFAULT_LABEL_MODEL, CommandLabeller, LabellingFailed, LabellingResult
from opeval.agents._loop import TOOL_CHOICES, ModelSettings
from opeval.agents._mcp import ToolServer, client_config
from opeval.agents._openai import OpenAIAgent
from opeval.agents._protocol import (
    Agent,
    AgentFactory,
    AgentResult,
    AgentTools,
    BudgetExhausted,
    Incident,
    Price,
    TokenCount,
)
from opeval.agents._tools import DONE, SHELL, TOOLS, DoneArgs, ShellArgs, ToolArgumentError, ToolSpec, parse_call
from opeval.agents._runbook import RunbookAgent, down_members, restart_down_members
from opeval.sandbox import CommandResult, Sandbox

#: Agents by name (entry-point group ``opeval.agents``); ``none`` is not an agent.
AGENTS: Registry[AgentFactory] = Registry("agent", "opeval.agents")
AGENTS.register("runbook")(RunbookAgent)
AGENTS.register("anthropic")(AnthropicAgent)
AGENTS.register("openai")(OpenAIAgent)
AGENTS.register("command")(CommandAgent)


def load_prices() -> dict[str, Price]:
    """USD per million tokens by model (``$OPEVAL_PRICES`` or the shipped prices.yaml); a
    file that cannot be used is refused in one line naming it and the model."""
    given = os.environ.get("OPEVAL_PRICES")
    path = Path(given or Path(__file__).with_name("prices.yaml"))
    fix = ": fix it, or unset $OPEVAL_PRICES for the shipped prices" if given else ""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise UsageError(f"cannot read the prices file {path} ({e.strerror}){fix}") from None
    except (yaml.YAMLError, RecursionError, UnicodeDecodeError) as e:
        raise UsageError(f"prices file {yaml_problem(path, e)}{fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"prices file {path}: not a mapping of model name to [input, output] or "
                         f"[input, output, cache_read, cache_write] USD per million tokens{fix}")
    prices = {}
    for model, value in data.items():
        try:
            prices[str(model)] = Price.parse(value)
        except ValueError as e:
            raise UsageError(f"prices file {path}: {model}: {e}{fix}") from None
    return prices


__all__ = [
    "AGENTS",
    "DEFAULT_GATED",
    "MODES",
    "ApprovalGate",
    "ApprovalPolicy",
    "Approver",
    "StoreApprover",
    "Verdict",
    "DEFAULT_LABEL_MODEL",
    "DEFAULT_MODEL",
    "Agent",
    "AgentFactory",
    "AgentResult",
    "AgentTools",
    "AnthropicAgent",
    "BudgetExhausted",
    "CommandAgent",
    "CommandLabeller",
    "CommandSettings",
    "CommandResult",
    "DONE",
    "DoneArgs",
    "Incident",
    "LabellingFailed",
    "LabellingResult",
    "ModelSettings",
    "NodeControl",
    "OpenAIAgent",
    "Price",
    "RunbookAgent",
    "SHELL",
    "Sandbox",
    "ShellArgs",
    "TOOLS",
    "TOOL_CHOICES",
    "TokenCount",
    "ToolServer",
    "ToolArgumentError",
    "ToolSpec",
    "client_config",
    "down_members",
    "load_prices",
    "parse_call",
    "require_api_key",
    "restart_down_members",
]
