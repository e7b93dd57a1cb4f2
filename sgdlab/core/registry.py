"""A small name -> factory registry that fails loudly on unknown names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sgdlab.core.errors import ConfigError, choices_message

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (factories, config classes, functions).

    `get` raises `ConfigError` listing the valid names, never returns None.
    """

    def __init__(self, what: str):
        self.what = what
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        return self.register(name)(obj)

    def get(self, name: str) -> T:
        if isinstance(name, str) and name not in self._items:
            from sgdlab.core.plugins import load_entry_points

            load_entry_points()  # an installed plugin may provide it (once per process)
        if not isinstance(name, str) or name not in self._items:
            raise ConfigError(choices_message(self.what, name, self._items))
        return self._items[name]

    def get_or_none(self, name: str) -> T | None:
        return self._items.get(name) if isinstance(name, str) else None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
