"""Batch augmentation (random crop with zero padding + horizontal flip) and an in-memory
batch iterator, both vectorised over the batch and driven by an explicit ``torch.Generator``.

One gather per batch does crop and flip together: no per-image Python loop, so on a GPU the
loader costs a few kernel launches per batch. :meth:`Augmentation.runs` augments the batches of
R runs (each with its own generator) with one gather on the images' device, equal to R calls.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from sgdlab.core._torch import torch
from sgdlab.core.errors import ConfigError
from sgdlab.data.image_dataset import to_unit_float

__all__ = ["CIFAR_AUGMENTATION", "NO_AUGMENTATION", "Augmentation", "BatchIterator", "crop_flip", "draw_crop_flip",
           "random_crop_flip"]

# The standard CIFAR recipe: random 32x32 crop of the image padded by 4 pixels, random flip.
CIFAR_CROP_PADDING = 4
FLIP_PROBABILITY = 0.5


def _check_padding(padding) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ConfigError(f"padding must be an integer >= 0, got {padding!r}")


def draw_crop_flip(n: int, generator: torch.Generator, padding: int = CIFAR_CROP_PADDING,
                   flip: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The random draws of a crop + flip of ``n`` images, on ``generator``'s device.

    Returns ``offsets`` (2, n) int64 in ``[0, 2 * padding]`` (row, column offsets into the
    padded image; ``None`` when ``padding == 0``: nothing is drawn) and ``flipped`` (n,) bool
    (``None`` when ``flip`` is False). The order of the draws (offsets, then flips) is part of the
    contract: the same generator state gives the same augmentation on every path.
    """
    _check_padding(padding)
    gdev = generator.device
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=gdev) if padding else None
    flipped = torch.rand(n, generator=generator, device=gdev) < FLIP_PROBABILITY if flip else None
    return offsets, flipped


def crop_flip(x: torch.Tensor, offsets: torch.Tensor | None, flipped: torch.Tensor | None,
              padding: int) -> torch.Tensor:
    """Apply given draws: one gather for crop and flip together, on ``x``'s device.

    x: ``(..., N, C, H, W)`` (any leading dims, e.g. runs); offsets ``(..., 2, N)`` or None (no
    crop); flipped ``(..., N)`` bool or None. Returns a new contiguous tensor shaped like ``x``.
    """
    *lead, n, c, h, w = x.shape
    m = math.prod(lead) * n
    xs = x.reshape(m, c, h, w)
    if offsets is not None:
        off = offsets.to(x.device).movedim(-2, 0).reshape(2, m)
    else:
        off = torch.zeros(2, m, dtype=torch.long, device=x.device)
    rows = off[0, :, None] + torch.arange(h, device=x.device)  # (M, H) rows of the padded image
    cols = off[1, :, None] + torch.arange(w, device=x.device)  # (M, W)
    if flipped is not None:
        # Reading the crop's columns right-to-left is the flip of the crop.
        cols = torch.where(flipped.to(x.device).reshape(m)[:, None], cols.flip(1), cols)
    padded = torch.nn.functional.pad(xs, (padding,) * 4) if padding else xs
    idx = torch.arange(m, device=x.device)
    # Advanced indexing around the channel slice yields (M, H, W, C).
    out = padded[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous().reshape(x.shape)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = CIFAR_CROP_PADDING,
                     flip: bool = True) -> torch.Tensor:
    """Randomly crop (after zero-padding by ``padding``) and horizontally flip each image.

    x: ``(N, C, H, W)``, any dtype and device. Returns a new tensor of the same shape, dtype and
    device. Per image, a crop offset in ``[0, 2 * padding]`` along each axis and (if ``flip``) a
    flip with probability 1/2 are drawn from ``generator`` (on its own device), so the same
    generator state gives the same output. ``padding=0, flip=False`` returns a copy.
    """
    if x.dim() != 4:
        raise ConfigError(f"augmentation expects images of shape (N, C, H, W), got {tuple(x.shape)}")
    offsets, flipped = draw_crop_flip(x.shape[0], generator, padding, flip)
    return crop_flip(x, offsets, flipped, padding)


