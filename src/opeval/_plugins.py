"""One registry for every plugin kind (subjects, runtimes, chaos kinds, agents).

Built-ins register with :meth:`Registry.register` and are entry points too; third parties
add an entry point in the registry's group (``opeval.subjects`` ...) and need not edit
opeval. A name registered in code wins over an entry point of the same name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from opeval.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plugins of one kind, from code and from the entry-point ``group``."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._code: dict[str, T] = {}
        self._entry_points: dict[str, T] | None = None  # loaded on first need
        self._broken: dict[str, str] = {}  # entry points that failed to load, and why

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name``."""

        def decorate(obj: T) -> T:
            self._code[name] = obj
            return obj

        return decorate

    @contextlib.contextmanager
    def registered(self, name: str, obj: T) -> Iterator[T]:
        """Register ``obj`` under ``name`` while the block runs (tests, the testing kit)."""
        missing = object()
        previous = self._code.get(name, missing)
        self._code[name] = obj
        try:
            yield obj
        finally:
            if previous is missing:
                del self._code[name]
            else:
                self._code[name] = previous  # type: ignore[assignment]

    def reload(self) -> None:
        """Read the entry points again (a plugin was installed or removed in this process)."""
        self._entry_points = None

    def _loaded(self) -> dict[str, T]:
        if self._entry_points is None:
            self._entry_points, self._broken = {}, {}
            for ep in entry_points(group=self.group):
                if ep.name in self._code:
                    continue
                try:
                    self._entry_points[ep.name] = ep.load()
                except Exception as e:  # noqa: BLE001 - one broken plugin must not hide the others
                    self._broken[ep.name] = f"{ep.value}: {type(e).__name__}: {e}"
        return {**self._entry_points, **self._code}

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._loaded())

    def get(self, name: str) -> T:
        """The plugin called ``name``, or a UsageError listing the choices."""
        found = self._code.get(name)
        if found is not None:
            return found
        try:
            return self._loaded()[name]
        except KeyError:
            if name in self._broken:
                raise UsageError(f"the {self.kind} plugin {name!r} cannot be loaded ({self._broken[name]}): "
                                 "reinstall or remove it") from None
            choices = ", ".join(self.names()) or "none installed"
            raise UsageError(f"unknown {self.kind} {name!r}: choose one of {choices}") from None
