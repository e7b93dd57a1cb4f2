"""CIFAR ResNets: 4-stage ResNet-18/34 (post- and pre-activation) and the 3-stage ResNet-32.

All take ``(N, C_in, H, W)`` inputs in [0, 1] and follow the block-output protocol of
:mod:`sgdlab.models.cifar.base` (one block = one stage).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sgdlab.models.cifar.base import BlockNet, PoolHead, init_weights

__all__ = ["BasicBlock", "CifarResNet", "PreActBlock", "PreActResNet", "ResNet"]

# Channel multipliers of the four stages of an ImageNet-style ResNet (w, 2w, 4w, 8w).
STAGE_MULTIPLIERS_4 = (1, 2, 4, 8)
# Channel multipliers of the three stages of He et al.'s CIFAR ResNet (16, 32, 64 at w=16).
STAGE_MULTIPLIERS_3 = (1, 2, 4)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by a norm layer, whose shift makes a bias redundant.
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Post-activation block ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    ``(N, c_in, H, W) -> (N, c_out, H/stride, W/stride)``. A 1x1 conv + BN projection is used
    when the shape changes (He et al.'s option B, as in the CIFAR ResNet-18 of the paper).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: str = "projection"):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = make_shortcut(c_in, c_out, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation block ``conv(relu(bn(conv(relu(bn(x)))))) + shortcut``.

    ``(N, c_in, H, W) -> (N, c_out, H/stride, W/stride)``. The projection shortcut (1x1 conv,
    no BN) is applied to the pre-activated input, as in He et al. (2016b).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out)
        self.projection = (
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False)
            if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.projection(out) if self.projection is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PadShortcut(nn.Module):
    """Parameter-free shortcut (He et al.'s option A): subsample by ``stride``, zero-pad channels.

    ``(N, c_in, H, W) -> (N, c_out, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        if c_out < c_in:
            raise ValueError(f"option-A shortcut cannot shrink channels ({c_in} -> {c_out})")
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        lo = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, lo, self.extra - lo))


def make_shortcut(c_in: int, c_out: int, stride: int, kind: str) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    if kind == "projection":
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
        )
    if kind == "pad":
        return PadShortcut(c_in, c_out, stride)
    raise ValueError(f"unknown shortcut {kind!r}; allowed: pad, projection")


def _check_arch(num_blocks: Sequence[int], width: int, num_classes: int, in_channels: int) -> None:
    if not num_blocks or any(int(n) < 1 for n in num_blocks):
        raise ValueError(f"num_blocks must be positive integers, got {list(num_blocks)}")
    for name, v in (("width", width), ("num_classes", num_classes), ("in_channels", in_channels)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


class ResNet(BlockNet):
    """CIFAR ResNet "plain" (post-activation) with 4 stages of widths ``w, 2w, 4w, 8w``.

    Stem: 3x3 conv stride 1 + BN + ReLU, no max-pool. Stage k has ``num_blocks[k]``
    :class:`BasicBlock` s, the first of stages 2-4 with stride 2. Head: global average pool
    (= 4x4 pool on 32x32 inputs) + linear. ``num_blocks=(2, 2, 2, 2)`` is ResNet-18
    (11,173,962 parameters at w=64, 10 classes), ``(3, 4, 6, 3)`` is ResNet-34.
    Blocks: ``block1..block4`` = stage outputs, ``(N, mult*w, H/s, W/s)``.
    """

    def __init__(self, num_blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10, width: int = 64,
                 in_channels: int = 3, generator: torch.Generator | None = None):
        _check_arch(num_blocks, width, num_classes, in_channels)
        stem = nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())
        stages, c_in = [], width
        for k, (n, mult) in enumerate(zip(num_blocks, STAGE_MULTIPLIERS_4)):
            c_out = mult * width
            stride = 1 if k == 0 else 2
            layers = [BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(n)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        super().__init__(stem, stages, PoolHead(c_in, num_classes))
        init_weights(self, generator)


class PreActResNet(BlockNet):
    """Pre-activation CIFAR ResNet with 4 stages of widths ``w, 2w, 4w, 8w``.

    Stem: a bare 3x3 conv (the first block pre-activates). The final BN + ReLU is part of the
    last block, so ``block4`` is non-negative like in the post-activation net.
    """

    def __init__(self, num_blocks: Sequence[int] = (2, 2, 2, 2), num_classes: int = 10, width: int = 64,
                 in_channels: int = 3, generator: torch.Generator | None = None):
        _check_arch(num_blocks, width, num_classes, in_channels)
        stem = conv3x3(in_channels, width)
        stages, c_in = [], width
        for k, (n, mult) in enumerate(zip(num_blocks, STAGE_MULTIPLIERS_4)):
            c_out = mult * width
            stride = 1 if k == 0 else 2
            stages.append(nn.Sequential(
                *[PreActBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1) for i in range(n)]
            ))
            c_in = c_out
        stages[-1].append(nn.BatchNorm2d(c_in))
        stages[-1].append(nn.ReLU())
        super().__init__(stem, stages, PoolHead(c_in, num_classes))
        init_weights(self, generator)


class CifarResNet(BlockNet):
    """He et al.'s 3-stage CIFAR ResNet of depth ``6n + 2`` (ResNet-32: n = 5 blocks per stage).

    Widths ``w, 2w, 4w`` (16, 32, 64 at the default w=16), post-activation
    :class:`BasicBlock` s with the parameter-free option-A shortcut (0.46M parameters for
    ResNet-32 at w=16, 10 classes). Blocks: ``block1..block3`` = stage outputs.
    """

    def __init__(self, depth: int = 32, num_classes: int = 10, width: int = 16, in_channels: int = 3,
                 shortcut: str = "pad", generator: torch.Generator | None = None):
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        _check_arch([n] * 3, width, num_classes, in_channels)
        stem = nn.Sequential(conv3x3(in_channels, width), nn.BatchNorm2d(width), nn.ReLU())
        stages, c_in = [], width
        for k, mult in enumerate(STAGE_MULTIPLIERS_3):
            c_out = mult * width
            stride = 1 if k == 0 else 2
            stages.append(nn.Sequential(*[
                BasicBlock(c_in if i == 0 else c_out, c_out, stride if i == 0 else 1, shortcut=shortcut)
                for i in range(n)
            ]))
            c_in = c_out
        super().__init__(stem, stages, PoolHead(c_in, num_classes))
        init_weights(self, generator)
