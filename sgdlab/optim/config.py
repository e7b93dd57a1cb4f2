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


@dataclass(frozen=True)
class SGD(OptimizerConfig):
    """Plain SGD on the mini-batch mean loss (batch 1: the step on 0.5 r_i^2, no 1/n)."""

    kind: ClassVar[str] = "sgd"
    batch_size: int = 1
    replacement: bool = True  # True: batches drawn independently; False: random reshuffling

    def __post_init__(self):
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")

    def sampler(self, n):
        check(self.batch_size <= n, f"batch_size {self.batch_size} exceeds the {n} training examples")
        cls = samplers.WithReplacement if self.replacement else samplers.WithoutReplacement
        return cls(n, self.batch_size)


@dataclass(frozen=True)
class GD(OptimizerConfig):
    """Full-batch gradient descent on the training loss."""

    kind: ClassVar[str] = "gd"

    def sampler(self, n):
        return samplers.FullBatch(n)
