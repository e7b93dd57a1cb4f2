"""A fully connected network with the block-output protocol, for the deep-net path.

``MLPNet(input_shape, hidden, num_classes)``: inputs ``(N, *input_shape)`` (images or flat
features) are flattened to ``(N, D)``, ``D = prod(input_shape)``, then
``h_l = s(W_l h_{l-1} + b_l)`` for each hidden width and logits ``W_out h_L + b_out``
``(N, num_classes)``. Block ``block{l}`` is ``h_l`` ``(N, hidden[l-1])``: the feature sparsity
the engine logs per block is that of each hidden layer. Linear layers take PyTorch's default
initialisation (uniform with bound ``1/sqrt(fan_in)``) drawn from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from sgdlab.models.cifar.base import BlockNet, init_weights

__all__ = ["ACTIVATIONS", "MLPNet"]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


class MLPNet(BlockNet):
    """Flatten -> [Linear -> activation] per hidden width -> Linear (see the module doc)."""

    input_ndim = None  # any input shape: flattened

    def __init__(self, input_shape: Sequence[int], hidden: Sequence[int], num_classes: int = 10,
                 activation: str = "relu", bias: bool = True, generator: torch.Generator | None = None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        hidden = [int(h) for h in hidden]
        if not hidden or min(hidden) < 1 or min(input_shape) < 1 or num_classes < 1:
            raise ValueError(f"hidden widths, input_shape and num_classes must be positive, got hidden={hidden}, "
                             f"input_shape={tuple(input_shape)}, num_classes={num_classes}")
        blocks, c = [], math.prod(input_shape)
        for h in hidden:
            blocks.append(nn.Sequential(nn.Linear(c, h, bias=bias), ACTIVATIONS[activation]()))
            c = h
        super().__init__(nn.Flatten(), blocks, nn.Linear(c, num_classes, bias=bias))
        init_weights(self, generator)
