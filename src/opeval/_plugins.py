"""One registry for every plugin kind (subjects, runtimes, chaos kinds, agents).

Built-ins register with :meth:`Registry.register`; third parties add an entry point in
the registry's group (``opeval.subjects`` ...) and need not edit opeval.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from opeval.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one kind, from code and from the entry-point ``group``."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            self._items[name] = obj
            return obj

        return decorate

    def _load_entry_points(self) -> None:
        if self._loaded_entry_points:
            return
        self._loaded_entry_points = True
        for ep in entry_points(group=self.group):
            if ep.name not in self._items:
                self._items[ep.name] = ep.load()

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The plugin called ``name``, or a UsageError listing the choices."""
        if name not in self._items:
            self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            choices = ", ".join(self.names()) or "none installed"
            raise UsageError(f"unknown {self.kind} {name!r}: choose one of {choices}") from None
