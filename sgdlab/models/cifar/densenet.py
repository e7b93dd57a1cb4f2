"""DenseNet-BC for CIFAR (Huang et al. 2017): bottleneck layers and compressed transitions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sgdlab.models.cifar.base import BlockNet, PoolHead, init_weights

__all__ = ["DenseNet"]

# Number of dense blocks of the CIFAR DenseNet.
NUM_DENSE_BLOCKS = 3
# Bottleneck 1x1 conv outputs this many times the growth rate (the "B" of DenseNet-BC).
BOTTLENECK_FACTOR = 4
# The stem outputs twice the growth rate (DenseNet-BC convention).
STEM_FACTOR = 2


class DenseLayer(nn.Module):
    """``x -> cat([x, conv3x3(relu(bn(conv1x1(relu(bn(x))))))])``: ``(N, c, H, W) -> (N, c + g, H, W)``."""

    def __init__(self, c_in: int, growth: int, bottleneck: bool):
        super().__init__()
        c_mid = BOTTLENECK_FACTOR * growth if bottleneck else c_in
        self.bottleneck = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_mid, kernel_size=1, bias=False)
        ) if bottleneck else nn.Identity()
        self.bn = nn.BatchNorm2d(c_mid)
        self.conv = nn.Conv2d(c_mid, growth, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv(F.relu(self.bn(self.bottleneck(x))))
        return torch.cat([x, new], dim=1)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1-avgpool2: ``(N, c_in, H, W) -> (N, c_out, ceil(H/2), ceil(W/2))``."""

    def __init__(self, c_in: int, c_out: int):
        # ceil_mode lets odd or tiny inputs (8x8 digits) pass through all transitions.
        super().__init__(nn.BatchNorm2d(c_in), nn.ReLU(), nn.Conv2d(c_in, c_out, kernel_size=1, bias=False),
                         nn.AvgPool2d(2, ceil_mode=True))


class DenseNet(BlockNet):
    """DenseNet(-BC) of depth ``depth`` with growth rate ``growth``.

    With bottlenecks each dense block has ``(depth - 4) / 6`` layers (16 for DenseNet-100),
    transitions keep ``floor(compression * c)`` channels. DenseNet-BC-100, growth 12:
    0.77M parameters (10 classes). Blocks: ``block1`` = dense block 1 + transition 1,
    ``block2`` = dense block 2 + transition 2, ``block3`` = dense block 3 + final BN-ReLU.
    Cost: the concatenations make it the slowest model here per parameter.
    """

    def __init__(self, depth: int = 100, growth: int = 12, compression: float = 0.5, bottleneck: bool = True,
                 num_classes: int = 10, in_channels: int = 3, generator: torch.Generator | None = None):
        layers_per_conv = 2 if bottleneck else 1
        per_block = (depth - 4) / (NUM_DENSE_BLOCKS * layers_per_conv)
        if per_block < 1 or per_block != int(per_block):
            step = NUM_DENSE_BLOCKS * layers_per_conv
            raise ValueError(f"DenseNet depth must be {step}n+4 with n >= 1 (bottleneck={bottleneck}), "
                             f"got {depth}")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        for name, v in (("growth", growth), ("num_classes", num_classes), ("in_channels", in_channels)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        c = STEM_FACTOR * growth
        stem = nn.Conv2d(in_channels, c, kernel_size=3, padding=1, bias=False)
        blocks = []
        for b in range(NUM_DENSE_BLOCKS):
            layers = []
            for _ in range(int(per_block)):
                layers.append(DenseLayer(c, growth, bottleneck))
                c += growth
            if b < NUM_DENSE_BLOCKS - 1:
                c_out = math.floor(compression * c)
                layers.append(Transition(c, c_out))
                c = c_out
            else:
                layers += [nn.BatchNorm2d(c), nn.ReLU()]
            blocks.append(nn.Sequential(*layers))
        super().__init__(stem, blocks, PoolHead(c, num_classes))
        init_weights(self, generator)