def _to_device(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """A small host tensor to ``device`` without a host-device synchronisation (pinned copy)."""
    if t is None or t.device == device:
        return t
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass(frozen=True)
class Augmentation:
    """Switchable crop + flip: ``padding=0`` disables the crop, ``flip=False`` the flip."""

    padding: int = CIFAR_CROP_PADDING
    flip: bool = True

    def __post_init__(self):
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ConfigError(f"augmentation padding must be an integer >= 0, got {self.padding!r}")

    @property
    def enabled(self) -> bool:
        return self.padding > 0 or self.flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``(N, C, H, W) -> (N, C, H, W)``; the input itself when disabled (no draws)."""
        return random_crop_flip(x, generator, self.padding, self.flip) if self.enabled else x

    def runs(self, x: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """Every run's batch at once: ``(R, N, C, H, W) -> (R, N, C, H, W)``.

        Run r's draws come from ``generators[r]`` exactly as in ``self(x[r], generators[r])``
        (same output); the draws (3 numbers per image) are made on the generators' device and
        sent to ``x``'s device in one copy, and crop + flip of all R x N images is one gather
        there. The input itself when disabled (no draws).
        """
        if x.dim() != 5 or len(generators) != x.shape[0]:
            raise ConfigError(f"expected (R, N, C, H, W) images and R generators, got {tuple(x.shape)} "
                              f"and {len(generators)}")
        if not self.enabled:
            return x
        draws = [draw_crop_flip(x.shape[1], g, self.padding, self.flip) for g in generators]
        offsets = torch.stack([d[0] for d in draws]) if self.padding else None
        flipped = torch.stack([d[1] for d in draws]) if self.flip else None
        return crop_flip(x, _to_device(offsets, x.device), _to_device(flipped, x.device), self.padding)


NO_AUGMENTATION = Augmentation(padding=0, flip=False)
CIFAR_AUGMENTATION = Augmentation()


class BatchIterator:
    """Mini-batches of an in-memory dataset, one epoch per ``iter()``.

    x: ``(N, C, H, W)`` uint8 or float images; y: ``(N,)`` labels. Each epoch draws a permutation
    (if ``shuffle``) and the augmentations from ``generator``, so a fixed generator seed gives a
    fixed batch stream; save ``generator.get_state()`` to resume mid-run. Batches are moved to
    ``device``, augmented there, converted to float32 in [0, 1] (uint8 / 255) and yielded as
    ``(x_batch (B, C, H, W), y_batch (B,))``. ``drop_last`` skips a final batch smaller than
    ``batch_size``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator, *,
                 shuffle: bool = True, drop_last: bool = False, augment: Augmentation = NO_AUGMENTATION,
                 device: torch.device | str | None = None):
        if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
            raise ConfigError(f"need images (N, C, H, W) and labels (N,), got {tuple(x.shape)} "
                              f"and {tuple(y.shape)}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if drop_last and batch_size > len(x):
            raise ConfigError(f"batch_size {batch_size} > {len(x)} examples with drop_last: "
                              "no batch would be produced")
        if not isinstance(generator, torch.Generator):
            raise ConfigError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        if not isinstance(augment, Augmentation):
            raise ConfigError(f"augment must be an Augmentation, got {type(augment).__name__}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator, self.shuffle, self.drop_last, self.augment = generator, shuffle, drop_last, augment
        self.device = torch.device(device) if device is not None else x.device

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.x.device)
        else:
            order = torch.arange(n, device=self.x.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            xb = self.x[idx].to(self.device, non_blocking=True)
            yb = self.y[idx].to(self.device, non_blocking=True)
            # Augment before the float conversion: cropping uint8 moves 4x fewer bytes.
            yield to_unit_float(self.augment(xb, self.generator)), yb
