"""Batched functional models: parameters are tensors with a leading run dimension.

Many independent runs (seeds x step sizes x schedules) of a small model advance together:
``params`` maps names to tensors of shape ``(R, ...)``. A model supplies

* ``init_params(seeds, dtype)`` -> params, one run per seed (randomness from the seed only);
* ``forward(params, x)`` -> outputs ``(R, b)``, for ``x`` shared ``(b, d)`` or per run ``(R, b, d)``;
* ``loss_and_grad(params, x, y)`` -> (mean batch loss ``(R,)``, grads like params); the default
  differentiates ``forward`` with ``torch.func`` (vmap over runs); models override it with
  closed forms where they have them;
* ``metrics(params, data, cfg, names)`` -> dict of ``(R,)`` tensors, the model family's measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from sgdlab.core._torch import torch
from sgdlab.core.config import Choice
from sgdlab.core.registry import Registry

if TYPE_CHECKING:
    Params = dict[str, torch.Tensor]
else:  # a plain alias: torch is imported on first use (sgdlab.core._torch)
    Params = dict


def half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example 0.5 (f - y)^2, shape like ``out``."""
    return 0.5 * (out - y) ** 2


class BatchedModel:
    random_init: bool = True  # False when every seed starts from the same parameters
    # Do the model's compiled kernels and its own metrics give each run the same bits whichever
    # runs share the batch, on any BLAS (loops per run, no BLAS product over runs)? Such runs are
    # spread over processes even where the BLAS probe fails (sgdlab.workflows.cores).
    batch_invariant: bool = False
    per_example_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = staticmethod(half_mse)

    def init_params(self, seeds: list[int], dtype=None) -> Params:  # pragma: no cover
        """Parameters of runs ``seeds``, leading dimension R, in ``dtype`` (None: float64)."""
        raise NotImplementedError

    def forward(self, params: Params, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def loss(self, params: Params, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean per-example loss over the batch, shape (R,)."""
        return self.per_example_loss(self.forward(params, x), y).mean(-1)

    def loss_and_grad(self, params: Params, x: torch.Tensor, y: torch.Tensor):
        """(loss (R,), grads) by torch.func: vmap over runs of grad of the one-run loss."""
        shared = x.dim() == 2

        def one(p, xb, yb):
            p1 = {k: v.unsqueeze(0) for k, v in p.items()}
            return self.loss(p1, xb, yb)[0]

        g_and_v = torch.func.vmap(torch.func.grad_and_value(one), in_dims=(0, None if shared else 0, None if shared else 0))
        grads, loss = g_and_v(params, x, y)
        return loss, grads

    def trainable(self, params: Params) -> list[str]:
        """Names of the parameters the optimizer updates (not buffers such as BN statistics)."""
        return [k for k in params if not k.startswith("buffer:")]

    def with_weights(self, params: Params, weights: Params, data) -> Params:
        """``params`` with the trainable entries replaced by ``weights`` (e.g. an EMA copy);
        models with data-dependent buffers (BatchNorm) recompute them for the new weights."""
        return {**params, **weights}

    def metric_names(self, data, cfg, dtype=None) -> list[str]:
        """Every metric ``metrics(..., names=None)`` logs for this model and data (in ``dtype``,
        the run's). The default evaluates one run at its initial parameters; models override it
        where that is costly."""
        dtype = torch.float64 if dtype is None else dtype
        with torch.no_grad():
            p = {k: v.to(data.x_train.device) for k, v in self.init_params([0], dtype=dtype).items()}
            return sorted(self.metrics(p, data, cfg, None))

    def metrics(self, params: Params, data, cfg, names=None) -> dict[str, torch.Tensor]:
        """Measurements of every run, name -> (R,); only ``names`` (all if None). Must include
        "train_loss" (the engine's divergence check reads it)."""
        raise NotImplementedError


class ModelConfig(Choice):
    """A batched model recipe; ``build(data)`` returns a :class:`BatchedModel`."""

    registry: ClassVar[Registry] = Registry("model")
    # Does the batched path gain from torch's intra-op threads? Toy models do not (small tensors:
    # threads cost more than they give); they spread runs over processes instead (sgdlab.workflows.cores).
    threaded: ClassVar[bool] = False

    def build(self, data) -> BatchedModel:  # pragma: no cover - abstract
        raise NotImplementedError
