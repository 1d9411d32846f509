"""The msgspec codec of stored events.

A plain JSON transcoder turns datetimes, UUIDs and structs into strings and dicts and
never turns them back. This mapper decodes each event's state *with the event class's
own field types*, so every field comes back exactly as it went in. Older payloads
(``class_version`` lower than the class's) take the slow path: untyped decode, the
class's ``upcast_vN_vN+1`` methods in order, then conversion to the typed state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import typing
from typing import Any

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic

from opeval.errors import UndecodableEvent, UnrecordableEvent
from opeval.events._values import event_problem

_IDENTITY_FIELDS = ("originator_id", "originator_version")
#: A run of digits long enough to be an integer beyond 64 bits (checked precisely then).
_LONG_DIGITS = re.compile(rb"\d{19,}")


class _NeedsUpcast(Exception):
    pass


class MsgspecTranscoder(Transcoder):
    """Untyped msgspec JSON; used only where no event type is known."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        return msgspec.json.decode(data)


def _mentions_float(tp: Any, seen: frozenset[Any] = frozenset()) -> bool:
    """Does ``tp`` hold a float anywhere (in a union, a container or a struct's fields)?"""
    if tp is float:
        return True
    if tp in seen:
        return False
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        hints = typing.get_type_hints(tp)
        return any(_mentions_float(hints[n], seen | {tp}) for n in tp.__struct_fields__)
    return any(_mentions_float(arg, seen) for arg in typing.get_args(tp))


class _EventShape:
    """Everything needed to decode one event class, computed once."""

    def __init__(self, cls: type) -> None:
        hints = typing.get_type_hints(cls)
        self.names = [f.name for f in dataclasses.fields(cls) if f.name not in _IDENTITY_FIELDS]
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
            (name, hints[name]) for name in self.names
        ]
        fields.append(("class_version", int, 1))
        self.struct = msgspec.defstruct(f"{cls.__name__}State", fields, kw_only=True)
        self.decoder = msgspec.json.Decoder(self.struct)
        self.class_version: int = getattr(cls, "class_version", 1)
        self.cls = cls
        #: An int in a float field decodes as a float, so the first encoding is not the one
        #: a reader writes back; for such classes the payload is encoded from the decoded state.
        self.holds_floats = any(_mentions_float(hints[name]) for name in self.names)
        self.datetimes = [name for name in self.names if hints[name] is dt.datetime]

    def state_of(self, decoded: Any) -> dict[str, Any]:
        return {name: getattr(decoded, name) for name in self.names}


