"""The msgspec codec of stored events.

A plain JSON transcoder turns datetimes, UUIDs and structs into strings and dicts and
never turns them back. This mapper decodes each event's state *with the event class's
own field types*, so every field comes back exactly as it went in. Older payloads
(``class_version`` lower than the class's) take the slow path: untyped decode, the
class's ``upcast_vN_vN+1`` methods in order, then conversion to the typed state.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from eventsourcing.utils import get_topic, resolve_topic

_IDENTITY_FIELDS = ("originator_id", "originator_version")


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

    def state_of(self, decoded: Any) -> dict[str, Any]:
        return {name: getattr(decoded, name) for name in self.names}


class MsgspecMapper(Mapper):  # type: ignore[type-arg]
    """Maps domain events to stored events and back, exactly."""

    def __init__(self) -> None:
        super().__init__(transcoder=MsgspecTranscoder())
        self._encoder = msgspec.json.Encoder()
        self._shapes: dict[type, _EventShape] = {}
        self._outgoing: dict[type, tuple[str, int]] = {}  # class -> (topic, class_version)

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
        if out[1] > 1:
            state["class_version"] = out[1]
        return StoredEvent(originator_id, originator_version, out[0], self._encoder.encode(state))

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a stored event with its class's field types, upcasting old versions."""
        cls = resolve_topic(stored_event.topic)
        shape = self._shape(cls)
        try:
            decoded = shape.decoder.decode(stored_event.state)
            if decoded.class_version != shape.class_version:
                raise _NeedsUpcast
            state = shape.state_of(decoded)
        except (msgspec.ValidationError, _NeedsUpcast):
            state = self._upcast(shape, stored_event.state)
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
