"""The plain optimizer configs, ``sgd`` and ``gd`` (the ``optimizer`` table of an arm); the runtime
they build and the config base are in ``optim.base`` (re-exported here).

An optimizer is composed of small pieces, each optional:
* a *sampler* (how batches are drawn: with/without replacement, full batch);
* a *gradient rule* (the step direction when it is not the plain mini-batch gradient: label
  noise, isotropic noise, the constant-noise SDE, random labels; see ``optim.noise``);
* the *update*: explicit L2 (``weight_decay``, gradient of wd/2 |theta|^2), decoupled weight
  decay, heavy-ball momentum (PyTorch's convention b <- mu b + g, theta <- theta - lr b, or
  Nesterov's g + mu b), and an exponential moving average of the weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from sgdlab.core.config import check
from sgdlab.optim import samplers
from sgdlab.optim.base import Optimizer, OptimizerConfig
from sgdlab.optim.noise import RandomLabels
from sgdlab.optim.schedules import ScheduleConfig

__all__ = ["GD", "SGD", "Optimizer", "OptimizerConfig"]


def _batch_sampler(n: int, batch_size: int, replacement: bool) -> samplers.Sampler:
    check(batch_size <= n, f"batch_size {batch_size} exceeds the {n} training examples")
    return (samplers.WithReplacement if replacement else samplers.WithoutReplacement)(n, batch_size)


def _check_fraction(name: str, v: float, hi_open: bool = False):
    ok = 0 <= v < 1 if hi_open else 0 <= v <= 1
    check(ok and math.isfinite(v), f"{name} must be in [0, 1{')' if hi_open else ']'}, got {v}")


@dataclass(frozen=True)
class SGD(OptimizerConfig):
    """SGD on the mini-batch mean loss (batch 1: the step on 0.5 r_i^2, no 1/n), optionally with
    momentum, weight decay, EMA of the weights and random-label noise (deep nets)."""

    kind: ClassVar[str] = "sgd"
    batch_size: int = 1
    replacement: bool = True  # True: batches drawn independently; False: random reshuffling
    # Explicit L2: each step also subtracts lr * weight_decay * theta (the gradient of
    # weight_decay/2 |theta|^2 added to the loss; with momentum it goes through the buffer).
    weight_decay: float = 0.0
    decoupled_weight_decay: float = 0.0  # theta <- theta - lr * this * theta, outside momentum
    momentum: float = 0.0  # heavy ball, PyTorch convention; 0 = plain SGD
    nesterov: bool = False
    ema: float = 0.0  # decay of an EMA copy of the weights, e.g. 0.999; 0 = none
    # Random labels (classification): each label is replaced by a uniformly random class with
    # probability p_t given by this schedule (its `lr` is p); none = no label noise.
    label_flip: ScheduleConfig | None = None

    def __post_init__(self):
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.weight_decay >= 0 and self.decoupled_weight_decay >= 0,
              f"weight decays must be >= 0, got {self.weight_decay} and {self.decoupled_weight_decay}")
        _check_fraction("momentum", self.momentum, hi_open=True)
        _check_fraction("ema", self.ema, hi_open=True)
        check(not (self.nesterov and self.momentum == 0), "nesterov needs momentum > 0")
        if self.label_flip is not None:
            check(self.label_flip.lr <= 1, f"label_flip: the probability (lr) must be <= 1, got {self.label_flip.lr}")

    def build(self, n, total_steps):
        rule = None
        if self.label_flip is not None:
            rule = RandomLabels(self.label_flip.build(total_steps))
        return Optimizer(_batch_sampler(n, self.batch_size, self.replacement), rule, self.weight_decay,
                         self.decoupled_weight_decay, self.momentum, self.nesterov, self.ema)


@dataclass(frozen=True)
class GD(OptimizerConfig):
    """Full-batch gradient descent on the training loss."""

    kind: ClassVar[str] = "gd"
    weight_decay: float = 0.0  # explicit L2, as for SGD: the step adds lr * weight_decay * theta
    momentum: float = 0.0

    def __post_init__(self):
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check_fraction("momentum", self.momentum, hi_open=True)

    def build(self, n, total_steps):
        return Optimizer(samplers.FullBatch(n), weight_decay=self.weight_decay, momentum=self.momentum)
