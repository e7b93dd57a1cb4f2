"""Wide ResNet WRN-d-k for CIFAR (Zagoruyko & Komodakis 2016), pre-activation blocks."""

from __future__ import annotations

import torch
from torch import nn

from sgdlab.models.cifar.base import BlockNet, PoolHead, init_weights
from sgdlab.models.cifar.resnet import STAGE_MULTIPLIERS_3, PreActBlock, conv3x3

__all__ = ["WideResNet"]

# Channels of the stem and base widths of the three stages before widening (16, 16k, 32k, 64k).
WRN_BASE_WIDTH = 16


class WideResNet(BlockNet):
    """WRN-``depth``-``widen_factor``: stem 3x3 conv to 16 channels, then 3 stages of
    ``(depth - 4) / 6`` :class:`PreActBlock` s with ``16k, 32k, 64k`` channels (strides 1, 2, 2),
    final BN + ReLU (inside ``block3``), global average pool, linear. No dropout.

    ``(N, C_in, H, W) -> (N, num_classes)``; blocks ``block1..block3`` of shapes
    ``(N, 16k, H, W)``, ``(N, 32k, H/2, W/2)``, ``(N, 64k, H/4, W/4)``.
    WRN-28-10 has 36.5M parameters (10 classes).
    """

    def __init__(self, depth: int = 28, widen_factor: int = 10, num_classes: int = 10, in_channels: int = 3,
                 generator: torch.Generator | None = None):
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40), got {depth}")
        for name, v in (("widen_factor", widen_factor), ("num_classes", num_classes),
                        ("in_channels", in_channels)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        n = (depth - 4) // 6
        stem = conv3x3(in_channels, WRN_BASE_WIDTH)
        stages, c_in = [], WRN_BASE_WIDTH
        for k, mult in enumerate(STAGE_MULTIPLIERS_3):
            c_out = WRN_BASE_WIDTH * mult * widen_factor
            stride = 1 if k == 0 else 2
            stages.append(nn.Sequential(
                *[PreActBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(n)]
            ))
            c_in = c_out
        stages[-1].append(nn.BatchNorm2d(c_in))
        stages[-1].append(nn.ReLU())
        super().__init__(stem, stages, PoolHead(c_in, num_classes))
        init_weights(self, generator)
