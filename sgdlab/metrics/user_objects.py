"""What a measurement reads from the user's own objects: the measurement set from their data, the
trained module inside ``torch.compile`` / DDP wrappers, the torch optimizer inside framework
wrappers and its step-size settings, and the attention kernel that second derivatives need.

Measurement set (:func:`measurement_set`, taken once): tensors ``(x, y)`` -> the fixed subset
:func:`~sgdlab.metrics.measure.subset_indices` ``(n, subset, seed)`` (sorted ``randperm(n)[:subset]``
of a generator seeded with ``seed``; all examples when ``subset`` is None); a ``DataLoader`` over a
map-style dataset -> the same rule on its dataset, collated with the loader's ``collate_fn`` (the
loader itself is never iterated: that would advance its sampler's random state and change the
training order); a list of ``(x, y)`` batches -> concatenated, then the rule.
"""

from __future__ import annotations

import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.data import DataLoader, IterableDataset

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.measure import SUBSET_SEED, stability_thresholds, subset_indices

__all__ = ["math_attention", "measurement_set", "optimizer_hparams", "unwrap_model", "unwrap_optimizer"]


def _pair(batch, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
        raise ConfigError(f"{where}: expected (x, y) tensors, got {type(batch).__name__}; pass the measurement "
                          f"set as tensors (x, y) (e.g. for dict batches: (batch['input_ids'], batch['labels']))")
    return batch[0], batch[1]


def measurement_set(data, subset: int | None = None, seed: int = SUBSET_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed measurement set ``(x (n, ...), y (n, ...))`` (module doc for the rule)."""
    with torch.random.fork_rng(devices=[]):  # dataset transforms draw from a private RNG state
        if isinstance(data, DataLoader):
            ds = data.dataset
            if isinstance(ds, IterableDataset) or not hasattr(ds, "__len__"):
                raise ConfigError("the DataLoader's dataset is not indexable (an IterableDataset): "
                                  "pass the measurement set as tensors (x, y)")
            idx = subset_indices(len(ds), subset, seed).tolist()
            size = data.batch_size or len(idx)
            parts = [_pair(data.collate_fn([ds[i] for i in idx[lo:lo + size]]), "DataLoader batch")
                     for lo in range(0, len(idx), size)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
            x, y = data
        elif isinstance(data, (tuple, list)) and data:
            parts = [_pair(b, f"batch {i}") for i, b in enumerate(data)]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            raise ConfigError(f"data must be tensors (x, y), a DataLoader or a list of (x, y) batches, "
                              f"got {type(data).__name__}")
        if len(x) != len(y) or len(x) == 0:
            raise ConfigError(f"x and y need the same non-zero number of examples, got {len(x)} and {len(y)}")
        idx = subset_indices(len(x), subset, seed)
        return x[idx.to(x.device)], y[idx.to(y.device)]


def optimizer_hparams(optimizer) -> dict | None:
    """{lr, momentum, dampening, nesterov, weight_decay} of the SGD-like param group with the
    lowest edge (every group's own edge when they agree), or None for methods with ``betas``.

    Param groups that differ: the run is unstable as soon as one group is, so the group whose
    momentum edge is lowest stands for the optimizer (lr 0 groups never move and are skipped).
    """
    groups = [g for g in optimizer.param_groups if g.get("params", [None])]
    if any("betas" in g for g in groups):
        return None
    keys = {"lr": 0.0, "momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}
    vals = [dict(zip(keys, (float(g.get(k, d)) for k, d in keys.items()))) for g in groups]

    def edge(v):
        if not v["lr"] > 0:
            return math.inf
        t = stability_thresholds(v["lr"], v["momentum"], dampening=v["dampening"] if not v["nesterov"] else 0.0,
                                 nesterov=bool(v["nesterov"]), weight_decay=v["weight_decay"])
        return t.momentum_edge
    if any(v["lr"] < 0 or not math.isfinite(v["lr"]) for v in vals):
        return next(v for v in vals if v["lr"] < 0 or not math.isfinite(v["lr"]))
    return min(vals, key=edge)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose parameters train: through ``torch.compile`` (``_orig_mod``) and DDP /
    DataParallel (``module``) wrappers, which share the parameters of what they wrap."""
    for _ in range(8):  # wrappers of wrappers, never a cycle
        inner = getattr(model, "_orig_mod", None)
        if inner is None and isinstance(model, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)):
            inner = model.module
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner
    return model


def unwrap_optimizer(optimizer):
    """The torch optimizer inside framework wrappers (accelerate's ``AcceleratedOptimizer``:
    ``.optimizer``; Lightning's ``LightningOptimizer``: ``._optimizer``), whose class and state
    say which update it makes."""
    for _ in range(8):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if inner is None or inner is optimizer or not hasattr(inner, "param_groups"):
            return optimizer
        optimizer = inner
    return optimizer


def math_attention():
    """The math kernel of scaled_dot_product_attention: the fused (flash, memory-efficient)
    kernels have no double backward, the Hessian needs one; the math kernel computes the same
    function with differentiable operations."""
    return sdpa_kernel(SDPBackend.MATH)
