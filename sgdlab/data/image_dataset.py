"""The in-memory image dataset container :class:`ImageDataset` and :func:`to_unit_float`.

Readers (:mod:`sgdlab.data.files`) and the registry of named datasets (:mod:`sgdlab.data.images`)
both build these; this module imports neither.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sgdlab.core._torch import torch
from sgdlab.core.errors import ConfigError, DataError

__all__ = ["SPLITS", "UINT8_MAX", "ImageDataset", "to_unit_float"]

# uint8 pixels are mapped to [0, 1] by dividing by this.
UINT8_MAX = 255.0
SPLITS = ("train", "test")


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float images -> float32 unchanged.

    Shape is preserved (any, typically ``(N, C, H, W)``); works on any device.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(UINT8_MAX)
    if x.is_floating_point():
        return x.to(torch.float32)
    raise DataError(f"images must be uint8 or floating point, got dtype {x.dtype}")


@dataclass(frozen=True)
class ImageDataset:
    """A train/test image classification dataset held in memory.

    x_train: ``(N_train, C, H, W)``, uint8 in [0, 255] (CIFAR, Tiny ImageNet: 4x smaller than
        float) or float32 in [0, 1]. Use :meth:`inputs` or :func:`to_unit_float` per batch to
        get float32 in [0, 1].
    y_train: ``(N_train,)`` int64 labels in ``[0, num_classes)``.
    x_test, y_test: the same for the test split.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str
    class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"{self.name}: num_classes must be a positive integer, got {self.num_classes!r}")
        for split in SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            where = f"{self.name} {split} split"
            if not isinstance(x, torch.Tensor) or x.dim() != 4:
                raise DataError(f"{where}: images must be a tensor of shape (N, C, H, W), got "
                                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
            if x.dtype != torch.uint8 and x.dtype != torch.float32:
                raise DataError(f"{where}: images must be uint8 or float32, got {x.dtype}")
            if x.dtype == torch.float32 and x.numel() and (x.min() < 0 or x.max() > 1):
                raise DataError(f"{where}: float images must lie in [0, 1], got range "
                                f"[{x.min().item():.3g}, {x.max().item():.3g}]")
            if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
                raise DataError(f"{where}: labels must be an int64 tensor of shape (N,)")
            if len(y) != len(x):
                raise DataError(f"{where}: {len(x)} images but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{where}: labels must lie in [0, {self.num_classes}), got range "
                                f"[{y.min().item()}, {y.max().item()}]")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise DataError(f"{self.name}: train images {tuple(self.x_train.shape[1:])} and test images "
                            f"{tuple(self.x_test.shape[1:])} differ in shape")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])

    def inputs(self, split: str = "train") -> torch.Tensor:
        """All images of ``split`` as float32 in [0, 1], shape ``(N, C, H, W)``."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        return to_unit_float(getattr(self, f"x_{split}"))

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> ImageDataset:
        """The first ``n_train`` / ``n_test`` examples (``None`` keeps a split whole)."""
        return dataclasses.replace(
            self,
            x_train=self.x_train[:n_train], y_train=self.y_train[:n_train],
            x_test=self.x_test[:n_test], y_test=self.y_test[:n_test],
        )
