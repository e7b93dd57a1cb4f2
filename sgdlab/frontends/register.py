"""Register your own kinds: the public decorators, one per family.

Your kinds go into the same registries as the bundled ones, so everything that works for a
bundled kind works for yours: configs and ``--set``, the CLI, ``--resume``, sweeps on every
executor, ``sgdlab plot`` and ``summary`` (a config names the module in ``imports``, see
:mod:`sgdlab.plugins`, and every process that builds the experiment imports it)::

    import sgdlab

    @sgdlab.register_data("two_moons")            # a function: its keyword arguments are the keys
    def two_moons(n: int = 200, noise: float = 0.1, seed: int = 0):
        ...
        return {"x": x, "y": y, "x_test": xt, "y_test": yt}   # arrays (numpy or torch), or a Dataset

    @sgdlab.register_model("small_cnn")           # a function returning a torch.nn.Module
    def small_cnn(channels: int = 16, *, num_classes: int, in_channels: int):
        return torch.nn.Sequential(...)

    @sgdlab.register_metric("weight_norm")        # fn(model, params, data) -> (R,) per run
    def weight_norm(model, params, data):
        return sum(v.flatten(1).norm(dim=1) ** 2 for v in params.values()).sqrt()

    @sgdlab.register_figure("my_figure")          # fn(run_dir: RunDir) -> list of files written
    def my_figure(rd): ...

Families and what each decorator accepts:

* ``register_data(kind)``: a :class:`~sgdlab.data.DataConfig` subclass (a dataclass with
  ``build() -> Dataset``), or a function returning arrays ``x, y`` (optional ``x_test, y_test``,
  extras) or a ``Dataset``; its parameters (each with a default) become config keys.
* ``register_model(kind)``: a :class:`~sgdlab.models.base.ModelConfig` subclass (``build(data) ->
  BatchedModel``), or a function returning a ``torch.nn.Module`` trained on the deep-network path
  (per-run functional calls, BatchNorm statistics per run, train/test loss and error, feature
  sparsity of every ReLU-like layer). Its keyword parameters are config keys; ``num_classes``,
  ``in_channels`` and ``input_shape`` are filled from the data when it asks for them. Parameter
  initialisation draws from torch's generator seeded per run (the caller's RNG state is kept).
* ``register_optimizer(kind)``, ``register_schedule(kind)``: an
  :class:`~sgdlab.optim.config.OptimizerConfig` / :class:`~sgdlab.optim.schedules.ScheduleConfig`
  subclass; a schedule may also be a function ``fn(t, total_steps, lr=..., ...)`` of an integer
  array of steps.
* ``register_metric(name, label=, log_scale=, description=)``: ``fn(model, params, data) -> tensor
  (R,)``, logged when the experiment lists it in ``metrics.names``, and by ``sgdlab.Monitor`` when
  its ``metrics`` name it (the same function with R = 1 on a view of your module and measurement
  set, see :mod:`sgdlab.metrics.module_view`); label and log scale are the figures'.
* ``register_metric_spec(name, description, label=..., log_scale=..., table=...)``: describes a
  quantity that a model kind's own ``metrics()`` logs (labels, log axes, summary-table column).
* ``register_figure(name)``: ``fn(run_dir) -> list[Path]``, drawn when the experiment lists it in
  ``extra_figures`` (``sgdlab.plots.lazy_figure(module, function)`` defers importing matplotlib).
* ``register_architecture(name)``: ``fn(num_classes, width, in_channels=3, generator=None, **options)
  -> nn.Module`` following the block-output protocol of :mod:`sgdlab.models.cifar.base`; then
  ``model = {kind = "deep_net", name = "NAME"}`` trains it (width has no default unless given).
* ``register_image_dataset(name)``: ``fn(path=None, **options) -> ImageDataset`` (uint8 images);
  then ``data = {kind = "images", name = "NAME"}`` reads it.
* ``register_executor(name)``: ``fn(todo, args, ctx) -> iterator of (job id, result)`` runs a
  sweep's jobs (protocol in :mod:`sgdlab.workflows.executors`); ``sgdlab sweep --executor NAME``.
* ``register_logger(name)``: a class ``cls(out, runs, name)`` with ``log(step, {metric: values per
  run})`` and ``close()``; ``loggers = ["NAME"]`` in a config (see :mod:`sgdlab.store.loggers`).
* ``register_experiments(folder)``: every ``NAME.toml`` in the folder becomes an experiment that
  ``sgdlab run NAME``, ``list`` and ``show`` know.
* ``register_docs_numbers(module)``: a module whose import registers docs-numbers specs
  (``sgdlab.frontends.docs_numbers``), imported only when specs are listed or run.

The bundled studies (``sgdlab/studies/*``) use exactly these calls, from the module their
``sgdlab.plugins`` entry point names: they are the reference examples of a plugin package.

Names must be new (a clash with any kind of the family raises); config keys get their types from
the annotations (int, float, bool, str, tuples/lists of those) or from the defaults.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from sgdlab.core.errors import ConfigError
from sgdlab.data.base import DataConfig, Dataset
from sgdlab.metrics.custom import add_metric
from sgdlab.models.base import ModelConfig
from sgdlab.optim.config import OptimizerConfig
from sgdlab.optim.schedules import ScheduleConfig

__all__ = ["register_architecture", "register_data", "register_docs_numbers", "register_executor",
           "register_experiments", "register_figure", "register_image_dataset", "register_logger", "register_metric",
           "register_metric_spec",
           "register_model", "register_optimizer", "register_schedule"]

SCALARS = (int, float, bool, str)


# --------------------------------------------------------------------------- helpers

def _check_name(kind: str, family: str) -> None:
    if not isinstance(kind, str) or not kind.strip() or kind != kind.strip():
        raise ConfigError(f"register_{family}: the kind must be a non-empty name, got {kind!r}")


def _register_class(cls: type, base: type, kind: str, family: str) -> type:
    """Register a config class under ``kind`` (made a frozen dataclass if it is not one)."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"register_{family}({kind!r}): {getattr(cls, '__name__', cls)!r} must subclass "
                          f"{base.__module__}.{base.__name__} (or be a function)")
    if base.registry.get_or_none(kind) is cls:
        return cls
    if not dataclasses.is_dataclass(cls) or "__dataclass_fields__" not in cls.__dict__:
        cls = dataclasses.dataclass(frozen=True)(cls)
    cls.kind = kind
    base.registry.add(kind, cls)
    return cls


