"""The openai agent: the shared tool-use loop over any OpenAI-compatible chat completions API
(OpenAI itself, vLLM, Ollama, LiteLLM, llama.cpp's ``llama-server``) through the official SDK.

``base_url`` picks the server; the key comes from ``OPENAI_API_KEY`` or the variable
``api_key_env`` names, and a local server (``base_url`` set) needs none.
"""

from __future__ import annotations

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
from opeval.agents._tools import openai_tools

API_KEY_ENV = "OPENAI_API_KEY"
#: Chat completions' finish reasons, normalised (anything else is ``unknown``).
STOPS = {"stop": "end_turn", "length": "truncated", "tool_calls": "tool_use", "function_call": "tool_use",
         "content_filter": "refusal"}


def read_answer(resp: Any) -> ModelAnswer:
    """A chat completion, normalised. ``prompt_tokens`` includes the cached ones: they are
    taken out of ``input`` so that each token is counted once."""
    u = resp.usage
    details = getattr(u, "prompt_tokens_details", None) if u is not None else None
    cache_read = (getattr(details, "cached_tokens", None) or 0) if details is not None else 0
    cache_write = (getattr(details, "cache_write_tokens", None) or 0) if details is not None else 0
    prompt = (u.prompt_tokens or 0) if u is not None else 0
    tokens = TokenCount(input=max(prompt - cache_read - cache_write, 0),
                        output=(u.completion_tokens or 0) if u is not None else 0,
                        cache_read=cache_read, cache_write=cache_write)
    choice = resp.choices[0] if resp.choices else None
    msg = choice.message if choice is not None else None
    finish = str(choice.finish_reason or "") if choice is not None else ""
    text = (msg.content or "") if msg is not None else ""
    refusal = getattr(msg, "refusal", None) if msg is not None else None
    calls = [ToolCall(c.id, c.function.name, c.function.arguments)
             for c in (msg.tool_calls or []) if getattr(c, "function", None) is not None] if msg is not None else []
    stop = STOPS.get(finish, "unknown")
    if refusal:
        stop, text = "refusal", text or str(refusal)
    return ModelAnswer(stop=stop, stop_reason=finish or "none", text=text, calls=calls, tokens=tokens,
                       served_model=str(resp.model or ""), raw=msg)


class _Chat(Conversation):
    def __init__(self, client: Any, settings: ModelSettings, prompt: str) -> None:
        self.client, self.settings = client, settings
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": settings.system_prompt},
                                               {"role": "user", "content": prompt}]

    async def ask(self) -> ModelAnswer:
        import openai

        s = self.settings
        try:
            resp = await self.client.chat.completions.create(
                model=s.model, messages=self.messages, tools=openai_tools(s.tool_choice),
                tool_choice="auto" if s.tool_choice == "auto" else "required",
                max_tokens=s.max_tokens, **({} if s.temperature is None else {"temperature": s.temperature}),
            )
        except openai.APIStatusError as e:
            if unparsable_output(e.status_code, str(e)):
                raise UnparsableOutput(str(e)) from None
            raise ModelCallFailed(f"API error after retries: {type(e).__name__}: {e}") from None
        except openai.APIError as e:
            raise ModelCallFailed(f"API error after retries: {type(e).__name__}: {e}") from None
        return read_answer(resp)

    def answered(self, answer: ModelAnswer, results: list[tuple[ToolCall, str, bool]]) -> None:
        msg: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
        if answer.calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.name, "arguments": c.arguments if isinstance(c.arguments, str) else ""}}
                for c in answer.calls]
        if msg["content"] is None and not answer.calls:
            msg["content"] = ""
        self.messages.append(msg)
        for call, text, is_error in results:
            self.messages.append({"role": "tool", "tool_call_id": call.id,
                                  "content": ("ERROR: " if is_error else "") + text})

    def tell(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})


class OpenAIAgent(ModelAgent):
    """Any OpenAI-compatible model as the operator."""

    name = "openai"
    sdk, client_class, conversation = "openai", "AsyncOpenAI", _Chat
    key_env = API_KEY_ENV
