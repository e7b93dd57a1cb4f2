"""The experiment config: data, model, arms (optimizer + schedule), seeds, evaluation."""

from __future__ import annotations

import copy
import functools
import math
import string
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sgdlab.core.config import Choice, check, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.core.limits import MAX_EVAL_POINTS, MAX_RUNS, MAX_SEED, MAX_STEPS
from sgdlab.core.plugins import import_modules, load_entry_points
from sgdlab.data.base import DataConfig
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.models.base import ModelConfig
from sgdlab.optim.config import SGD, OptimizerConfig
from sgdlab.optim.schedules import Constant, Schedule, ScheduleConfig
from sgdlab.spec import external  # noqa: F401  (registers the `external` kinds of monitor run directories)
from sgdlab.spec.phases import (
    PhaseConfig,
    check_phases,
    describe_optimizer,
    describe_phases,
    phase_bounds,
    run_schedule,
)
from sgdlab.spec.references import Reference

# Floats in arm labels print as written (0.282, 1.0) unless their repr is longer than this.
LABEL_FLOAT_CHARS = 8


class _ArmFields(string.Formatter):
    """Resolves ``{schedule.lr}``-style placeholders of an arm name against the arm's own keys."""

    def __init__(self, arm: ArmConfig):
        self.arm = arm
        self.aliases = {"lr": "schedule.lr", "batch_size": "optimizer.batch_size"}

    def get_field(self, field_name, args, kwargs):
        path = self.aliases.get(field_name, field_name)
        node = self.arm  # walked as objects: a label is resolved per grid point, a whole to_dict is slow
        for key in path.split("."):
            if isinstance(node, tuple) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            elif getattr(node, key, None) is not None and (
                    key in getattr(node, "__dataclass_fields__", ()) or (key == "kind" and isinstance(node, Choice))):
                node = getattr(node, key)
            else:
                raise ConfigError(f"arm name {self.arm.name!r}: placeholder {{{field_name}}} names no key of "
                                  f"the arm; use dotted keys such as {{schedule.lr}}, {{schedule.factors.0}}, "
                                  f"{{optimizer.batch_size}}, {{phases.0.schedule.lr}} "
                                  f"(aliases: {', '.join(self.aliases)}); after switching a kind, rename the arm "
                                  f"(--set arms.N.name='...')")
        return (node if isinstance(node, (int, float, str)) else to_dict(node)), field_name

    def format_field(self, value, format_spec):
        if format_spec:
            return format(value, format_spec)
        if isinstance(value, float) and len(repr(value)) > LABEL_FLOAT_CHARS:
            return format(value, ".6g")  # 0.30000000000000004 (a linspace grid value) -> 0.3
        return str(value)


@functools.cache
def _name_pieces(name: str) -> tuple[tuple[str, str | None, str], ...] | None:
    """An arm name parsed once as ``(literal, field, format spec)`` pieces, as ``str.format``
    reads it; None where a piece has a conversion (``!r``) or a nested field in its spec."""
    out = []
    for lit, key, spec, conversion in string.Formatter().parse(name):
        if conversion or (spec and "{" in spec):
            return None
        out.append((lit, key, spec or ""))
    return tuple(out)


@dataclass(frozen=True)
class InitConfig:
    """Initial parameters of an arm's runs, exactly, from a tensor file or from another run.

    ``file``: a ``.pt`` (tensors, loaded safely) or ``.npz`` with one entry per parameter, either
    of the parameter's shape (every seed starts there) or with a leading seed axis (one entry
    per seed of the arm, in seed order). ``run``: a run directory; each (arm, seed) run starts
    from the parameters of the run there with the same seed and the arm named ``arm`` (default:
    this arm's label), at ``step`` (a saved snapshot or its final checkpoint; -1 = the last).
    """

    file: str = ""
    run: str = ""
    step: int = -1  # for `run`: which saved step; -1 = the last one
    arm: str = ""  # for `run`: the source arm's label; "" = this arm's own label

    def __post_init__(self):
        check(bool(self.file) != bool(self.run), "init: give exactly one of file = '...' or run = '...'")
        check(self.step >= -1, f"init.step must be >= 0 or -1 (the last), got {self.step}")
        check(not (self.file and (self.arm or self.step != -1)), "init: arm and step go with run, not file")


