"""The metric vocabulary: one :class:`MetricSpec` per quantity a run or ``sgdlab.Monitor`` can log.

Every producer of metrics feeds this registry and every reader reads it:

* producers: the model families' ``metrics()`` (train/test loss and error, ``l0``, ``jacobian_rank``,
  ``block{l}_sparsity``, ...), curvature tracking (``sharpness``, ``hessian_eig{i}``, batch
  estimates), the Monitor's probes (``threshold``, ``{layer}_sparsity``, ``dead_fraction``, ...) and
  a user's ``sgdlab.register_metric`` (whose spec carries ``compute``, see below);
* readers: the engine and the Monitor (which names are valid, error messages listing them), the
  panels and sweep figures (``label``, ``log_scale``), the summary table (``table``), and every
  reader of a run directory (:meth:`MetricRegistry.canonical_keys` renames the deprecated names a
  directory written before may hold).

A spec's ``name`` may hold placeholders, which make it a *family* of names: ``{i}`` matches digits
(``hessian_eig{i}``), any other ``{word}`` a non-empty string (``{layer}_sparsity`` matches
``block1_sparsity`` and a Monitor layer ``features.3_sparsity``); its label may use the same
placeholders. ``ema_<name>`` (the EMA copy of a model metric) is derived from ``<name>``'s spec.

One name per quantity: a quantity renamed keeps its old name as a deprecated *alias*
(:meth:`MetricRegistry.alias`); configs naming it (``metrics.names``, ``figure``) are mapped to the
new name with a :class:`DeprecationWarning`, and run directories written before read as if written
with the new names.

``compute`` (user metrics): ``fn(model, params, data) -> (R,)``, called under ``torch.no_grad()``
with a batched model, the parameters of R runs (``(R, ...)`` tensors) and the dataset. The engine
calls it on its runs; the Monitor calls the same function with R = 1 on a view of the user's
``nn.Module`` (:mod:`sgdlab.engine.bridge`).

Torch-free: configs validate names against it without importing torch.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from sgdlab.core.errors import ConfigError, SgdlabDeprecationWarning, choices_message
from sgdlab.core.registry import Registry

__all__ = ["EMA_PREFIX", "METRIC_SPECS", "MetricRegistry", "MetricSpec"]

# Model metrics of the EMA weights are logged again under this prefix (optim EMA).
EMA_PREFIX = "ema_"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class MetricSpec:
    """One logged quantity (module doc).

    name: the logged name, or a family with placeholders; description: its definition (formula,
    units); label: panel title / axis label in plain Unicode ("" = the name); log_scale: drawn on a
    log axis (spans many decades); source: who logs it ("model", "curvature", "monitor", "engine",
    "user"); table: its column in the printed summary table, 1 = first (0 = not shown);
    compute: ``fn(model, params, data) -> (R,)`` for metrics computed from the parameters by the
    spec itself (user metrics), None when its source logs it.
    """

    name: str
    description: str
    label: str = ""
    log_scale: bool = False
    source: str = "model"
    table: int = 0
    compute: Callable | None = None

    def label_for(self, name: str) -> str:
        """The label of ``name`` (a member of this spec's family): placeholders filled in."""
        fields = _match(self.name, name)
        text = self.label or self.name
        if not fields:
            return text
        try:
            return text.format(**fields)
        except (KeyError, IndexError, ValueError):  # a label with braces of its own
            return text


@functools.cache
def _pattern(template: str) -> re.Pattern:
    parts, pos = [], 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos:m.start()]))
        parts.append(rf"(?P<{m.group(1)}>\d+)" if m.group(1) == "i" else rf"(?P<{m.group(1)}>.+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def _match(template: str, name: str) -> dict | None:
    if "{" not in template:
        return {} if template == name else None
    m = _pattern(template).fullmatch(name)
    return m.groupdict() if m else None


class MetricRegistry(Registry[MetricSpec]):
    """Metric specs by name (exact names and placeholder families) plus deprecated aliases."""

    def __init__(self):
        super().__init__("metric")
        self._families: list[MetricSpec] = []  # specs whose name has placeholders, in order added
        self._aliases: list[tuple[str, str]] = []  # (old template, new template)
        self._canonical: dict[str, str] = {}  # memo of canonical(): run directories repeat names per row

    # ----------------------------------------------------------------- building
    def add_spec(self, spec: MetricSpec) -> MetricSpec:
        """Add ``spec``; a name (or family) registered twice raises."""
        self.add(spec.name, spec)
        if "{" in spec.name:
            self._families.append(spec)
        return spec

    def alias(self, old: str, new: str) -> None:
        """Accept the deprecated name ``old`` for ``new`` (templates with the same placeholders)."""
        self._aliases.append((old, new))
        self._canonical.clear()

    def remove(self, name: str) -> None:
        """Drop a spec (tests registering a throwaway metric clean up with it)."""
        spec = self._items.pop(name, None)
        if spec is not None and spec in self._families:
            self._families.remove(spec)

    # ----------------------------------------------------------------- lookup
    def spec(self, name: str) -> MetricSpec | None:
        """The spec of a logged name: exact, else ``ema_`` of a known name, else its family."""
        if not isinstance(name, str):
            return None
        got = self._items.get(name)
        if got is not None:
            return got
        if name.startswith(EMA_PREFIX):
            base = self.spec(name[len(EMA_PREFIX):])
            if base is not None:
                return replace(base, name=EMA_PREFIX + base.name, label=f"EMA {base.label_for(name[len(EMA_PREFIX):])}",
                               description=f"{base.description} (of the EMA weights)", compute=None, table=0)
        return next((s for s in self._families if _match(s.name, name) is not None), None)

    def get(self, name: str) -> MetricSpec:
        spec = self.spec(name)
        return spec if spec is not None else super().get(name)

    def get_or_none(self, name: str) -> MetricSpec | None:
        return self.spec(name)

    def __contains__(self, name: object) -> bool:
        return self.spec(name) is not None  # type: ignore[arg-type]

    def label(self, name: str) -> str:
        """Panel title / axis label of ``name`` (the name itself when it has no spec)."""
        spec = self.spec(self.canonical(name))
        return spec.label_for(self.canonical(name)) if spec is not None else name

    def log_scale(self, name: str) -> bool:
        """Whether ``name`` is drawn on a log axis (False when it has no spec)."""
        spec = self.spec(self.canonical(name))
        return spec is not None and spec.log_scale

    def computed(self, name: str) -> MetricSpec | None:
        """The spec of ``name`` when it carries its own ``compute`` (a user metric)."""
        spec = self.spec(name)
        return spec if spec is not None and spec.compute is not None else None

    def computed_names(self) -> list[str]:
        """Names of the specs that carry their own ``compute`` (user metrics), sorted."""
        return sorted(k for k, s in self._items.items() if s.compute is not None)

    def table_names(self) -> list[str]:
        """Exact names shown in summary tables, in column order."""
        return sorted((k for k, s in self._items.items() if s.table), key=lambda k: self._items[k].table)

    # ----------------------------------------------------------------- old names
    def canonical(self, name: str) -> str:
        """The current name of ``name`` (itself unless it is a deprecated alias)."""
        if not isinstance(name, str):
            return name
        if name not in self._canonical:
            self._canonical[name] = self._rename(name)
        return self._canonical[name]

    def _rename(self, name: str) -> str:
        prefix = EMA_PREFIX if name.startswith(EMA_PREFIX) else ""
        bare = name[len(prefix):]
        for old, new in self._aliases:
            fields = _match(old, bare)
            if fields is not None:
                return prefix + new.format(**fields)
        return name

    def canonical_names(self, names: Iterable[str], where: str) -> tuple[str, ...]:
        """``names`` with deprecated ones mapped to their new names, one DeprecationWarning
        naming every mapping (``where``: the config key, e.g. ``metrics.names``)."""
        names = tuple(names)
        new = tuple(self.canonical(n) for n in names)
        moved = [f"{a!r} -> {b!r}" for a, b in zip(names, new) if a != b]
        if moved:
            warnings.warn(f"{where}: deprecated metric names, use the new ones: {', '.join(moved)}",
                          SgdlabDeprecationWarning, stacklevel=3)
        return new if moved else names  # the same object when nothing moved (configs rebuilt per grid point share it)

    def canonical_keys(self, values: Mapping) -> dict:
        """A dict keyed by metric names with deprecated names renamed (silently: reading a run
        directory written before); a key present under both names keeps the new one's value."""
        out = {}
        for k, v in values.items():
            new = self.canonical(k)
            if new == k or new not in values:
                out[new] = v
        return out

    def choices(self, name: str, valid: Iterable[str]) -> str:
        """``choices_message`` for ``name`` against ``valid``, pointing to the renamed name."""
        new = self.canonical(name)
        hint = f" (renamed {new!r})" if new != name else ""
        return choices_message("metric", name, list(valid)) + hint

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, source, description) of every spec, sorted by name (for help texts and docs)."""
        return [(k, s.source, s.description) for k, s in sorted(self._items.items())]


METRIC_SPECS = MetricRegistry()


def _builtin() -> None:
    from sgdlab.metrics.vocabulary import ALIASES, BUILTIN

    for fields in BUILTIN:
        METRIC_SPECS.add_spec(MetricSpec(**fields))
    for old, new in ALIASES:
        METRIC_SPECS.alias(old, new)


def unknown_metric(name: str, valid: Iterable[str], where: str) -> ConfigError:
    """The one-line error of an unknown metric name at config key ``where``."""
    return ConfigError(f"{where}: {METRIC_SPECS.choices(name, valid)}")


_builtin()
