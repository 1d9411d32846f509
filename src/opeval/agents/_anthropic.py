"""The anthropic agent: the shared tool-use loop over the Messages API.

Text blocks become AgentReasoning, each API call AgentUsage (cache reads and writes
included). ``base_url`` points it at any server that speaks the Messages API (llama.cpp's
``llama-server`` does); the retry policy is the loop's (:mod:`opeval.agents._loop`).
"""

from __future__ import annotations

import os
from typing import Any

from opeval.agents._loop import (
    Conversation,
    ModelAnswer,
    ModelCallFailed,
    ModelAgent,
    ModelSettings,
    ToolCall,
    UnparsableOutput,
    unparsable_output,
)
from opeval.agents._protocol import TokenCount
from opeval.agents._tools import anthropic_tools
from opeval.errors import UsageError

DEFAULT_MODEL = "claude-sonnet-4-6"
API_KEY_ENV = "ANTHROPIC_API_KEY"
#: The Messages API's stop reasons, normalised (anything else is ``unknown``).
STOPS = {"end_turn": "end_turn", "stop_sequence": "end_turn", "max_tokens": "truncated",
         "model_context_window_exceeded": "truncated", "tool_use": "tool_use", "refusal": "refusal",
         "pause_turn": "pause"}


def require_api_key() -> str:
    """The API key, or a UsageError that says how to provide it."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    if not key:
        raise UsageError(f"{API_KEY_ENV} is not set: export it, or use --agent runbook for an offline run")
    return key


def read_answer(resp: Any) -> ModelAnswer:
    """A Messages API response, normalised."""
    u = resp.usage
    tokens = TokenCount(input=u.input_tokens or 0, output=u.output_tokens or 0,
                        cache_read=getattr(u, "cache_read_input_tokens", None) or 0,
                        cache_write=getattr(u, "cache_creation_input_tokens", None) or 0)
    text = "\n".join(b.text for b in resp.content if b.type == "text" and b.text.strip())
    calls = [ToolCall(b.id, b.name, b.input) for b in resp.content if b.type == "tool_use"]
    stop = str(resp.stop_reason or "")
    return ModelAnswer(stop=STOPS.get(stop, "unknown"), stop_reason=stop or "none", text=text, calls=calls,
                       tokens=tokens, served_model=str(resp.model or ""), raw=resp)


class _Messages(Conversation):
    def __init__(self, client: Any, settings: ModelSettings, prompt: str) -> None:
        self.client, self.settings = client, settings
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]

    async def ask(self) -> ModelAnswer:
        import anthropic

        s = self.settings
        extra: dict[str, Any] = {}
        if s.temperature is not None:  # recent models refuse it: sent only when set
            extra["temperature"] = s.temperature
        try:
            resp = await self.client.messages.create(
                model=s.model, system=s.system_prompt, max_tokens=s.max_tokens, tools=anthropic_tools(s.tool_choice),
                messages=self.messages, extra_body=extra or None,
                **({} if s.tool_choice == "auto" else {"tool_choice": {"type": "any"}}),
            )
        except anthropic.APIStatusError as e:
            if unparsable_output(e.status_code, str(e)):
                raise UnparsableOutput(str(e)) from None
            raise ModelCallFailed(f"API error after retries: {type(e).__name__}: {e}") from None
        except anthropic.APIError as e:
            raise ModelCallFailed(f"API error after retries: {type(e).__name__}: {e}") from None
        return read_answer(resp)

    def answered(self, answer: ModelAnswer, results: list[tuple[ToolCall, str, bool]]) -> None:
        content = [b.model_dump(exclude_none=True) for b in answer.raw.content]
        if content:
            self.messages.append({"role": "assistant", "content": content})
        if results:
            self.messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": text, "is_error": is_error}
                for call, text, is_error in results]})

    def tell(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


class AnthropicAgent(ModelAgent):
    """Claude (or any Messages API server) as the operator."""

    name = "anthropic"
    sdk, client_class, conversation = "anthropic", "AsyncAnthropic", _Messages
    key_env, default_model = API_KEY_ENV, DEFAULT_MODEL
