"""Every registered kind, by family: what ``sgdlab kinds [FAMILY]`` prints.

Families: the config kinds (``data``, ``model``, ``optimizer``, ``schedule``: the registries of
their :class:`~sgdlab.config.Choice` bases, with keys, types and defaults from the dataclass
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

from .errors import ConfigError, choices_message

__all__ = ["FAMILIES", "Kind", "describe", "format_kinds"]

DESCRIPTION_CHARS = 120  # a description is one line of a terminal

FAMILIES = ("data", "model", "optimizer", "schedule", "metric", "figure", "executor")

# Where sweep jobs run (sgdlab.sweep.EXECUTORS; tests check both lists agree).
EXECUTORS = {
    "inprocess": "one job after the other in this process (the default)",
    "pool": "a local process pool (--workers N)",
    "ray": "a Ray cluster (--ray starts a local one, --address joins one; pip install -e \".[ray]\")",
    "slurm": "one SLURM array job (--partition, --time, --cpus, --gpus, --mem; pip install -e \".[slurm]\")",
}

# Curvature tracking's metrics (sgdlab.metrics.tracking), logged when metrics.curvature_every > 0.
CURVATURE = {
    "sharpness": "lambda_1 of the training loss's Hessian (warm-started Lanczos), at curvature steps",
    "hessian_eig{i}": "lambda_i, i = 2..metrics.curvature_k",
    "hessian_cond": "lambda_1 / lambda_k",
    "curvature_hvps": "Hessian-vector products the measurement used",
    "dead_fraction": "fraction of hidden units with mean |activation| below the dead threshold (ReLU nets)",
}


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


def _type(tp) -> str:
    """A type hint as a user reads it: "one of 'a', 'b'", "schedule table | unset", "list of int"."""
    s = tp.__name__ if isinstance(tp, type) else str(tp)
    s = re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", s)
    s = re.sub(r"sgdlab\.[\w.]+\.(\w+)Config", lambda m: f"{m.group(1).lower()} table", s)
    s = re.sub(r"tuple\[(\w+), \.\.\.\]", r"list of \1", s)
    return s.replace(" | None", " | unset").replace("typing.", "")


def _default(v) -> str:
    """A default as one line of TOML."""
    from .config import to_dict, toml_value

    if v is None:
        return "(unset)"
    if v is dataclasses.MISSING:
        return "(required)"
    v = to_dict(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_default(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_default(x)}" for k, x in v.items()) + "}"
    try:
        return toml_value(v)
    except (TypeError, ValueError):
        return repr(v)


def _config_kinds(family: str) -> list[Kind]:
    from . import experiment  # noqa: F401  (imports every bundled config kind)
    from .data.base import DataConfig
    from .external import EXTERNAL
    from .models.base import ModelConfig
    from .optim.config import OptimizerConfig
    from .schedules import ScheduleConfig

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
            keys.append((f.name, _type(hints.get(f.name, f.type)), _default(default)))
        fn = getattr(cls, "function", None)  # a registered function: its docstring describes it
        doc = _first_line(cls.__doc__, cls.__name__) or _first_line(getattr(fn, "__doc__", None))
        out.append(Kind(family, name, doc, tuple(keys)))
    return out


def _metric_kinds(experiment_cfg=None) -> list[Kind]:
    from .metrics.custom import METRICS
    from .metrics.quantities import QUANTITIES

    out = []
    if experiment_cfg is not None:
        from .train import Engine

        eng = Engine(experiment_cfg)
        user = set(METRICS.names())
        for name in eng.metric_names():
            if name not in user:
                out.append(Kind("metric", name, f"logged by this experiment ({experiment_cfg.name})"))
    out += [Kind("metric", n, f"curvature tracking: {d} (set metrics.curvature_every > 0)")
            for n, d in CURVATURE.items()]
    out += [Kind("metric", n, f"curvature tracking, mini-batch: {d} (list it in metrics.batch_curvature)")
            for n, d in QUANTITIES.items()]
    out += [Kind("metric", n, _first_line(getattr(METRICS.get(n), "__doc__", "")) or "registered metric")
            for n in METRICS.names()]
    if experiment_cfg is None:
        out.append(Kind("metric", "(the model's own)", "train_loss, test_loss and each model family's own "
                                                       "measurements: sgdlab kinds metric --for EXPERIMENT lists them"))
    return out


def describe(family: str | None = None, experiment_cfg=None) -> list[Kind]:
    """Every kind of ``family`` (all families if None), bundled and registered so far."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(choices_message("kind family", family, FAMILIES))
    from .plugins import load_entry_points

    load_entry_points()  # installed plugins register their kinds too
    out = []
    for fam in ([family] if family else FAMILIES):
        if fam in ("data", "model", "optimizer", "schedule"):
            out += _config_kinds(fam)
        elif fam == "metric":
            out += _metric_kinds(experiment_cfg)
        elif fam == "figure":
            from .plots import FIGURES

            out += [Kind("figure", n, _first_line(FIGURES.get(n).__doc__)) for n in FIGURES.names()]
        else:
            out += [Kind("executor", n, d) for n, d in EXECUTORS.items()]
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
