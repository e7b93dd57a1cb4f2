"""Metrics registered by users (``sgdlab.register_metric``): ``fn(model, params, data) -> (R,)``.

The engine logs a registered metric when the experiment names it in ``metrics.names``: it is
called at every evaluation step with the batched model, the parameters of a group of runs (a
dict of ``(R, ...)`` tensors) and the dataset, under ``torch.no_grad()``, and must return one
value per run (a tensor or array of shape ``(R,)``).
"""

from __future__ import annotations

from ..registry import Registry

# Metrics the engine and the bundled models compute: a user metric of one of these names would
# silently replace the built-in one in metrics.jsonl, the summary and the divergence check (which
# reads train_loss). ``ema_`` copies and model-specific names are checked again when an engine is
# built (sgdlab.train.Engine.check_names).
BUILTIN_METRICS = (
    "train_loss", "test_loss", "train_error", "test_error", "phase", "l0", "l0_robust", "l1", "support_mass",
    "param_norm", "balancedness", "jacobian_rank", "sharpness", "batch_sharpness", "gni", "hessian_cond",
    "residual", "dist_opt", "norm_sq", "imbalance", "relevant_norm", "irrelevant_norm", "beta_irrelevant",
    "dead_fraction", "curvature_hvps",
)
METRICS: Registry = Registry("metric", {n: "sgdlab (built-in metric)" for n in BUILTIN_METRICS})

__all__ = ["METRICS"]