class MsgspecMapper(Mapper):  # type: ignore[type-arg]
    """Maps domain events to stored events and back, exactly."""

    def __init__(self) -> None:
        super().__init__(transcoder=MsgspecTranscoder())
        self._encoder = msgspec.json.Encoder()
        self._shapes: dict[type, _EventShape] = {}
        self._outgoing: dict[type, tuple[str, int]] = {}  # class -> (topic, class_version)
        self._topic_shapes: dict[str, _EventShape] = {}

    def _shape(self, cls: type) -> _EventShape:
        shape = self._shapes.get(cls)
        if shape is None:
            shape = self._shapes[cls] = _EventShape(cls)
        return shape

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encode an event's state (everything but its identity) as msgspec JSON."""
        cls = type(domain_event)
        out = self._outgoing.get(cls)
        if out is None:
            out = self._outgoing[cls] = (get_topic(cls), getattr(cls, "class_version", 1))
        state = domain_event.__dict__.copy()
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        try:
            payload = self._encoder.encode(state)
        except (TypeError, ValueError, OverflowError) as e:  # an unpaired surrogate, a tuple key...
            raise self._refused(domain_event, event_problem(domain_event, skip=_IDENTITY_FIELDS), str(e)) from None
        shape = self._shape(cls)
        suspect = _LONG_DIGITS.search(payload) or any(
            getattr(state[name], "tzinfo", True) is None for name in shape.datetimes)
        # The precise check runs only on suspicion (long digits are mostly text, not integers).
        found = event_problem(domain_event, skip=_IDENTITY_FIELDS) if suspect else None
        decoded = None if found is not None else self._read_back(shape, state, payload)
        if decoded is None:
            raise self._refused(domain_event, found or event_problem(domain_event, skip=_IDENTITY_FIELDS),
                                "it would not read back as it was written")
        if shape.holds_floats:
            state = decoded  # 3 in a float field is written 3.0, as a reader would write it back
            payload = self._encoder.encode(state)
        if out[1] > 1:
            state["class_version"] = out[1]
            payload = self._encoder.encode(state)
        return StoredEvent(originator_id, originator_version, out[0], payload)

    @staticmethod
    def _read_back(shape: _EventShape, state: dict[str, Any], payload: bytes) -> dict[str, Any] | None:
        """``payload`` decoded with the class's types, if that is exactly ``state``; else None."""
        try:
            decoded = shape.state_of(shape.decoder.decode(payload))
        except msgspec.ValidationError:
            return None
        return decoded if decoded == state else None

    @staticmethod
    def _refused(event: Any, found: tuple[str, str] | None, fallback: str) -> UnrecordableEvent:
        where, reason = found if found else ("", fallback)
        return UnrecordableEvent(f"cannot record {type(event).__qualname__}: {where + ' ' if where else ''}{reason}"
                                 " (the log holds only values that read back exactly)")

    def current_payload(self, stored_event: StoredEvent) -> bytes:
        """The payload as this version writes it: the same bytes when they decode with the
        class's types, the upcast event re-encoded for an older version; raises
        :class:`~opeval.errors.UndecodableEvent` for one that cannot be decoded."""
        return self.current_state(stored_event.topic, stored_event.state, stored_event.originator_id,
                                  stored_event.originator_version)

    def current_state(self, topic: str, state: bytes, originator_id: Any, version: int) -> bytes:
        """:meth:`current_payload` of one raw row of the log (a bulk reader builds no
        ``StoredEvent`` for the events that are already current, nearly all of them)."""
        shape = self._topic_shapes.get(topic)
        if shape is not None:
            try:
                if shape.decoder.decode(state).class_version == shape.class_version:
                    return bytes(state)
            except msgspec.ValidationError:
                pass
        stored_event = StoredEvent(originator_id, version, topic, state)
        event = self.to_domain_event(stored_event)
        self._topic_shapes[stored_event.topic] = self._shape(type(event))
        return self.to_stored_event(event).state

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a stored event with its class's field types, upcasting old versions."""
        try:
            cls = resolve_topic(stored_event.topic)
            shape = self._shape(cls)
            try:
                decoded = shape.decoder.decode(stored_event.state)
                if decoded.class_version != shape.class_version:
                    raise _NeedsUpcast
                state = shape.state_of(decoded)
            except (msgspec.ValidationError, _NeedsUpcast):
                state = self._upcast(shape, stored_event.state)
        except Exception as e:  # noqa: BLE001 - whatever an old payload does, it is one unreadable event
            reason = " ".join(str(e).split()) or type(e).__name__
            name = stored_event.topic.rpartition(":")[2]
            raise UndecodableEvent(
                f"event {name} #{stored_event.originator_version} of {stored_event.originator_id} "
                f"cannot be decoded: {reason}", originator_id=stored_event.originator_id,
                version=stored_event.originator_version, topic=stored_event.topic, reason=reason) from None
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event

    def _upcast(self, shape: _EventShape, payload: bytes) -> dict[str, Any]:
        raw: dict[str, Any] = msgspec.json.decode(payload)
        version = raw.pop("class_version", 1)
        while version < shape.class_version:
            getattr(shape.cls, f"upcast_v{version}_v{version + 1}")(raw)
            version += 1
        return shape.state_of(msgspec.convert(raw, shape.struct, strict=False))