@dataclass(frozen=True)
class ArmConfig:
    """One training recipe; every arm is run once per seed.

    ``name`` identifies the arm in tables, legends and ``RunResult.arm``. It may hold placeholders
    for the arm's own keys, resolved after every override so that labels never go stale:
    ``"SGD eta={schedule.lr} /{schedule.factors.0} at {schedule.milestones.0:.0%}"`` reads
    "SGD eta=0.27 /4.8 at 10%" after ``--set arms.1.schedule.lr=0.27``. ``label`` is the
    resolved name.

    An arm is one optimizer with one schedule, or a list of ``phases`` (``sgdlab.spec.phases``: each
    its own optimizer, schedule and length; then the arm has no optimizer or schedule of its
    own). ``phase_list`` gives both forms as phases.
    """

    name: str = "sgd"
    optimizer: OptimizerConfig | None = None  # omitted: sgd (batch 1); with phases: none (set per phase)
    schedule: ScheduleConfig | None = None  # omitted: constant; with phases: none (set per phase)
    seeds: tuple[int, ...] = ()  # explicit seeds for this arm; empty = the experiment's seeds
    # Phases run one after the other on the same parameters, e.g. label-noise SGD for 80% then GD:
    # [[arms.phases]] tables with optimizer, schedule and steps or fraction (the last may omit both)
    phases: tuple[PhaseConfig, ...] | None = None
    # Exact initial parameters from a file or another run (InitConfig); none = the model's init.
    init: InitConfig | None = None

    def __post_init__(self):
        check(bool(self.name.strip()), "arm name must not be empty")
        check(all(0 <= s <= MAX_SEED for s in self.seeds),
              f"arm seeds must be in [0, 2**63 - 1] (sgdlab.core.limits), got {self.seeds}")
        if self.phases is None:  # a plain arm always has both (never None)
            if self.optimizer is None:
                object.__setattr__(self, "optimizer", SGD())
            if self.schedule is None:
                object.__setattr__(self, "schedule", Constant())
        else:
            check(self.optimizer is None and self.schedule is None,
                  f"arm {self.name!r}: give optimizer and schedule in each phase, not beside phases")
            check_phases(self.name, self.phases)
        self.label  # noqa: B018  (a bad placeholder fails here, naming the key)

    @property
    def phase_list(self) -> tuple[PhaseConfig, ...]:
        """The arm's phases; a plain arm is one phase with its optimizer and schedule."""
        return self.phases if self.phases is not None else (PhaseConfig(self.optimizer, self.schedule),)

    def renamed(self, name: str) -> ArmConfig:
        """This arm under another name: the same checked fields (and what is known of its phases),
        so only the name is checked (a sweep job renames every arm of every point it holds)."""
        check(bool(name.strip()), "arm name must not be empty")
        new = copy.copy(self)
        object.__setattr__(new, "name", name)
        new.__dict__.pop("label", None)
        new.__dict__["_bounds"] = self.__dict__.setdefault("_bounds", {})
        new.label  # noqa: B018  (a bad placeholder fails here, naming the key)
        return new

    def bounds(self, total_steps: int) -> list[tuple[int, int]]:
        """``[(start, end)]`` of every phase's updates in a run of ``total_steps``."""
        known = self.__dict__.setdefault("_bounds", {})  # per instance (frozen): every grid point checks every arm
        if total_steps not in known:
            known[total_steps] = tuple(phase_bounds(self.label, self.phase_list, total_steps))
        return list(known[total_steps])

    def step_size(self, total_steps: int) -> Schedule:
        """The step size at every absolute step of the run (each phase's schedule, shifted)."""
        return run_schedule(self.phase_list, self.bounds(total_steps))

    def describe(self) -> tuple[str, str]:
        """(schedule, optimizer) as the tables and runs.json show them."""
        if self.phases is None:
            return self.schedule.describe(), describe_optimizer(self.optimizer)
        return describe_phases(self.phases)

    @functools.cached_property  # a frozen config: computed once (grids ask for it per point)
    def label(self) -> str:
        """The name with its placeholders resolved (the name itself when it has none)."""
        if "{" not in self.name:
            return self.name
        try:
            fields, pieces = _ArmFields(self), _name_pieces(self.name)
            if pieces is None:  # conversions or nested fields: the formatter's own way
                return fields.format(self.name)
            return "".join(lit if field is None else lit + fields.format_field(fields.get_field(field, (), {})[0], spec)
                           for lit, field, spec in pieces)
        except ConfigError:
            raise
        except (ValueError, IndexError, KeyError, TypeError) as e:
            raise ConfigError(f"arm name {self.name!r}: {e} (placeholders look like {{schedule.lr}}; "
                              f"write {{{{ and }}}} for literal braces)") from None


