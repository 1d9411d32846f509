"""The model agents' shared loop, transcript by transcript: every stop reason and usage shape
of the Messages API and of chat completions, scripted at the SDKs' HTTP edge
(``httpx.MockTransport``), with real commands run by a real (unisolated) shell."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx  # the SDKs' own HTTP client package
import pytest

from opeval.agents import (
    AgentResult,
    AgentTools,
    AnthropicAgent,
    Incident,
    OpenAIAgent,
    Price,
    Sandbox,
    ToolArgumentError,
    parse_call,
)
from opeval.errors import UsageError
from opeval.events import AgentSpec, Trial

Reply = httpx.Response | Callable[[], Any]


# --- the two APIs' answers -------------------------------------------------------------------------
def claude(blocks: list[dict[str, Any]], stop: str | None = "tool_use", *, cache_read: int | None = None,
           cache_write: int | None = None, model: str = "claude-sonnet-4-6-20260101") -> httpx.Response:
    usage: dict[str, Any] = {"input_tokens": 100, "output_tokens": 20}
    if cache_read is not None:
        usage |= {"cache_read_input_tokens": cache_read, "cache_creation_input_tokens": cache_write}
    return httpx.Response(200, json={"id": "msg", "type": "message", "role": "assistant", "model": model,
                                     "content": blocks, "stop_reason": stop, "stop_sequence": None, "usage": usage})


def use(n: int, name: str, args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args}


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def gpt(content: str | None, calls: list[tuple[str, str]] = (), finish: str = "tool_calls", *,
        cached: int | None = None, refusal: str | None = None, model: str = "served-name") -> httpx.Response:
    usage: dict[str, Any] = {"prompt_tokens": 300, "completion_tokens": 30, "total_tokens": 330}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
    if calls:
        message["tool_calls"] = [{"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                                 for i, (n, a) in enumerate(calls)]
    return httpx.Response(200, json={"id": "c", "object": "chat.completion", "created": 0, "model": model,
                                     "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                                     "usage": usage})


def server_error(message: str) -> httpx.Response:
    return httpx.Response(500, headers={"retry-after-ms": "1"},
                          json={"error": {"code": 500, "message": message, "type": "server_error"}})


# --- a run --------------------------------------------------------------------------------------------
class Run:
    """One agent run over a script: what was sent, what was recorded, how it ended."""

    def __init__(self, tmp_path: Path, kind: str, script: list[Reply], **config: Any) -> None:
        self.script, self.sent, self.recorded = list(script), [], []
        self.result: AgentResult | None = None
        self.tmp_path = tmp_path
        spec = AgentSpec(name=kind, config={"model": "asked-model", "base_url": "http://model.test/v1",
                                            "max_retries": 2, **config})
        client = httpx.AsyncClient(transport=httpx.MockTransport(self.handler))
        self.agent = (AnthropicAgent if kind == "anthropic" else OpenAIAgent)(spec, http_client=client)
        sandbox = Sandbox(tmp_path / "operator", "b" * 32, {}, tmp_path / "ctl.sock")
        self.tools = AgentTools(sandbox=sandbox, record=lambda cls, **f: self.recorded.append((cls, f)),
                                clock=lambda: 0.0, spec=spec, recovered=anyio.Event(),
                                prices={"asked-model": Price(1.0, 10.0, 0.1, 2.0)})

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(json.loads(request.content))
        reply = self.script.pop(0)
        if callable(reply):
            return await reply()
        return reply

    def go(self, deadline: float = 30.0) -> Run:
        incident = Incident(alert="etcd-2 is down", subject="etcd", members=["etcd-1", "etcd-2"], tools=["nodectl"])

        async def main() -> None:
            with anyio.move_on_after(deadline):
                self.result = await self.agent.run(incident, self.tools)

        anyio.run(main)
        return self

    def of(self, cls: type) -> list[dict[str, Any]]:
        return [f for c, f in self.recorded if c is cls]

    @property
    def ended(self) -> tuple[str, str, bool | None]:
        assert self.result is not None
        return self.result.reason, self.result.summary, self.result.declared_resolved


# --- the tools' arguments -----------------------------------------------------------------------
@pytest.mark.parametrize(("name", "args", "error"), [
    ("done", {"summary": "x", "resolved": "false"}, "Expected `bool`, got `str` - at `$.resolved`"),
    ("done", {"summary": "x"}, "missing required field `resolved`"),
    ("shell", {"command": "ls", "sudo": True}, "unknown field `sudo`"),
    ("shell", {}, "missing required field `command`"),
    ("shell", {"command": ""}, "length >= 1"),
    ("shell", '{"command": "ls"', "not valid JSON"),
    ("shell", "[1]", "Expected `object`, got `array`"),
    ("rm", {}, "unknown tool 'rm'"),
])
def test_malformed_tool_arguments_are_refused_never_coerced(name: str, args: Any, error: str) -> None:
    with pytest.raises(ToolArgumentError) as e:
        parse_call(name, args)
    assert error in str(e.value)


def test_well_formed_arguments_come_back_typed() -> None:
    assert parse_call("done", '{"summary": "ok", "resolved": false}').resolved is False
    assert parse_call("shell", {"command": "nodectl status"}).command == "nodectl status"


# --- the Messages API ----------------------------------------------------------------------------
def test_claude_tool_use_runs_the_command_and_counts_every_token(tmp_path: Path) -> None:
    r = Run(tmp_path, "anthropic", [
        claude([text("Looking."), use(1, "shell", {"command": "echo hello"})], cache_read=5000, cache_write=700),
        claude([use(2, "done", {"summary": "nothing wrong", "resolved": False})], cache_read=5200, cache_write=0),
    ]).go()
    assert r.ended == ("done", "nothing wrong", False)
    (cmd,) = r.of(Trial.AgentCommandExecuted)
    assert (cmd["command"], cmd["stdout"]) == ("echo hello", "hello\n")
    first, second = r.of(Trial.AgentUsage)
    assert (first["model"], first["served_model"], first["stop_reason"]) == (
        "asked-model", "claude-sonnet-4-6-20260101", "tool_use")
    assert (first["input_tokens"], first["output_tokens"], first["cache_read_tokens"],
            first["cache_write_tokens"]) == (100, 20, 5000, 700)
    assert first["cost_usd"] == pytest.approx((100 * 1.0 + 20 * 10.0 + 5000 * 0.1 + 700 * 2.0) / 1e6)
    assert second["cache_read_tokens"] == 5200 and not second["cut"]
    assert r.tools.tokens == 100 + 20 + 5000 + 700 + 100 + 20 + 5200  # the budget counts every token
    # the command's output went back as the tool's result
    assert r.sent[1]["messages"][-1]["content"][0]["content"] == "[exit code 0]\nstdout:\nhello\n"
    assert r.sent[0]["model"] == "asked-model" and "tool_choice" not in r.sent[0]


def test_claude_prose_gets_one_reminder_then_ends_the_agent(tmp_path: Path) -> None:
    r = Run(tmp_path, "anthropic", [claude([text("I think etcd-2 crashed.")], "end_turn"),
                                    claude([text("Restart it, I would say.")], "end_turn")]).go()
    assert r.ended == ("end_turn", "Restart it, I would say.", None)
    (reminder,) = r.of(Trial.AgentToolError)
    assert reminder["tool"] == "" and "call `shell`" in reminder["error"]
    assert r.sent[1]["messages"][-1] == {"role": "user", "content": reminder["error"]}
    assert [u["stop_reason"] for u in r.of(Trial.AgentUsage)] == ["end_turn", "end_turn"]
    steps = [f["step"] for c, f in r.recorded if "step" in f]
    assert steps == [1, 2, 3]  # prose, reminder, prose: the reminder is a step


def test_claude_cut_at_the_token_limit_continues_once_then_ends_truncated(tmp_path: Path) -> None:
    r = Run(tmp_path, "anthropic", [claude([text("Let me expl")], "max_tokens"),
                                    claude([text("So the")], "max_tokens")], max_tokens=7).go()
    assert r.ended[0] == "truncated" and "7 tokens" in r.ended[1]
    assert [s["max_tokens"] for s in r.sent] == [7, 7]
    assert "cut off at the token limit" in r.sent[1]["messages"][-1]["content"]


def test_claude_refusal_pause_and_unknown_stops(tmp_path: Path) -> None:
    refused = Run(tmp_path / "a", "anthropic", [claude([text("I can't help with that.")], "refusal")]).go()
    assert refused.ended == ("refusal", "I can't help with that.", None)
    paused = Run(tmp_path / "b", "anthropic", [
        claude([text("Searching...")], "pause_turn"),
        claude([use(1, "done", {"summary": "s", "resolved": True})]),
    ]).go()
    assert paused.ended == ("done", "s", True)
    # a paused turn is resumed as it was: its content goes back, no user message is added
    assert paused.sent[1]["messages"][-1] == {"role": "assistant", "content": [text("Searching...")]}
    odd = Run(tmp_path / "c", "anthropic", [claude([text("hm")], "some_new_reason"),
                                            claude([use(1, "done", {"summary": "s", "resolved": True})])]).go()
    assert odd.ended[0] == "done"
    assert [u["stop_reason"] for u in odd.of(Trial.AgentUsage)] == ["some_new_reason", "tool_use"]
    assert len(odd.of(Trial.AgentToolError)) == 1  # an unknown stop without a tool call is reminded
    no_usage_fields = Run(tmp_path / "d", "anthropic", [claude([use(1, "done", {"summary": "s", "resolved": True})],
                                                               None)]).go()
    assert no_usage_fields.of(Trial.AgentUsage)[0]["cache_read_tokens"] == 0
    assert no_usage_fields.of(Trial.AgentUsage)[0]["stop_reason"] == "none"


def test_claude_malformed_calls_get_an_error_back_and_count_as_steps(tmp_path: Path) -> None:
    r = Run(tmp_path, "anthropic", [
        claude([use(1, "done", {"summary": "fixed", "resolved": "false"}), use(2, "shell", {"cmd": "ls"})]),
        claude([use(3, "done", {"summary": "fixed", "resolved": False})]),
    ]).go()
    assert r.ended == ("done", "fixed", False)  # "false" was never taken for true
    errors = r.of(Trial.AgentToolError)
    assert [(e["tool"], e["step"]) for e in errors] == [("done", 1), ("shell", 2)]
    assert json.loads(errors[0]["arguments"]) == {"summary": "fixed", "resolved": "false"}
    results = r.sent[1]["messages"][-1]["content"]
    assert [b["is_error"] for b in results] == [True, True]
    assert "Expected `bool`, got `str`" in results[0]["content"] and "unknown field `cmd`" in results[1]["content"]
    assert r.of(Trial.AgentCommandExecuted) == []


@pytest.mark.parametrize("message", ["Failed to parse tool call arguments as JSON: syntax error",
                                     "The model produced output that does not match the expected peg-native format"])
def test_unparsable_model_output_is_not_generated_again(tmp_path: Path, message: str) -> None:
    r = Run(tmp_path, "anthropic", [
        server_error(message),
        claude([use(1, "done", {"summary": "s", "resolved": True})]),
    ]).go()
    assert r.ended[0] == "done"
    assert len(r.sent) == 2  # no retry of the 500: the next request is the loop's own
    first = r.of(Trial.AgentUsage)[0]
    assert first["stop_reason"] == "unparsable_output" and first["input_tokens"] == 0
    (told,) = r.of(Trial.AgentToolError)
    assert "could not parse" in told["error"] and message in told["error"]


def test_other_server_errors_are_retried_by_policy_then_end_in_error(tmp_path: Path) -> None:
    r = Run(tmp_path, "openai", [server_error("out of memory")] * 3, max_retries=2).go()
    assert len(r.sent) == 3 and r.ended[0] == "error" and "out of memory" in r.ended[1]
    assert r.of(Trial.AgentUsage) == []  # no call was answered


def test_a_call_cut_by_the_deadline_is_recorded_as_cut(tmp_path: Path) -> None:
    async def never() -> httpx.Response:
        await anyio.sleep(60)
        raise AssertionError("not reached")

    r = Run(tmp_path, "anthropic", [claude([use(1, "shell", {"command": "true"})]), never]).go(deadline=3.0)
    assert r.result is None  # cancelled, as the runner cancels it
    first, cut = r.of(Trial.AgentUsage)
    assert not first["cut"] and cut["cut"] and cut["stop_reason"] == "cancelled"
    assert cut["input_tokens"] == 0 and cut["latency_s"] > 0 and cut["model"] == "asked-model"


# --- chat completions ----------------------------------------------------------------------------
def test_openai_tool_calls_run_and_cached_prompt_tokens_are_counted_once(tmp_path: Path) -> None:
    r = Run(tmp_path, "openai", [
        gpt("Checking.", [("shell", '{"command": "echo hi"}')], cached=200),
        gpt(None, [("done", '{"summary": "ok", "resolved": true}')], finish="stop"),
    ], tool_choice="required", temperature=0.2).go()
    assert r.ended == ("done", "ok", True)
    assert r.sent[0]["tool_choice"] == "required" and r.sent[0]["temperature"] == 0.2
    assert r.sent[0]["messages"][0]["role"] == "system"
    assert [t["function"]["name"] for t in r.sent[0]["tools"]] == ["shell", "done"]
    assert r.sent[0]["tools"][1]["function"]["parameters"]["properties"]["resolved"]["type"] == "boolean"
    tool_msg = r.sent[1]["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == "call_0" and "hi" in tool_msg["content"]
    first = r.of(Trial.AgentUsage)[0]
    assert (first["input_tokens"], first["cache_read_tokens"], first["output_tokens"]) == (100, 200, 30)
    assert (first["model"], first["served_model"]) == ("asked-model", "served-name")
    assert r.tools.tokens == 330 + 330  # prompt (cached included) + completion, per call


@pytest.mark.parametrize(("finish", "ended"), [("stop", "end_turn"), ("length", "truncated"),
                                                 ("content_filter", "refusal"), ("something_else", "end_turn")])
def test_openai_finish_reasons_without_a_tool_call(tmp_path: Path, finish: str, ended: str) -> None:
    r = Run(tmp_path, "openai", [gpt("words", finish=finish), gpt("more words", finish=finish)]).go()
    assert r.ended[0] == ended
    assert [u["stop_reason"] for u in r.of(Trial.AgentUsage)] == [finish] * (1 if ended == "refusal" else 2)


def test_openai_refusal_field_and_bad_json_arguments(tmp_path: Path) -> None:
    refused = Run(tmp_path / "a", "openai", [gpt(None, finish="stop", refusal="I won't run commands.")]).go()
    assert refused.ended == ("refusal", "I won't run commands.", None)
    r = Run(tmp_path / "b", "openai", [
        gpt(None, [("shell", '{"command": "ls"')], finish="length"),
        gpt(None, [("done", '{"summary": "gave up", "resolved": false}')]),
    ]).go()
    assert r.ended == ("done", "gave up", False)
    (bad,) = r.of(Trial.AgentToolError)
    assert bad["arguments"] == '{"command": "ls"' and "not valid JSON" in bad["error"]
    assert r.sent[1]["messages"][-1]["content"].startswith("ERROR: shell: the arguments are not valid JSON")


def test_settings_are_checked_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(UsageError, match="needs a model"):
        OpenAIAgent(AgentSpec(name="openai", config={"base_url": "http://x"}))
    with pytest.raises(UsageError, match="MY_KEY is not set"):
        OpenAIAgent(AgentSpec(name="openai", config={"model": "m", "api_key_env": "MY_KEY"}))
    with pytest.raises(UsageError, match="tool_choice"):
        AnthropicAgent(AgentSpec(name="anthropic", config={"base_url": "http://x", "tool_choice": "always"}))
    with pytest.raises(UsageError, match="max_tokens"):
        AnthropicAgent(AgentSpec(name="anthropic", config={"base_url": "http://x", "max_tokens": "lots"}))
    monkeypatch.setenv("MY_KEY", "k")
    assert OpenAIAgent(AgentSpec(name="openai", config={"model": "m", "api_key_env": "MY_KEY"})).model == "m"


# --- a tool named as the choice ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["anthropic", "openai"])
def test_a_tool_named_as_the_choice_is_the_only_one_offered(tmp_path: Path, kind: str) -> None:
    reply = (claude([use(1, "shell", {"command": "echo forced"})]) if kind == "anthropic"
             else gpt(None, [("shell", '{"command": "echo forced"}')]))
    again = (claude([use(2, "shell", {"command": "echo again"})]) if kind == "anthropic"
             else gpt(None, [("shell", '{"command": "echo again"}')]))
    r = Run(tmp_path, kind, [reply, again], tool_choice="shell", max_steps=1)
    from opeval.agents import BudgetExhausted

    with pytest.raises(BudgetExhausted, match="step budget of 1"):  # the runner ends the agent as max_steps
        r.go()
    names = ([t["name"] for t in r.sent[0]["tools"]] if kind == "anthropic"
             else [t["function"]["name"] for t in r.sent[0]["tools"]])
    assert names == ["shell"]  # the model cannot but call it, on servers that take only "required" too
    assert r.sent[0]["tool_choice"] == ({"type": "any"} if kind == "anthropic" else "required")
    (cmd,) = r.of(Trial.AgentCommandExecuted)
    assert cmd["stdout"] == "forced\n"
