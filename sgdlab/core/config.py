"""Typed, frozen dataclass configs: conversion from/to plain dicts, TOML files and
`key=value` overrides, with errors that name the bad key and what is allowed.

Conventions
-----------
* Every config is a ``@dataclass(frozen=True)``; validation lives in ``__post_init__``
  and raises :class:`~sgdlab.core.errors.ConfigError`.
* A field whose type is a *polymorphic* base (a subclass of :class:`Choice`) is written
  as a table with a ``kind`` key naming the registered subclass, e.g.
  ``schedule = {kind = "piecewise", lr = 0.282, milestones = [0.1], factors = [4.8]}``.
* Overrides use dotted paths; integers index tuples: ``arms.0.schedule.lr=0.27``.
  Values are parsed as TOML values (``1e-3``, ``true``, ``[0.1, 0.3]``), else kept as strings.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, Union, get_args, get_origin, get_type_hints

import tomli_w

from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.core.registry import Registry

__all__ = [
    "Choice",
    "check",
    "dump_toml",
    "flat_fields",
    "from_dict",
    "load_toml",
    "override",
    "override_values",
    "parse_value",
    "to_dict",
    "value_at",
]


class Choice:
    """Base of a family of interchangeable configs selected by ``kind``.

    A direct subclass declares ``registry = Registry("...")``; concrete subclasses
    declare ``kind = "name"`` and are registered automatically.
    """

    registry: ClassVar[Registry]
    kind: ClassVar[str]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "registry" in cls.__dict__:
            return
        kind = cls.__dict__.get("kind")
        if kind is not None:
            cls.registry.add(kind, cls)


@functools.cache
def _hints(cls) -> dict:
    """``get_type_hints(cls)``, once per class: resolving string annotations costs more than the
    rest of building a config, and a grid builds thousands."""
    return get_type_hints(cls)


def check(cond: bool, msg: str) -> None:
    """Raise ConfigError(msg) unless cond: the one-line validator used in __post_init__."""
    if not cond:
        raise ConfigError(msg)


def _is_choice_base(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, Choice) and "registry" in tp.__dict__


def _accepts_shape(tp, value) -> bool:
    """Whether ``tp`` takes values shaped like ``value``: tables for configs, lists for tuples
    (for a list, the deepest-nested tuple type that fits; see the Union branch of _convert)."""
    if isinstance(value, dict):
        return dataclasses.is_dataclass(tp) or _is_choice_base(tp)
    if isinstance(value, (list, tuple)):
        return get_origin(tp) is tuple and _depth(tp) == _depth(value)
    return False


def _depth(x) -> int:
    """Nesting depth of a tuple type or of a list value (scalars: 0)."""
    if isinstance(x, (list, tuple)):
        return 1 + max((_depth(v) for v in x), default=0)
    if get_origin(x) is tuple:
        return 1 + max((_depth(a) for a in get_args(x) if a is not Ellipsis), default=0)
    return 0


def _type_name(tp) -> str:
    if get_origin(tp) is tuple:  # written as a TOML list
        return "list of " + ("lists" if _depth(tp) > 1 else "numbers" if get_args(tp)[0] is float else
                             _type_name(get_args(tp)[0]))
    return getattr(tp, "__name__", str(tp))


def _convert(tp, value, path: str):
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path)
            except ConfigError as e:
                errors.append((a, e))
        # A table or list that fails the one member of its shape: that member's error is the
        # informative one (e.g. a schedule table's bad key), not "matches none of ...".
        same_shape = [e for a, e in errors if _accepts_shape(a, value)]
        if len(same_shape) == 1:
            raise same_shape[0]
        names = dict.fromkeys(_type_name(a) for a in args if a is not type(None))
        raise ConfigError(f"{path}: {value!r} matches none of {', '.join(names)}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {choices_message('value', value, allowed)}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}.{i}") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{path}.{i}") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp) or _is_choice_base(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a table for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{path}: unsupported config type {tp!r}")


def from_dict(cls, data: dict, path: str = ""):
    """Build config ``cls`` from a plain dict, checking keys, types and values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a table, got {data!r}")
    data = dict(data)
    if _is_choice_base(cls) or (isinstance(cls, type) and issubclass(cls, Choice)):
        kind = data.pop("kind", getattr(cls, "kind", None) if "kind" in cls.__dict__ else None)
        if kind is None:
            raise ConfigError(
                f"{path}: missing 'kind'; {choices_message(cls.registry.what, None, cls.registry.names())}"
            )
        try:
            cls = cls.registry.get(kind)
        except ConfigError as e:
            raise ConfigError(f"{path}.kind: {e}") from None
    prepare = getattr(cls, "prepare_dict", None)
    if prepare is not None:  # e.g. ExperimentConfig imports the modules that define user kinds first
        data = prepare(data)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - set(fields)
    if unknown:
        bad = min(unknown)
        where = f"{path}.{bad}" if path else bad
        raise ConfigError(f"{where}: {choices_message(f'key for {cls.__name__}', bad, fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value, f"{path}.{name}" if path else name)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None
    except TypeError as e:  # missing required fields
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def to_dict(obj) -> Any:
    """Plain-dict form of a config (tuples become lists, Choice adds ``kind``)."""
    if dataclasses.is_dataclass(obj):
        out = {}
        if isinstance(obj, Choice):
            out["kind"] = obj.kind
        for f in dataclasses.fields(obj):
            v = getattr(obj, f.name)
            if v is None:  # TOML has no null: an omitted key means the default (None)
                continue
            out[f.name] = to_dict(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def load_toml_table(path: str | Path, what: str = "config file") -> dict:
    """The table of a TOML file, with one-line errors for a missing, unreadable or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} " + ("is a directory" if path.is_dir() else "does not exist"))
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {str(path)!r} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be read: {e}") from None


def load_toml(cls, path: str | Path):
    return from_dict(cls, load_toml_table(path))


def dump_toml(obj) -> str:
    return tomli_w.dumps(to_dict(obj))


def parse_value(text: str):
    """A ``--set`` value: TOML when it parses (numbers, booleans, lists, quoted strings), else the text."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(tree, keys: list[str], value, full: str):
    key, rest = keys[0], keys[1:]
    if isinstance(tree, list):
        try:
            i = int(key)
            node = tree[i]
        except (ValueError, IndexError):
            raise ConfigError(f"{full}: {key!r} is not an index of a list of {len(tree)} items") from None
        if rest:
            _set_path(node, rest, value, full)
        else:
            tree[i] = value
        return
    if not isinstance(tree, dict):
        raise ConfigError(f"{full}: cannot descend into {tree!r}")
    if rest:
        if key not in tree:
            tree[key] = {}
        _set_path(tree[key], rest, value, full)
    else:
        tree[key] = value


def value_at(tree, keys: list[str]):
    """The value at dotted ``keys`` (split) of a plain-dict config; a KeyError where there is none."""
    for k in keys:
        if isinstance(tree, list) and k.lstrip("-").isdigit() and -len(tree) <= int(k) < len(tree):
            tree = tree[int(k)]
        elif isinstance(tree, dict) and k in tree:
            tree = tree[k]
        else:
            raise KeyError(".".join(keys))
    return tree


def _table_at(tree, keys: list[str]):
    """The table at dotted ``keys`` of a plain-dict config, or None where there is none."""
    try:
        tree = value_at(tree, keys)
    except KeyError:
        return None
    return tree if isinstance(tree, dict) else None


@functools.cache
def _init_fields(cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init)


class _Rebuild(Exception):
    """An assignment the in-place path does not take; :func:`override` rebuilds the whole tree."""


def _assign(node, keys: list[str], value, full: str):
    """``node`` with the scalar at dotted ``keys`` set to ``value``: the value converted as
    ``from_dict`` converts it, and every config on the path rebuilt (its ``__post_init__`` checks
    run again); the configs off the path are reused as they are. _Rebuild where that is not
    the same as rebuilding the whole tree: a ``kind`` switch, a whole list item, a missing or
    renamed key, a key a ``prepare_dict`` rewrites, or a value a check refuses (the full
    rebuild then words the error)."""
    key, rest = keys[0], keys[1:]
    if isinstance(node, tuple):
        if not (rest and key.isdigit() and int(key) < len(node)):
            raise _Rebuild
        i = int(key)
        return (*node[:i], _assign(node[i], rest, value, full), *node[i + 1:])
    if not dataclasses.is_dataclass(node) or key == "kind":
        raise _Rebuild
    cls = type(node)
    if key not in _init_fields(cls):
        raise _Rebuild
    if rest:
        new = _assign(getattr(node, key), rest, value, full)
    else:
        prepare = getattr(cls, "prepare_dict", None)
        if prepare is not None and prepare({key: value}) != {key: value}:
            raise _Rebuild
        new = _convert(_hints(cls)[key], value, full)
    return dataclasses.replace(node, **{key: new})


def override(cfg, assignments: list[str] | tuple[str, ...]):
    """Return ``cfg`` with ``key.path=value`` assignments applied and re-validated.

    An assignment ``X.kind=K`` that changes the kind of table ``X`` starts that table afresh from
    kind ``K``'s defaults (the old kind's keys need not exist in the new one); the other
    assignments to ``X.*`` apply on top of it, whatever their order on the command line.

    Scalar assignments take a shortcut with the same result: only the configs on their paths
    are rebuilt and checked (a sweep grid overrides its base once per point)."""
    parsed = []
    for a in assignments:
        if "=" not in a:
            raise ConfigError(f"override {a!r} must look like key.path=value")
        key, text = a.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {a!r} has an empty key")
        parsed.append((key, parse_value(text.strip())))
    return override_values(cfg, parsed)


def override_values(cfg, parsed: list[tuple[str, Any]]):
    """:func:`override` with the values already parsed: ``[(dotted key, value)]``."""
    if dataclasses.is_dataclass(cfg):
        try:
            out = cfg
            for key, value in parsed:
                out = _assign(out, key.split("."), value, key)
            return out
        except (_Rebuild, ConfigError):
            pass  # the whole tree below gives the answer, and words any error
    data = to_dict(cfg)
    # kind switches first (outer tables before inner ones), then every other key on top
    for key, value in sorted((p for p in parsed if p[0].split(".")[-1] == "kind"), key=lambda p: p[0].count(".")):
        table = _table_at(data, key.split(".")[:-1])
        if table is not None and table.get("kind") != value:
            table.clear()
        _set_path(data, key.split("."), value, key)
    for key, value in parsed:
        if key.split(".")[-1] != "kind":
            _set_path(data, key.split("."), value, key)
    return from_dict(type(cfg), data)


def flat_fields(cls, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted name, type, default) of every scalar field: the CLI's list of settable keys."""
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        )
        if dataclasses.is_dataclass(tp) and not _is_choice_base(tp):
            out.extend(flat_fields(tp, name + "."))
        else:
            out.append((name, tp, default))
    return out


def flat_items(obj, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, type, value) of every settable scalar of a config *instance*: its own values
    (tables of a ``kind`` show that kind's keys, lists of tables are numbered), for ``--set``."""
    out = []
    hints = _hints(type(obj))
    if isinstance(obj, Choice):
        out.append((f"{prefix}kind", "str", obj.kind))
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            out.extend(flat_items(v, name + "."))
        elif isinstance(v, tuple) and v and all(dataclasses.is_dataclass(x) for x in v):
            for i, x in enumerate(v):
                out.extend(flat_items(x, f"{name}.{i}."))
        else:
            out.append((name, typing_repr(hints[f.name]), v))
    return out


def toml_value(value) -> str:
    """A Python scalar/list as a TOML value (the inverse of override's value parsing)."""
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def typing_repr(tp) -> str:
    """Short human form of a type hint, for help texts."""
    return typing._type_repr(tp) if hasattr(typing, "_type_repr") else str(tp)
