"""The tools every model agent gets, defined once: names, descriptions, JSON schemas and
strict validation of the arguments a model sends.

The argument types are msgspec Structs: the schema a model is shown is generated from the
same Struct that validates its call, so the two cannot drift apart. Validation is strict
(``"false"`` is not a boolean, unknown keys and missing ones are refused): a malformed call
is answered with a :class:`ToolArgumentError` the model can read, never coerced.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec


class ShellArgs(msgspec.Struct, forbid_unknown_fields=True):
    """Arguments of the shell tool."""

    command: Annotated[str, msgspec.Meta(min_length=1, description="The command, as you would type it.")]


class DoneArgs(msgspec.Struct, forbid_unknown_fields=True):
    """Arguments of the done tool."""

    summary: Annotated[str, msgspec.Meta(description="What you found and what you did.")]
    resolved: Annotated[bool, msgspec.Meta(description="Whether you believe the cluster is healthy (true or false).")]


class ToolSpec(msgspec.Struct, frozen=True):
    """One tool as a model is shown it."""

    name: str
    description: str
    args: type[msgspec.Struct]

    def schema(self) -> dict[str, Any]:
        """The arguments' JSON schema, inline (no ``$ref``), as both APIs want it."""
        (_,), defs = msgspec.json.schema_components([self.args])
        schema = dict(defs[self.args.__name__])
        schema.pop("title", None)
        schema.pop("description", None)
        return schema


SHELL = ToolSpec("shell", "Run one bash command on the operator host and get its exit code, stdout and stderr.",
                 ShellArgs)
DONE = ToolSpec("done", "Declare that you have finished working on the incident.", DoneArgs)
#: The model agents' tools, by name.
TOOLS: dict[str, ToolSpec] = {t.name: t for t in (SHELL, DONE)}

#: What a model that answered in prose is told once (it counts as a step).
REMINDER = ("You answered without calling a tool. Act only through the tools: call `shell` with "
            '{"command": "..."} to run a command, or `done` with {"summary": "...", "resolved": true|false} '
            "when you have finished.")


class ToolArgumentError(ValueError):
    """A tool call the harness refused; the message says what was wrong, for the model."""


def parse_call(name: str, arguments: str | dict[str, Any] | None) -> ShellArgs | DoneArgs:
    """Validate one tool call: ``arguments`` as the API gave them (a JSON text or an object)."""
    spec = TOOLS.get(name)
    if spec is None:
        raise ToolArgumentError(f"unknown tool {name!r}: the tools are {', '.join(TOOLS)}")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as e:
            raise ToolArgumentError(f"{name}: the arguments are not valid JSON ({e})") from None
    try:
        return msgspec.convert(arguments, spec.args, strict=True)  # type: ignore[no-any-return]
    except msgspec.ValidationError as e:
        raise ToolArgumentError(f"{name}: {e}; expected {json.dumps(spec.schema()['properties'])}") from None


def offered(tool_choice: str) -> list[ToolSpec]:
    """The tools a call offers: every tool, or only the one ``tool_choice`` names (the model
    must call it). Offering only that tool, rather than naming it in the request, is how the
    choice holds on servers that take only ``required`` (llama.cpp's)."""
    return [TOOLS[tool_choice]] if tool_choice in TOOLS else list(TOOLS.values())


def anthropic_tools(tool_choice: str = "auto") -> list[dict[str, Any]]:
    """The tools in the Messages API's shape."""
    return [{"name": t.name, "description": t.description, "input_schema": t.schema()} for t in offered(tool_choice)]


def openai_tools(tool_choice: str = "auto") -> list[dict[str, Any]]:
    """The tools in the chat completions API's shape."""
    return [{"type": "function", "function": {"name": t.name, "description": t.description,
                                              "parameters": t.schema()}} for t in offered(tool_choice)]
