"""Optimizer configs (the ``optimizer`` table of an arm) and the runtime they build.

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

import torch

from ..config import Choice, check
from ..registry import Registry
from ..schedules import ScheduleConfig
from . import samplers


@dataclass
class Optimizer:
    """The runtime of one group of runs (built by ``OptimizerConfig.build``)."""

    sampler: samplers.Sampler
    rule: object | None = None  # an optim.noise.GradientRule, or None for the plain gradient
    weight_decay: float = 0.0  # explicit L2: d += weight_decay * theta
    decoupled_weight_decay: float = 0.0  # theta <- theta - lr * decoupled_weight_decay * theta
    momentum: float = 0.0
    nesterov: bool = False
    ema: float = 0.0  # weights' EMA decay per step (0 = no EMA)

    @property
    def stochastic(self) -> bool:
        return self.sampler.stochastic or bool(getattr(self.rule, "stochastic", False))

    @property
    def plain(self) -> bool:
        """True when a step is exactly theta <- theta - lr * grad (compiled kernels may run it)."""
        return self.rule is None and self.plain_update

    @property
    def plain_update(self) -> bool:
        """True when the update is theta <- theta - lr * direction (a rule's kernel may run it)."""
        return (self.weight_decay == 0 and self.decoupled_weight_decay == 0 and self.momentum == 0
                and self.ema == 0)

    def init_state(self, params: dict[str, torch.Tensor], grad_keys) -> dict[str, torch.Tensor]:
        st = {}
        for k in grad_keys:
            if self.momentum:
                st["momentum:" + k] = torch.zeros_like(params[k])
            if self.ema:
                st["ema:" + k] = params[k].clone()
        return st

    def update(self, params, grads, state, step: torch.Tensor, alive: torch.Tensor) -> None:
        """In place, per run: step (R,) is lr_t (0 for frozen runs), alive (R,) bool."""
        for k, g in grads.items():
            p = params[k]
            shape = (-1,) + (1,) * (p.dim() - 1)
            live = alive.view(shape)
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                b = state["momentum:" + k]
                b.copy_(torch.where(live, self.momentum * b + g, b))
                g = g + self.momentum * b if self.nesterov else b
            d = g + self.decoupled_weight_decay * p if self.decoupled_weight_decay else g
            p.sub_(torch.where(live, step.view(shape) * d, torch.zeros((), dtype=p.dtype, device=p.device)))
            if self.ema:
                e = state["ema:" + k]
                e.copy_(torch.where(live, self.ema * e + (1 - self.ema) * p, e))


class OptimizerConfig(Choice):
    registry: ClassVar[Registry] = Registry("optimizer")

    def build(self, n: int, total_steps: int) -> Optimizer:  # pragma: no cover - abstract
        raise NotImplementedError

    def group_key(self) -> tuple:
        """Runs with equal keys can advance together as one batched job."""
        return (self.kind,) + tuple(sorted((k, repr(v)) for k, v in vars(self).items()))


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
            from .noise import RandomLabels

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
