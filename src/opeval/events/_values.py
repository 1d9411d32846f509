"""What an event may hold: values that read back exactly, checked against the field's type.

JSON (and the read models after it) has no NaN or infinity (msgspec writes ``null``),
no integer beyond 64 bits (DuckDB's BIGINT), no unpaired UTF-16 surrogate, and only
string keys; a naive datetime cannot be ordered against the aware ones the log holds.
:func:`value_problem` names the first such value in a field, so the codec can refuse
an event with a message that says which field and why.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import types
import typing
import uuid
from typing import Any

import msgspec

#: The integers every reader of the log (msgspec, SQLite, DuckDB's BIGINT) holds exactly.
INT_RANGE = (-(2**63), 2**63 - 1)
#: A float holds every integer up to this magnitude exactly.
FLOAT_EXACT_INT = 2**53


def number_problem(value: object, *, integer: bool = False) -> str | None:
    """Why ``value`` is not a number an event (or a setting) can hold; None if it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {value!r}, not a {'whole ' if integer else ''}number"
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"is {value!r}; numbers must be finite"
        if integer:
            return f"is {value!r}, not a whole number"
        return None
    low, high = INT_RANGE
    if not low <= value <= high:
        return f"is {value}, beyond the 64-bit range the log can hold"
    if not integer and abs(value) > FLOAT_EXACT_INT:
        return f"is {value}, too large to read back exactly as a decimal number"
    return None


def _text_problem(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"holds {value[e.start:e.end]!r} at position {e.start}, which is not valid Unicode text"
    return None


def _alternatives(tp: Any) -> tuple[Any, ...] | None:
    return typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else None


def value_problem(value: Any, tp: Any) -> tuple[str, str] | None:  # noqa: PLR0911, PLR0912 - one branch per kind
    """The first value in ``value`` that ``tp`` cannot hold exactly: ``(path, reason)``,
    the path relative to ``value`` (``.timeout_s``, ``["key"]``, ``[2]``); None if all fit."""
    if isinstance(tp, typing.TypeVar):
        tp = uuid.UUID
    alternatives = _alternatives(tp)
    if alternatives is not None:
        problems = []
        for alt in alternatives:
            found = value_problem(value, alt)
            if found is None:
                return None
            problems.append((alt, found))
        # The alternative of the value's own kind explains best (a float's NaN, not "not a str").
        for alt, found in problems:
            if isinstance(alt, type) and isinstance(value, alt) and not (alt is int and isinstance(value, bool)):
                return found
        for alt, found in problems:
            if alt is float and isinstance(value, int) and not isinstance(value, bool):
                return found
        names = " or ".join(getattr(a, "__name__", str(a)).replace("NoneType", "null") for a, _ in problems)
        return "", f"is {value!r} ({type(value).__name__}), not {names}"
    if tp is type(None):
        return None if value is None else ("", f"is {value!r}, not null")
    if tp is bool:
        return None if isinstance(value, bool) else ("", f"is {value!r}, not true or false")
    if tp is int or tp is float:
        reason = number_problem(value, integer=tp is int)
        return None if reason is None else ("", reason)
    if tp is str:
        if not isinstance(value, str):
            return "", f"is {value!r} ({type(value).__name__}), not text"
        reason = _text_problem(value)
        return None if reason is None else ("", reason)
    if tp is uuid.UUID:
        return None if isinstance(value, uuid.UUID) else ("", f"is {value!r}, not a UUID")
    if tp is dt.datetime:
        if not isinstance(value, dt.datetime):
            return "", f"is {value!r}, not a datetime"
        return None if value.tzinfo is not None else ("", f"is {value.isoformat()}, a datetime without a time zone")
    origin = typing.get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            return "", f"is {type(value).__name__}, not a list"
        (inner,) = typing.get_args(tp)
        for i, item in enumerate(value):
            found = value_problem(item, inner)
            if found is not None:
                return f"[{i}]{found[0]}", found[1]
        return None
    if origin is dict:
        if not isinstance(value, dict):
            return "", f"is {type(value).__name__}, not a mapping"
        _, inner = typing.get_args(tp)
        for key, item in value.items():
            if not isinstance(key, str):
                return "", f"has the key {key!r} ({type(key).__name__}); keys must be text"
            reason = _text_problem(key)
            if reason is not None:
                return "", f"has a key that {reason}"
            found = value_problem(item, inner)
            if found is not None:
                return f"[{key!r}]{found[0]}", found[1]
        return None
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        if not isinstance(value, tp):
            return "", f"is {type(value).__name__}, not {tp.__name__}"
        hints = _hints(tp)
        for name in tp.__struct_fields__:
            found = value_problem(getattr(value, name), hints[name])
            if found is not None:
                return f".{name}{found[0]}", found[1]
        return None
    return None  # a type this check does not know: the codec's decode-and-compare still holds it to exactness


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def event_problem(event: Any, skip: tuple[str, ...] = ()) -> tuple[str, str] | None:
    """The first field of a domain event that cannot be stored exactly: ``(field path, reason)``."""
    hints = _hints(type(event))
    for f in dataclasses.fields(event):
        if f.name in skip:
            continue
        found = value_problem(getattr(event, f.name), hints[f.name])
        if found is not None:
            return f"{f.name}{found[0]}", found[1]
    return None
