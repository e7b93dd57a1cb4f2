"""A user's ``torch.nn.Module`` on the deep-network path, with its activations as "blocks".

The deep path (``sgdlab.models.deep``) reads per-layer features through the block-output protocol
of :mod:`sgdlab.models.cifar.base` (``model(x, return_blocks=True) -> (out, {name: features})``).
:class:`HookedNet` gives any module that protocol: the outputs of its ReLU-like submodules
(:data:`sgdlab.metrics.features.RELU_LIKE`, the monitor's definition), in the order they run,
are ``block1``, ``block2``, ... (collected by forward hooks during the one forward pass), so
their feature sparsity is logged like a bundled network's.

:func:`module_factory` wraps a user's ``fn(**options) -> nn.Module`` for the deep path:
data-given arguments (``num_classes``, ``in_channels``, ``input_shape``) are
passed when ``fn`` takes them, and parameters are initialised inside ``torch.random.fork_rng``
seeded from the run's generator: every run gets its own reproducible draw and the caller's RNG
state is left as it was.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.features import RELU_LIKE

# Seeds drawn from a run's generator for torch's global generator inside fork_rng.
SEED_BOUND = 2**62


class HookedNet(nn.Module):
    """``net`` with the block-output protocol (module docstring)."""

    input_ndim = None  # inputs go to ``net`` as they are

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.activations = [m for m in net.modules() if isinstance(m, RELU_LIKE)]

    def forward(self, x: torch.Tensor, return_blocks: bool = False):
        if not return_blocks:
            return self.net(x)
        seen: list[torch.Tensor] = []
        handles = [m.register_forward_hook(lambda _m, _i, out: seen.append(out)) for m in self.activations]
        try:
            out = self.net(x)
        finally:
            for h in handles:
                h.remove()
        return out, {f"block{i + 1}": a for i, a in enumerate(seen)}


def module_factory(fn: Callable[..., nn.Module], data_args: tuple[str, ...]) -> Callable:
    """``make(generator, num_classes, in_channels, input_shape, **options) -> HookedNet`` for a
    user's ``fn(**options) -> nn.Module`` (see the module docstring)."""
    takes = inspect.signature(fn).parameters

    def make(generator, n_classes, in_channels, input_shape, **options):
        given = {"num_classes": n_classes, "in_channels": in_channels, "input_shape": input_shape}
        kw = {**options, **{k: v for k, v in given.items() if k in data_args and k in takes}}
        seed = int(torch.randint(SEED_BOUND, (1,), generator=generator)) if generator is not None else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = fn(**kw)
        if not isinstance(net, nn.Module):
            raise ConfigError(f"model function {fn.__qualname__} returned {type(net).__name__}, not a "
                              f"torch.nn.Module")
        return HookedNet(net)

    return make
