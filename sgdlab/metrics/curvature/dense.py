"""Exact dense Hessians of small models (the reference) and operators from explicit matrices.

``dense_hessian`` builds H = sum_b n_b d^2 L_b / d theta^2 / N, shape (p, p), with
``torch.func.hessian`` (forward-over-reverse Jacobian of the gradient), independently of the
HVP code in :mod:`.hvp`. Exception: with ``bn_mode="train"`` (batch statistics) on a model with
BatchNorm, ``torch.func.hessian`` and ``jacrev(jacrev)`` return wrong entries in torch 2.13
(errors ~0.2 on a 5-8-3 net, checked against finite differences of the gradient; the vmap of
BatchNorm's backward is at fault), so that case uses ``torch.autograd.functional.hessian``
(row by row, no vmap). Both run on the same functional copy (same parameter order, dtype,
BatchNorm handling and chunk weighting). Memory is O(p^2), so it refuses p > ``max_params``
unless the caller raises the limit.
"""

from __future__ import annotations

import torch
from torch.func import hessian
from torch.nn.modules.batchnorm import _BatchNorm

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature._common import LOSS_REDUCTION, check_positive_int
from sgdlab.metrics.curvature.hvp import BNMode, FunctionalLoss, LossFn, _Data

__all__ = ["DENSE_MAX_PARAMS", "MatrixOperator", "dense_eigvalsh", "dense_hessian"]

# A float64 (p, p) Hessian at p = 5000 takes 200 MB and the eigendecomposition a few seconds:
# above that Lanczos is the tool.
DENSE_MAX_PARAMS = 5000


def dense_hessian(model: torch.nn.Module, loss_fn: LossFn, data, *, bn_mode: BNMode | None = None,
                  dtype: torch.dtype | None = None, chunk_size: int | None = None,
                  max_params: int = DENSE_MAX_PARAMS) -> torch.Tensor:
    """Exact Hessian of the size-weighted mean loss, (p, p), in ``dtype`` (default the model's)."""
    check_positive_int("max_params", max_params)
    fn = FunctionalLoss(model, loss_fn, bn_mode=bn_mode, dtype=dtype)
    if fn.dim > max_params:
        raise ConfigError(f"the model has p={fn.dim} parameters > max_params={max_params}; "
                          f"a dense Hessian needs O(p^2) memory, use HessianOperator + lanczos instead")
    batch_stats = fn.bn_mode == "train" and any(isinstance(m, _BatchNorm) for m in model.modules())
    total, n = torch.zeros(fn.dim, fn.dim, dtype=fn.dtype, device=fn.device), 0
    for x, y in _Data(data, chunk_size):
        xb, yb = fn.prepare(x, y)
        with fn.context():
            f = lambda th, xb=xb, yb=yb: fn.loss(th, xb, yb)
            h = torch.autograd.functional.hessian(f, fn.theta) if batch_stats else hessian(f)(fn.theta)
        total += len(x) * h
        n += len(x)
    return total / n


def dense_eigvalsh(model: torch.nn.Module, loss_fn: LossFn, data, **kw) -> torch.Tensor:
    """All Hessian eigenvalues in ascending order, (p,), via ``torch.linalg.eigvalsh``."""
    h = dense_hessian(model, loss_fn, data, **kw)
    return torch.linalg.eigvalsh((h + h.T) / 2)


class MatrixOperator:
    """A symmetric operator from an explicit (p, p) matrix: closed-form tests and quadratics.

    The matrix is symmetrised, (A + A^T) / 2. ``n_hvp`` counts products like HessianOperator.
    """

    def __init__(self, matrix: torch.Tensor, *, loss_reduction: str = LOSS_REDUCTION):
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            got = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix).__name__
            raise ConfigError(f"MatrixOperator needs a square 2-D tensor, got {got}")
        if not matrix.is_floating_point():
            raise ConfigError(f"MatrixOperator needs a floating matrix, got {matrix.dtype}")
        self.matrix = (matrix + matrix.T) / 2
        self.dim = matrix.shape[0]
        self.dtype = matrix.dtype
        self.device = matrix.device
        self.n_hvp = 0
        self.loss_reduction = loss_reduction

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.shape != (self.dim,):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ConfigError(f"expected a flat vector of shape ({self.dim},), got {got}")
        self.n_hvp += 1
        return self.matrix @ v.to(self.device, self.dtype)

    __matmul__ = matvec
