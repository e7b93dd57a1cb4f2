"""Every registered kind, by family: what ``sgdlab kinds [FAMILY]`` prints.

Families: the config kinds (``data``, ``model``, ``optimizer``, ``schedule``: the registries of
their :class:`~sgdlab.core.config.Choice` bases, with keys, types and defaults from the dataclass
fields), ``metric`` (curvature tracking's quantities and metrics registered with
``sgdlab.register_metric``; a model's own metrics depend on the model and its data:
``--for EXPERIMENT`` lists exactly those of one experiment), ``figure`` (``plots.FIGURES``) and
``executor`` (where sweep jobs run). Bundled and user kinds alike: a user's kinds are listed once
their module is imported (``--import``, or installed plugins' entry points).

Config families read only the config dataclasses (no torch); ``figure`` imports the plotting
package and ``metric --for`` builds the experiment's data and model.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass

from sgdlab.core.errors import ConfigError, choices_message

__all__ = ["FAMILIES", "Kind", "describe", "format_kinds", "type_text", "value_text"]

DESCRIPTION_CHARS = 120  # a description is one line of a terminal

FAMILIES = ("data", "model", "optimizer", "schedule", "metric", "figure", "executor")


@dataclass(frozen=True)
class Kind:
    """One registered kind: its family, name, one-line description and (key, type, default) rows."""

    family: str
    name: str
    description: str
    keys: tuple[tuple[str, str, str], ...] = ()


def _first_line(doc: str | None, cls_name: str = "") -> str:
    doc = (doc or "").strip()
    if not doc or (cls_name and doc.startswith(cls_name + "(")):  # dataclass's generated signature
        return ""
    para = " ".join(doc.split("\n\n")[0].split())
    first = re.match(r"(.+?[.;])(\s+[A-Z(`]|$)", para)  # its first sentence
    line = first.group(1) if first else para
    return line if len(line) <= DESCRIPTION_CHARS else line[: DESCRIPTION_CHARS - 3].rstrip() + "..."


def type_text(tp) -> str:
    """A type hint as a user reads it: "one of 'a', 'b'", "schedule table | unset", "list of int"."""
    s = tp.__name__ if isinstance(tp, type) else str(tp)
    s = re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", s)
    s = re.sub(r"sgdlab\.[\w.]+\.(\w+)Config", lambda m: f"{m.group(1).lower()} table", s)
    s = re.sub(r"tuple\[(\w+), \.\.\.\]", r"list of \1", s)
    return s.replace(" | None", " | unset").replace("typing.", "")


def value_text(v) -> str:
    """A value (a default, a setting) as one line of TOML: "(unset)" for None."""
    from sgdlab.core.config import to_dict, toml_value

    if v is None:
        return "(unset)"
    if v is dataclasses.MISSING:
        return "(required)"
    v = to_dict(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value_text(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {value_text(x)}" for k, x in v.items()) + "}"
    try:
        return toml_value(v)
    except (TypeError, ValueError):
        return repr(v)


def _config_kinds(family: str) -> list[Kind]:
    from sgdlab.data.base import DataConfig
    from sgdlab.models.base import ModelConfig
    from sgdlab.optim.config import OptimizerConfig
    from sgdlab.optim.schedules import ScheduleConfig
    from sgdlab.spec import experiment  # noqa: F401  (imports every bundled config kind)
    from sgdlab.spec.external import EXTERNAL

    base = {"data": DataConfig, "model": ModelConfig, "optimizer": OptimizerConfig,
            "schedule": ScheduleConfig}[family]
    out = []
    for name in base.registry.names():
        if name == EXTERNAL:  # what sgdlab.Monitor records of a user's own loop: not a choice
            continue
        cls = base.registry.get(name)
        hints = typing.get_type_hints(cls)
        keys = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
            keys.append((f.name, type_text(hints.get(f.name, f.type)), value_text(default)))
        fn = getattr(cls, "function", None)  # a registered function: its docstring describes it
        doc = _first_line(cls.__doc__, cls.__name__) or _first_line(getattr(fn, "__doc__", None))
        out.append(Kind(family, name, doc, tuple(keys)))
    return out


def _metric_kinds(experiment_cfg=None) -> list[Kind]:
    """The metric vocabulary (sgdlab.metrics.registry): every spec with who logs it; with an
    experiment, exactly the names it logs first."""
    from sgdlab.metrics.registry import METRIC_SPECS

    out = []
    if experiment_cfg is not None:
        from sgdlab.engine.train import Engine

        for name in Engine(experiment_cfg).metric_names():
            out.append(Kind("metric", name, f"logged by this experiment ({experiment_cfg.name})"))
    advice = {"curvature": " (set metrics.curvature.every > 0; mini-batch ones: metrics.batch.quantities)"}
    out += [Kind("metric", n, f"{_first_line(d)} (logged by: {src}){advice.get(src, '')}")
            for n, src, d in METRIC_SPECS.describe()]
    return out


def describe(family: str | None = None, experiment_cfg=None) -> list[Kind]:
    """Every kind of ``family`` (all families if None), bundled and registered so far."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(choices_message("kind family", family, FAMILIES))
    from sgdlab.core.plugins import load_entry_points

    load_entry_points()  # installed plugins register their kinds too
    out = []
    for fam in ([family] if family else FAMILIES):
        if fam in ("data", "model", "optimizer", "schedule"):
            out += _config_kinds(fam)
        elif fam == "metric":
            out += _metric_kinds(experiment_cfg)
        elif fam == "figure":
            from sgdlab.core.registry import source_of
            from sgdlab.plots import FIGURES

            out += [Kind("figure", n, _first_line(FIGURES.get(n).__doc__) or f"a figure from {source_of(FIGURES.get(n))}")
                    for n in FIGURES.names()]
        else:
            from sgdlab.workflows.executors import EXECUTORS

            out += [Kind("executor", n, _first_line(EXECUTORS.get(n).__doc__)) for n in EXECUTORS.names()]
    return out


def format_kinds(kinds: list[Kind]) -> str:
    """Plain text: per family, each kind with its description and an indented table of keys."""
    lines, family = [], None
    for k in kinds:
        if k.family != family:
            family = k.family
            lines.append(f"{'' if not lines else chr(10)}{family}:")
        lines.append(f"  {k.name}" + (f"  -- {k.description}" if k.description else ""))
        if k.keys:
            w_key = max(len(n) for n, _, _ in k.keys)
            w_def = max(len(d) for _, _, d in k.keys)
            for n, tp, d in k.keys:
                lines.append(f"      {n:{w_key}s}  {d:{w_def}s}  {tp}")
    return "\n".join(lines)
