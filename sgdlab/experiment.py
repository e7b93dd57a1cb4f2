"""The experiment config: data, model, arms (optimizer + schedule), seeds, evaluation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from .config import check
from .data.base import DataConfig
from .data.synthetic import SparseRegression
from .metrics.config import MetricsConfig
from .models.base import ModelConfig
from .models.diagonal import DiagonalNetConfig
from .optim.config import SGD, OptimizerConfig
from .schedules import Constant, ScheduleConfig


@dataclass(frozen=True)
class ArmConfig:
    """One training recipe; every arm is run once per seed."""

    name: str = "sgd"
    optimizer: OptimizerConfig = field(default_factory=SGD)
    schedule: ScheduleConfig = field(default_factory=Constant)
    seeds: tuple[int, ...] = ()  # explicit seeds for this arm; empty = the experiment's seeds

    def __post_init__(self):
        check(bool(self.name.strip()), "arm name must not be empty")
        check(all(s >= 0 for s in self.seeds), f"arm seeds must be >= 0, got {self.seeds}")


@dataclass(frozen=True)
class EvalConfig:
    """Steps at which metrics are computed (the state *after* t updates; 0 = init)."""

    grid: Literal["authors", "linear", "log"] = "authors"
    points: int = 250  # evenly (linear/authors) or log-spaced points over the run
    head: int = 100  # authors: also every step in [0, head)

    def __post_init__(self):
        check(self.points >= 2, f"eval.points must be >= 2, got {self.points}")
        check(self.head >= 0, f"eval.head must be >= 0, got {self.head}")

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
    data: DataConfig = field(default_factory=SparseRegression)
    model: ModelConfig = field(default_factory=DiagonalNetConfig)
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
    figure: tuple[str, ...] = ("train_loss", "test_loss", "jacobian_rank", "l0")  # metric panels
    extra_figures: tuple[str, ...] = ()  # named figures from sgdlab.plots.FIGURES
    # Save every run's parameters at this many evenly spaced evaluation steps (plus the
    # first and last) under DIR/snapshots/, for figures of the weights over training.
    snapshots: int = 0
    loggers: tuple[str, ...] = ()  # also log to: tensorboard, wandb (offline), mlflow (local); if installed

    def __post_init__(self):
        check(len(self.arms) >= 1, "an experiment needs at least one arm")
        names = [a.name for a in self.arms]
        check(len(set(names)) == len(names), f"arm names must be unique, got {names}")
        check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        check(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        check(self.first_seed >= 0, f"first_seed must be >= 0, got {self.first_seed}")
        check(self.divergence_factor > 1, f"divergence_factor must be > 1, got {self.divergence_factor}")
        check(self.checkpoint_seconds > 0, "checkpoint_seconds must be positive")
        check(self.snapshots >= 0, f"snapshots must be >= 0, got {self.snapshots}")
        from .loggers import BACKENDS

        bad = [b for b in self.loggers if b not in BACKENDS]
        check(not bad, f"loggers: unknown {bad[0]!r}; allowed: {', '.join(BACKENDS)}" if bad else "")
        check(getattr(self.model, "autocast", "none") == "none" or self.device.startswith("cuda"),
              "model.autocast (half/bfloat16) runs on a CUDA device only: set device='cuda' or autocast='none'")
        check(self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps",
              f"device must be cpu, cuda[:i] or mps, got {self.device!r}")