def _field_type(name: str, param: inspect.Parameter, hints: dict):
    """(type, default) of a config field from a parameter: its annotation, else the type of its
    default; lists become tuples (configs are frozen)."""
    tp = hints.get(name, inspect.Parameter.empty)
    default = param.default
    if tp is inspect.Parameter.empty:
        tp = Any if default is None else type(default)
    if typing.get_origin(tp) is list or tp is list:  # TOML arrays are tuples in configs
        args = typing.get_args(tp)
        tp = tuple[args[0], ...] if args else tuple[Any, ...]
    if isinstance(default, list):
        default = tuple(default)
    return tp, default


def _fields_of(fn: Callable, where: str, skip: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """(name, type, dataclasses.field) of every parameter of ``fn`` except ``skip``."""
    hints = typing.get_type_hints(fn)
    out = []
    for name, p in inspect.signature(fn).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            raise ConfigError(f"{where}: parameter {name!r} has no default; every config key needs one "
                              f"(the data-given ones are {', '.join(skip) or 'none'})")
        tp, default = _field_type(name, p, hints)
        out.append((name, tp, dataclasses.field(default=default)))
    return out


def _config_class(fn: Callable, base: type, kind: str, build: Callable, skip=(), extra=()) -> type:
    """A frozen dataclass subclass of ``base`` whose fields are ``fn``'s keyword parameters."""
    fields = _fields_of(fn, f"{fn.__qualname__}", skip)
    ns = {"kind": kind, "build": build, "__doc__": fn.__doc__ or f"{kind}: {fn.__qualname__}",
          "__module__": fn.__module__, "function": staticmethod(fn), "__annotations__": {"kind": ClassVar[str]}}
    cls = dataclasses.make_dataclass(f"{fn.__name__}_config", [*extra, *fields], bases=(base,), frozen=True,
                                     namespace=ns)
    cls.params = tuple(f[0] for f in fields)
    return cls


def _values(cfg, names) -> dict:
    return {n: (list(v) if isinstance(v := getattr(cfg, n), tuple) else v) for n in names}


# --------------------------------------------------------------------------- data

def register_data(kind: str):
    """Register a data kind: a DataConfig subclass, or a function returning arrays / a Dataset."""
    _check_name(kind, "data")

    def deco(obj):
        if isinstance(obj, type):
            return _register_class(obj, DataConfig, kind, "data")

        def build(self) -> Dataset:
            from sgdlab.core.errors import DataError, SgdlabError
            from sgdlab.core.user_modules import exception_line
            from sgdlab.data.arrays import dataset_from_output

            source = f"data kind {kind!r} ({obj.__module__}:{obj.__qualname__})"
            try:
                out = obj(**_values(self, self.params))
            except SgdlabError:
                raise
            except Exception as e:  # the user's code: one line naming its file and line
                raise DataError(f"{source} raised {exception_line(e, obj)}") from e
            return dataset_from_output(out, source)

        _register_class(_config_class(obj, DataConfig, kind, build), DataConfig, kind, "data")
        return obj

    return deco


# --------------------------------------------------------------------------- models

DATA_ARGS = ("num_classes", "in_channels", "input_shape")


def register_model(kind: str):
    """Register a model kind: a ModelConfig subclass, or a function returning an nn.Module."""
    _check_name(kind, "model")

    def deco(obj):
        if isinstance(obj, type):
            return _register_class(obj, ModelConfig, kind, "model")
        from sgdlab.models.deep import DeepNetConfig
        from sgdlab.models.hooked import module_factory

        make = module_factory(obj, DATA_ARGS)
        training = [f for f in dataclasses.fields(DeepNetConfig) if f.name not in ("name", "width", "options")]
        hints = typing.get_type_hints(DeepNetConfig)  # resolved types: the new class lives in the user's module
        deep_fields = [(f.name, hints[f.name], dataclasses.field(default=f.default)) for f in training]

        def build(self, data):
            deep = DeepNetConfig(**{f.name: getattr(self, f.name) for f in training})
            options = _values(self, self.params)
            return deep.module_model(data, lambda g, k, c, shape: make(g, k, c, shape, **options))

        cls = _config_class(obj, ModelConfig, kind, build, skip=DATA_ARGS, extra=deep_fields)
        _register_class(cls, ModelConfig, kind, "model")
        return obj

    return deco


# --------------------------------------------------------------------------- optimizers, schedules

def register_optimizer(kind: str):
    """Register an optimizer kind (an OptimizerConfig subclass building an optim.config.Optimizer)."""
    _check_name(kind, "optimizer")
    return lambda cls: _register_class(cls, OptimizerConfig, kind, "optimizer")


def register_schedule(kind: str):
    """Register a schedule kind: a ScheduleConfig subclass, or ``fn(t, total_steps, lr=..., ...)``."""
    _check_name(kind, "schedule")

    def deco(obj):
        if isinstance(obj, type):
            return _register_class(obj, ScheduleConfig, kind, "schedule")
        first = list(inspect.signature(obj).parameters)[:2]
        if "lr" not in inspect.signature(obj).parameters:
            raise ConfigError(f"register_schedule({kind!r}): {obj.__qualname__} needs a parameter lr (the base "
                              f"step size): fn(t, total_steps, lr=0.1, ...)")

        def build(self, total_steps):
            kw = _values(self, self.params)
            return lambda t: np.asarray(obj(np.asarray(t), total_steps, **kw), dtype=np.float64)

        def post_init(self):
            self._check_lr()

        cls = _config_class(obj, ScheduleConfig, kind, build, skip=tuple(first))
        cls.__post_init__ = post_init
        _register_class(cls, ScheduleConfig, kind, "schedule")
        return obj

    return deco


# --------------------------------------------------------------------------- metrics, figures

def register_metric(name: str, *, label: str = "", log_scale: bool = False, description: str = ""):
    """Register ``fn(model, params, data) -> tensor (R,)`` as a metric: logged by the engine when
    listed in ``metrics.names`` and by ``sgdlab.Monitor`` when listed in its ``metrics`` (R = 1,
    :mod:`sgdlab.metrics.module_view`). ``label`` (panel title), ``log_scale`` and ``description``
    (default: the first line of the docstring) go into its :class:`~sgdlab.metrics.registry.MetricSpec`."""
    _check_name(name, "metric")

    def deco(fn):
        add_metric(name, fn, description=description, label=label, log_scale=log_scale)
        return fn

    return deco


def register_metric_spec(name: str, description: str, *, label: str = "", log_scale: bool = False,
                         table: int = 0) -> None:
    """Describe a quantity a model kind's own ``metrics()`` logs (no compute function): its panel
    ``label``, ``log_scale``, and ``table`` column in the printed summary (0 = not shown). ``name``
    may be a family with ``{placeholders}``, e.g. ``"{layer}_norm"``."""
    _check_name(name, "metric")
    from sgdlab.metrics.registry import METRIC_SPECS, MetricSpec

    METRIC_SPECS.add_spec(MetricSpec(name, description, label, log_scale, "model", table))


def register_figure(name: str):
    """Register ``fn(run_dir) -> list[Path]`` as a figure (drawn when listed in ``extra_figures``)."""
    return _into("sgdlab.plots:FIGURES", name, "figure")


# --------------------------------------------------------------------------- experiments, docs numbers

def register_experiments(folder):
    """Register every ``NAME.toml`` in ``folder`` as the experiment NAME; returns the names."""
    from sgdlab.spec.catalog import add_experiments

    return add_experiments(folder)


def register_docs_numbers(module: str) -> None:
    """Name a module whose import registers docs-numbers specs (imported when specs are needed)."""
    if not isinstance(module, str) or not module.strip():
        raise ConfigError(f"register_docs_numbers: expected a module name, got {module!r}")
    from sgdlab.frontends.docs_numbers.core import SPEC_MODULES

    if module not in SPEC_MODULES:
        SPEC_MODULES.append(module)


# --------------------------------------------------------------------------- registries of named objects

def _into(registry: str, name: str, family: str):
    """A decorator adding its object under ``name`` to the registry at ``module:attribute``
    (imported when used: registering must not import torch or matplotlib)."""
    _check_name(name, family)

    def deco(obj):
        import importlib

        module, attribute = registry.split(":")
        return getattr(importlib.import_module(module), attribute).register(name)(obj)

    return deco


def register_architecture(name: str):
    """Register a deep-network factory under ``name`` (``model.kind = "deep_net"``, ``model.name``)."""
    return _into("sgdlab.models.cifar:DEEP_MODELS", name, "architecture")


def register_image_dataset(name: str):
    """Register ``fn(path=None, **options) -> ImageDataset`` as image dataset ``name`` (``data.kind = "images"``)."""
    return _into("sgdlab.data.images:IMAGE_DATASETS", name, "image_dataset")


def register_executor(name: str):
    """Register a sweep executor ``fn(todo, args, ctx) -> Iterator[(job id, result)]``."""
    return _into("sgdlab.workflows.executors:EXECUTORS", name, "executor")


def register_logger(name: str):
    """Register a metric logger backend: a class ``cls(out, runs, name)`` with ``log`` and ``close``."""
    return _into("sgdlab.store.loggers:LOGGERS", name, "logger")
