"""Optimizer configs (the ``optimizer`` table of an arm)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import Choice, check
from ..registry import Registry
from . import samplers


class OptimizerConfig(Choice):
    registry: ClassVar[Registry] = Registry("optimizer")

    def sampler(self, n: int) -> samplers.Sampler:  # pragma: no cover - abstract
        raise NotImplementedError

    def group_key(self) -> tuple:
        """Runs with equal keys can advance together as one batched job."""
        return (self.kind,) + tuple(sorted(vars(self).items()))

    def _with_decay(self, s: samplers.Sampler) -> samplers.Sampler:
        # The engine hands the stepper only the group's sampler: weight decay travels on it
        # (runs with different weight_decay are in different groups: it is in group_key).
        s.weight_decay = self.weight_decay
        return s


@dataclass(frozen=True)
class SGD(OptimizerConfig):
    """Plain SGD on the mini-batch mean loss (batch 1: the step on 0.5 r_i^2, no 1/n)."""

    kind: ClassVar[str] = "sgd"
    batch_size: int = 1
    replacement: bool = True  # True: batches drawn independently; False: random reshuffling
    # Explicit L2: each step also subtracts lr * weight_decay * theta (the gradient of
    # weight_decay/2 |theta|^2 added to the loss). 0 = plain SGD.
    weight_decay: float = 0.0

    def __post_init__(self):
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")

    def sampler(self, n):
        check(self.batch_size <= n, f"batch_size {self.batch_size} exceeds the {n} training examples")
        cls = samplers.WithReplacement if self.replacement else samplers.WithoutReplacement
        return self._with_decay(cls(n, self.batch_size))


@dataclass(frozen=True)
class GD(OptimizerConfig):
    """Full-batch gradient descent on the training loss."""

    kind: ClassVar[str] = "gd"
    weight_decay: float = 0.0  # explicit L2, as for SGD: the step adds lr * weight_decay * theta

    def __post_init__(self):
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")

    def sampler(self, n):
        return self._with_decay(samplers.FullBatch(n))
