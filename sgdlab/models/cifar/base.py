"""The shared skeleton of every deep model: ``stem -> named blocks -> head``.

Block-output protocol
---------------------
Every model in :mod:`sgdlab.models.cifar` is a :class:`BlockNet`:

* ``model(x)`` with ``x`` of shape ``(N, C_in, H, W)`` (values in [0, 1], no normalization
  layer) returns logits of shape ``(N, num_classes)``.
* ``model(x, return_blocks=True)`` returns ``(logits, blocks)`` from **one** forward pass;
  ``blocks`` is a ``dict[str, Tensor]`` in network order, keys ``"block1" .. "blockK"``,
  each tensor of shape ``(N, C_k, H_k, W_k)``. The tensors are not detached (wrap the call in
  ``torch.no_grad()`` for metrics).
* A block is one *stage* of the network (the unit the paper's code measures: ResNet
  ``layer1..layer4``, WRN/DenseNet dense or residual groups, VGG conv stages ending in a
  max-pool). ``model.blocks[name]`` is the module producing ``blocks[name]``, so a forward
  hook on it sees the same tensor.
* The **last** block always ends with the final ReLU, so its output is the non-negative feature
  map that the head pools (for pre-activation nets the closing BN-ReLU belongs to it). This is
  the block the paper reports feature sparsity for; ``model.last_block`` names it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["BlockNet", "PoolHead", "count_parameters", "init_weights"]


class PoolHead(nn.Module):
    """Global average pool + linear: ``(N, C, H, W) -> (N, num_classes)``.

    Adaptive pooling equals the CIFAR 4x4 (ResNet) / 8x8 (WRN, DenseNet) average pool on
    32x32 inputs and also works for other input sizes.
    """

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(self.pool(h), 1))


class BlockNet(nn.Module):
    """``stem -> blocks["block1"] -> ... -> blocks["blockK"] -> head``; see the module doc."""

    # Rank of the inputs forward() accepts: 4 = (N, C, H, W) images; None = any (MLPs flatten).
    input_ndim: int | None = 4

    def __init__(self, stem: nn.Module, blocks: Iterable[nn.Module], head: nn.Module):
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleDict({f"block{i + 1}": b for i, b in enumerate(blocks)})
        if len(self.blocks) == 0:
            raise ValueError("a BlockNet needs at least one block")
        self.head = head

    @property
    def block_names(self) -> tuple[str, ...]:
        return tuple(self.blocks.keys())

    @property
    def last_block(self) -> str:
        return self.block_names[-1]

    def forward(self, x: torch.Tensor, return_blocks: bool = False):
        """``(N, C_in, H, W) -> logits (N, num_classes)``, or ``(logits, {name: block output})``."""
        if self.input_ndim is not None and x.dim() != self.input_ndim:
            raise ValueError(f"expected an input of shape (N, C, H, W), got shape {tuple(x.shape)}")
        outputs: dict[str, torch.Tensor] = {}
        h = self.stem(x)
        for name, block in self.blocks.items():
            h = block(h)
            if return_blocks:
                outputs[name] = h
        logits = self.head(h)
        return (logits, outputs) if return_blocks else logits


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Initialise ``model`` in place and return it.

    Convs: Kaiming-normal, fan-out, ReLU gain (the authors' init); conv biases 0.
    Norm layers: weight 1, bias 0. Linear layers: PyTorch's default scheme (uniform with bound
    ``1/sqrt(fan_in)`` for weight and bias), redrawn here so that one ``generator`` makes the
    whole model reproducible. ``generator=None`` uses torch's default generator.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters (trainable ones only by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
