"""Metrics registered by users (``sgdlab.register_metric``): ``fn(model, params, data) -> (R,)``.

The engine logs a registered metric when the experiment names it in ``metrics.names``: it is
called at every evaluation step with the batched model, the parameters of a group of runs (a
dict of ``(R, ...)`` tensors) and the dataset, under ``torch.no_grad()``, and must return one
value per run (a tensor or array of shape ``(R,)``).
"""

from __future__ import annotations

from sgdlab.core.registry import Registry

METRICS: Registry = Registry("metric")

__all__ = ["METRICS"]
