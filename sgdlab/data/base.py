"""Dataset container and the `DataConfig` family (selected by ``kind``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from sgdlab.core._torch import torch
from sgdlab.core.config import Choice
from sgdlab.core.registry import Registry


@dataclass
class Dataset:
    """In-memory train/test split.

    x_train: (n, d), y_train: (n,) or (n, k); x_test, y_test likewise.
    extras: task facts needed by metrics (e.g. ``beta_star`` (d,), ``support`` (d,) bool).
    augment: a batch transform ``(x (b, ...), generator) -> x`` applied to training batches
        (random crop + flip of images); the engine draws its randomness per (seed, step).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    augment: Callable | None = None

    @property
    def n(self) -> int:
        return self.x_train.shape[0]

    def to(self, dtype=None, device=None) -> Dataset:
        def cv(t):
            if t.is_floating_point():
                return t.to(dtype=dtype, device=device)
            return t.to(device=device)

        return Dataset(cv(self.x_train), cv(self.y_train), cv(self.x_test), cv(self.y_test),
                       {k: cv(v) for k, v in self.extras.items()}, self.augment)


class DataConfig(Choice):
    """A dataset recipe; ``build()`` returns a float64 :class:`Dataset` on CPU."""

    registry: ClassVar[Registry] = Registry("dataset")

    def build(self) -> Dataset:  # pragma: no cover - abstract
        raise NotImplementedError
