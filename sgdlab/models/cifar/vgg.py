"""VGG-11 / VGG-16 for CIFAR, with or without batch norm, single linear classifier."""

from __future__ import annotations

import torch
from torch import nn

from sgdlab.models.cifar.base import BlockNet, PoolHead, init_weights

__all__ = ["VGG", "VGG_STAGES"]

# Convs per stage of each VGG depth; every stage ends in a 2x2 max-pool.
VGG_STAGES = {11: (1, 1, 2, 2, 2), 16: (2, 2, 3, 3, 3)}
# Stage channel multipliers: 64, 128, 256, 512, 512 at the default width 64.
VGG_MULTIPLIERS = (1, 2, 4, 8, 8)


class VGG(BlockNet):
    """VGG-``depth`` with stage widths ``w, 2w, 4w, 8w, 8w`` (3x3 convs, ReLU, optional BN).

    ``(N, C_in, H, W) -> (N, num_classes)``. Blocks ``block1..block5`` are the conv stages,
    each ending in a max-pool (``ceil_mode`` so inputs smaller than 32x32 still work), of shape
    ``(N, mult*w, ceil(H/2^k), ceil(W/2^k))``. The head is a global average pool (a no-op on
    the 1x1 map of 32x32 inputs) and a single linear layer, the usual CIFAR VGG. Without BN the
    convs carry biases (initialised to 0).
    """

    def __init__(self, depth: int = 16, batch_norm: bool = False, num_classes: int = 10, width: int = 64,
                 in_channels: int = 3, generator: torch.Generator | None = None):
        if depth not in VGG_STAGES:
            raise ValueError(f"unknown VGG depth {depth}; allowed: {', '.join(map(str, sorted(VGG_STAGES)))}")
        for name, v in (("width", width), ("num_classes", num_classes), ("in_channels", in_channels)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        stages, c_in = [], in_channels
        for n_convs, mult in zip(VGG_STAGES[depth], VGG_MULTIPLIERS):
            c_out = mult * width
            layers: list[nn.Module] = []
            for _ in range(n_convs):
                layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.ReLU())
                c_in = c_out
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
            stages.append(nn.Sequential(*layers))
        super().__init__(nn.Identity(), stages, PoolHead(c_in, num_classes))
        init_weights(self, generator)
