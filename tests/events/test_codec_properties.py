"""Property tests of the codec: for every event class, values drawn from the class's own
field types either read back exactly or are refused before the append, naming the event
and the field. Strategies come from the type hints, so a new event or field is covered
as soon as it exists."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opeval.errors import UnrecordableEvent
from opeval.events import ALL_EVENTS, MsgspecMapper

_ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))]


def strategy(tp: Any, *, wild: bool) -> st.SearchStrategy[Any]:  # noqa: PLR0911 - one branch per kind of type
    """Values of type ``tp``: only values the log can hold (``wild=False``), or anything the
    type admits in Python too (NaN, infinities, huge integers, lone surrogates, naive
    datetimes, integer keys) and now and then a value of another type (``wild=True``)."""
    proper = _strategy(tp, wild=wild)
    if not wild:
        return proper
    other = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3),
                      st.lists(st.integers(), max_size=2))
    return st.one_of(proper, proper, proper, other)


def _strategy(tp: Any, *, wild: bool) -> st.SearchStrategy[Any]:  # noqa: PLR0911
    if isinstance(tp, typing.TypeVar):
        return st.uuids()
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy(a, wild=wild) for a in typing.get_args(tp)))
    if tp is type(None):
        return st.none()
    if origin is list:
        (inner,) = typing.get_args(tp)
        return st.lists(strategy(inner, wild=wild), max_size=3)
    if origin is dict:
        _, inner = typing.get_args(tp)
        keys = st.text(alphabet=_text_alphabet(wild), max_size=5)
        if wild:
            keys = st.one_of(keys, st.integers(-3, 3))
        return st.dictionaries(keys, strategy(inner, wild=wild), max_size=3)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.integers() if wild else st.integers(-(2**63), 2**63 - 1)
    if tp is float:
        if wild:
            return st.one_of(st.floats(), st.integers(-(2**70), 2**70))
        return st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
    if tp is str:
        return st.text(alphabet=_text_alphabet(wild), max_size=12)
    if tp is uuid.UUID:
        return st.uuids()
    if tp is dt.datetime:
        zones = st.sampled_from([None, *_ZONES]) if wild else st.sampled_from(_ZONES)
        return st.datetimes(timezones=zones)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = typing.get_type_hints(tp)
        return st.builds(tp, **{f: strategy(hints[f], wild=wild) for f in tp.__struct_fields__})
    raise AssertionError(f"no strategy for {tp!r}: teach this test the new type")


def _text_alphabet(wild: bool) -> st.SearchStrategy[str]:
    # Surrogates (category Cs) are what JSON text cannot carry; only the wild strategy draws them.
    return st.characters(blacklist_categories=() if wild else ("Cs",))


def events(cls: type, *, wild: bool) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy(hints[f.name], wild=wild) for f in dataclasses.fields(cls)
              if f.name not in ("originator_id", "originator_version", "originator_topic")}
    fields["originator_id"] = st.uuids()
    fields["originator_version"] = st.integers(1, 2**31)
    if "originator_topic" in hints:
        fields["originator_topic"] = st.just("opeval.trial:Trial")
    return st.builds(cls, **fields)


_MAPPER = MsgspecMapper()
_SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
@_SETTINGS
@given(data=st.data())
def test_values_the_log_can_hold_always_read_back_exactly(cls: type, data: st.DataObject) -> None:
    event = data.draw(events(cls, wild=False))
    back = _MAPPER.to_domain_event(_MAPPER.to_stored_event(event))
    assert type(back) is cls
    assert vars(back) == vars(event)


@pytest.mark.parametrize("cls", ALL_EVENTS, ids=lambda c: c.__name__)
@_SETTINGS
@given(data=st.data())
def test_any_value_reads_back_exactly_or_is_refused_naming_the_field(cls: type, data: st.DataObject) -> None:
    event = data.draw(events(cls, wild=True))
    try:
        stored = _MAPPER.to_stored_event(event)
    except UnrecordableEvent as e:
        message = str(e)
        assert message.startswith(f"cannot record {cls.__qualname__}: "), message
        field = message.split(": ", 1)[1].split(" ", 1)[0].split(".")[0].split("[")[0]
        assert field in {f.name for f in dataclasses.fields(cls)}, message
        assert "\n" not in message
        return
    back = _MAPPER.to_domain_event(stored)
    assert vars(back) == vars(event)
    # Written again, it is the same bytes: nothing changed on the way (no NaN turned null).
    assert _MAPPER.to_stored_event(back).state == stored.state