@dataclass(frozen=True)
class EvalConfig:
    """Steps at which metrics are computed (the state *after* t updates; 0 = init)."""

    grid: Literal["authors", "linear", "log"] = "authors"
    points: int = 250  # evenly (linear/authors) or log-spaced points over the run
    head: int = 100  # authors: also every step in [0, head)

    def __post_init__(self):
        check(2 <= self.points <= MAX_EVAL_POINTS, f"eval.points must be in [2, {MAX_EVAL_POINTS}] "
                                                   f"(sgdlab.core.limits), got {self.points}")
        check(0 <= self.head <= MAX_EVAL_POINTS, f"eval.head must be in [0, {MAX_EVAL_POINTS}] (sgdlab.core.limits), "
                                                 f"got {self.head}")

    def steps(self, total: int) -> np.ndarray:
        """Sorted unique eval steps in [0, total], always including 0 and total."""
        if self.grid == "log":
            s = np.round(np.logspace(0, math.log10(max(total, 1)), self.points))
        else:
            s = np.round(np.linspace(0, total - 1 if self.grid == "authors" else total, self.points))
        if self.grid == "authors":
            s = np.concatenate([s, np.arange(min(self.head, total))])
        s = np.concatenate([s, [0, total]])
        return np.unique(s.astype(np.int64))


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    description: str = ""
    # Python modules to import before the config is built: they register your own kinds
    # (sgdlab.frontends.register). Module names or .py files (relative to the config file); files are
    # recorded by absolute path, so resume, sweep workers and `sgdlab plot` import the same ones.
    imports: tuple[str, ...] = ()
    # What is trained on what: every experiment names both (a config file's [data] and [model] tables).
    data: DataConfig = field(kw_only=True)
    model: ModelConfig = field(kw_only=True)
    arms: tuple[ArmConfig, ...] = (ArmConfig(),)
    steps: int = 100001  # T: number of updates of every run
    seeds: int = 8  # runs per arm, seeds first_seed .. first_seed + seeds - 1
    first_seed: int = 0
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # A run diverges when a (mini-batch or train) loss is NaN/inf or exceeds this factor
    # times its initial train loss: far above any stabilized level (~1e-2 .. 1x of it).
    divergence_factor: float = 1e6
    dtype: Literal["float64", "float32"] = "float64"  # toy nets: float64, as the authors' numpy code
    device: str = "cpu"
    fused: bool = True  # use a model's compiled kernel when it has one (same update law, agrees to rounding)
    checkpoint_seconds: float = 30.0  # wall time between checkpoints (and one at the end)
    # metric panels of the main figure; empty = those of train_loss, test_loss, jacobian_rank, l0
    # that the experiment logs (plots.panel_data.default_panels)
    figure: tuple[str, ...] = ()
    extra_figures: tuple[str, ...] = ()  # named figures from sgdlab.plots.FIGURES
    # Save every run's parameters at this many evaluation steps, evenly spaced over the list of
    # evaluation steps, plus the first (step 0) and the last, under DIR/snapshots/, for figures
    # of the weights over training (N + 2 steps; ones that round to the same step are saved once).
    snapshots: int = 0
    loggers: tuple[str, ...] = ()  # also log to: tensorboard, wandb (offline), mlflow (local); if installed
    # Published numbers to print beside this experiment's (sgdlab.spec.references): [[references]]
    # tables with metric, value, where = ["key=value", ...] and source.
    references: tuple[Reference, ...] = ()
    # Axes of `sgdlab sweep NAME` when neither --grid nor --file gives one, in --grid syntax
    # ("model.name=logistic,mlp"): the grid the experiment is meant to be run over.
    sweep_grid: tuple[str, ...] = ()

    def _check_references(self) -> None:
        """Every reference names a metric sgdlab knows. Its ``where`` keys are not checked here: a
        kind switch (``--set data.kind=...``) may drop a key a reference names, and the reference
        then simply matches no run (``sgdlab.spec.references``)."""
        for i, ref in enumerate(self.references):
            check(ref.metric in METRIC_SPECS or ref.metric in self.metrics.names,
                  f"references.{i}.metric: {METRIC_SPECS.choices(ref.metric, self.metrics.names)}")

    @classmethod
    def prepare_dict(cls, data: dict) -> dict:
        """Before the kinds are looked up: load installed plugins and import ``imports``."""
        load_entry_points()
        if "imports" in data:
            data = {**data, "imports": list(import_modules(data["imports"], "imports"))}
        return data

    def __post_init__(self):
        check(len(self.arms) >= 1, "an experiment needs at least one arm")
        names = [a.label for a in self.arms]
        check(len(set(names)) == len(names), f"arm names must be unique, got {names}")
        check(1 <= self.steps <= MAX_STEPS,
              f"steps must be >= 1 and at most {MAX_STEPS:.0e} (sgdlab.core.limits), got {self.steps}")
        runs = sum(len(a.seeds) or self.seeds for a in self.arms)  # at most: a deterministic arm may run one seed
        check(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        check(runs <= MAX_RUNS, f"at most {MAX_RUNS:.0e} runs (arms x seeds; sgdlab.core.limits), got seeds="
                                f"{self.seeds} over {len(self.arms)} arm(s)")
        check(0 <= self.first_seed <= MAX_SEED - self.seeds + 1,
              f"first_seed must be in [0, 2**63 - seeds] (the last seed, first_seed + seeds - 1, below 2**63; "
              f"sgdlab.core.limits), got {self.first_seed}")
        check(self.divergence_factor > 1, f"divergence_factor must be > 1, got {self.divergence_factor}")
        check(self.checkpoint_seconds > 0, "checkpoint_seconds must be positive")
        check(0 <= self.snapshots <= MAX_EVAL_POINTS, f"snapshots must be in [0, {MAX_EVAL_POINTS}] "
                                                      f"(sgdlab.core.limits), got {self.snapshots}")
        object.__setattr__(self, "figure", METRIC_SPECS.canonical_names(self.figure, "figure"))
        for arm in self.arms:
            arm.bounds(self.steps)  # phase lengths against the run length
        self._check_references()
        for axis in self.sweep_grid:
            key, sep, values = axis.partition("=")
            check(bool(sep and key.strip() and values.strip()),
                  f"sweep_grid item {axis!r} must look like key.path=v1,v2,... (as --grid)")
        # logger backend names are checked by the store (store.loggers.check_backends) before a run starts
        # CPU autocast exists for bfloat16 only (float16 kernels are CUDA's).
        autocast = getattr(self.model, "autocast", "none")
        check(autocast == "none" or self.device.startswith("cuda") or (autocast == "bf16" and self.device == "cpu"),
              f"model.autocast={autocast!r} needs a CUDA device (bf16 also runs on cpu): set device='cuda' "
              "or autocast='none'")
        check(self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps",
              f"device must be cpu, cuda[:i] or mps, got {self.device!r}")
