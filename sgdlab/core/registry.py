"""A small name -> factory registry that fails loudly on unknown names."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from sgdlab.core.errors import ConfigError, choices_message

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (factories, config classes, functions).

    `get` raises `ConfigError` listing the valid names, never returns None. A name is owned by
    whoever registered it first: a second registration (a user kind named like a bundled one, or
    two plugins choosing one name) raises a `ConfigError` naming both sources. ``reserved`` maps
    names the registry does not hold but must not be given (e.g. built-in metrics computed by the
    models) to their owner.
    """

    def __init__(self, what: str, reserved: dict[str, str] | None = None):
        self.what = what
        self._items: dict[str, T] = {}
        self.reserved = dict(reserved or {})

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            old = self._items.get(name)
            owner = source_of(old) if old is not None else self.reserved.get(name)
            if old is not None and same_definition(old, obj):  # its module imported again: replaced
                owner = None
            if owner is not None:
                raise ConfigError(f"{self.what} {name!r} registered twice: {source_of(obj)} gives it, but it "
                                  f"belongs to {owner}; choose another name")
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


def source_of(obj) -> str:
    """Where an object was defined, for messages: ``sgdlab (built-in, module)`` or ``module (file)``."""
    mod = getattr(obj, "__module__", None) or "?"
    if mod == "sgdlab" or mod.startswith("sgdlab."):
        return f"sgdlab (built-in, {mod})"
    path = getattr(sys.modules.get(mod), "__file__", None)
    return f"{mod} ({path})" if path else mod


def same_definition(old, new) -> bool:
    """The same definition from the same module file (the module was imported again, e.g. after
    it left ``sys.modules``): a re-registration, not a clash."""
    return (getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None) is not None
            and source_of(old) == source_of(new) and not source_of(new).startswith("sgdlab"))
