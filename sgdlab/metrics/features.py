"""Features of chosen layers of any ``nn.Module``, captured by forward hooks on a functional copy.

The features of a layer are its output on the measurement inputs, flattened per example to
``(n, m)`` (a conv layer's C x H x W units, as the paper flattens ResNet blocks). A layer is
named by its ``named_modules()`` name; by default every *ReLU-like* activation module
(:data:`RELU_LIKE`: activations with a zero or near-zero negative regime, where "active" means
output > 0) is used. A module called several times in one forward pass (one ``nn.ReLU``
reused inside a block) gives one feature set per call: ``name``, ``name#2``, ...

Capture runs :meth:`FunctionalLoss.output` under its context: parameters, buffers, modes, the
RNG and ``.grad`` of the model are untouched, and the hooks are removed before returning.
Per layer, with ``n`` examples and ``m`` units:

* ``positive_fraction`` = mean over examples and all m units of 1[a > 0] (the paper's raw
  fraction of positive activations);
* ``mean_abs`` ``(m,)`` = mean over examples of |a| per unit (dead units: < DEAD_THRESHOLD);
* ``sample`` ``(n, m')`` float64: the units of a fixed random subset of ``m' = min(m,
  max_neurons)`` (sorted ``randperm`` of a generator keyed by ``(seed, layer position)``, the
  same at every call), the input of :func:`sgdlab.metrics.sparsity.feature_sparsity`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.metrics.curvature.hvp import FunctionalLoss
from sgdlab.metrics.sparsity import DEEP_MAX_NEURONS

__all__ = ["RELU_LIKE", "LayerFeatures", "layer_features", "relu_like_layers", "resolve_layers"]

RELU_LIKE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.Mish, nn.Hardswish)


def relu_like_layers(model: nn.Module) -> list[str]:
    """Names of the ReLU-like activation modules of ``model``, in ``named_modules()`` order."""
    return [name for name, m in model.named_modules() if name and isinstance(m, RELU_LIKE)]


def resolve_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """``layers`` checked against the model's module names, or every ReLU-like module if None."""
    names = [n for n, _ in model.named_modules() if n]
    if layers is None:
        found = relu_like_layers(model)
        if not found:
            raise ConfigError(
                f"{type(model).__name__} has no ReLU-like activation module ({', '.join(t.__name__ for t in RELU_LIKE)}; "
                f"functional calls such as F.relu cannot be hooked): name the layers whose outputs are the "
                f"features, layers=[...] from {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")
        return found
    if isinstance(layers, str) or not layers:
        raise ConfigError(f"layers must be a non-empty list of module names, got {layers!r}")
    for name in layers:
        if name not in names:
            raise ConfigError(choices_message("layer", name, names))
    return list(layers)


@dataclass(frozen=True)
class LayerFeatures:
    """One layer's features on n examples (module doc); m = units per example."""

    units: int
    positive_fraction: float
    mean_abs: torch.Tensor  # (m,)
    sample: torch.Tensor  # (n, m') float64
    neuron_index: torch.Tensor  # (m',) int64, into the m flattened units


class _Collector:
    """Accumulates per-key statistics over chunks; key = layer name, '#k' for its k-th call."""

    def __init__(self, max_neurons: int, seed: int):
        self.max_neurons, self.seed = max_neurons, seed
        self.calls: dict[str, int] = {}
        self.order: list[str] = []
        self.n: dict[str, int] = {}
        self.pos: dict[str, float] = {}
        self.abs_sum: dict[str, torch.Tensor] = {}
        self.index: dict[str, torch.Tensor] = {}
        self.parts: dict[str, list[torch.Tensor]] = {}

    def hook(self, name: str):
        def fn(_module, _inputs, out):
            if not isinstance(out, torch.Tensor):
                raise ConfigError(f"layer {name!r} returns {type(out).__name__}, not a tensor: choose another layer")
            k = self.calls.get(name, 0)
            self.calls[name] = k + 1
            self.add(name if k == 0 else f"{name}#{k + 1}", out.detach())
        return fn

    def add(self, key: str, out: torch.Tensor) -> None:
        a = out.reshape(len(out), -1)
        if key not in self.index:
            self.order.append(key)
            m = a.shape[1]
            idx = torch.arange(m)
            if m > self.max_neurons:
                state = np.random.SeedSequence([self.seed, len(self.order)]).generate_state(1)[0]
                gen = torch.Generator().manual_seed(int(state))
                idx = torch.randperm(m, generator=gen)[: self.max_neurons].sort().values
            self.index[key] = idx
            self.n[key], self.pos[key] = 0, 0.0
            self.abs_sum[key] = torch.zeros(m, dtype=torch.float64, device=a.device)
            self.parts[key] = []
        self.n[key] += len(a)
        self.pos[key] += float((a > 0).sum())
        self.abs_sum[key] += a.abs().sum(0, dtype=torch.float64)
        self.parts[key].append(a[:, self.index[key].to(a.device)].double())


def layer_features(fn: FunctionalLoss, x: torch.Tensor, layers: Sequence[str], *,
                   max_neurons: int = DEEP_MAX_NEURONS, seed: int = 0,
                   chunk_size: int | None = None) -> dict[str, LayerFeatures]:
    """{key: LayerFeatures} of ``layers`` (resolved names) on inputs ``x (n, ...)`` (module doc)."""
    modules = dict(fn.model.named_modules())
    col = _Collector(max_neurons, seed)
    handles = [modules[name].register_forward_hook(col.hook(name)) for name in layers]
    step = chunk_size or len(x)
    try:
        with fn.context(), torch.no_grad():
            for lo in range(0, len(x), step):
                col.calls.clear()
                xb = x[lo:lo + step]
                fn.output(fn.theta, xb.to(fn.device, fn.dtype) if xb.is_floating_point() else xb.to(fn.device))
    finally:
        for h in handles:
            h.remove()
    return {k: LayerFeatures(units=len(col.abs_sum[k]), positive_fraction=col.pos[k] / (col.n[k] * len(col.abs_sum[k])),
                             mean_abs=col.abs_sum[k] / col.n[k], sample=torch.cat(col.parts[k]),
                             neuron_index=col.index[k]) for k in col.order}
