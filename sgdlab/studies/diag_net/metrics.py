"""Measurements of the diagonal linear network h(x) = <x, u*v>, batched over runs.

All functions take u, v of shape (R, d) and return tensors of shape (R,).
"""

from __future__ import annotations

import numpy as np
import torch

from sgdlab.core._jit import call_kernel
from sgdlab.studies.diag_net.rank import DiagJacobianRank, diag_jacobian_rank_svd

__all__ = ["DiagJacobianRank", "balancedness", "diag_jacobian_rank_svd", "half_mse_loss", "l0", "support_mass"]


def half_mse_loss(beta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||X beta - y||^2 / (2n) per run; beta (R, d), x (n, d), y (n,). On the CPU by the compiled
    ``half_mse_rows`` (float64 sums): a run's bits do not depend on the runs computed with it, as
    they can with a BLAS product over runs, so sharded runs match one process."""
    if beta.device.type != "cpu":
        return 0.5 * ((beta @ x.T - y) ** 2).mean(-1)
    # numba is imported on first use, as in rank.py
    from sgdlab.studies.diag_net._kernel import half_mse_rows

    out = np.empty(beta.shape[0])
    call_kernel(half_mse_rows, np.ascontiguousarray(beta.detach().numpy().T), np.ascontiguousarray(x.numpy()),
                np.ascontiguousarray(y.numpy()), out)
    return torch.from_numpy(out).to(beta.dtype)


def l0(beta: torch.Tensor, threshold: float) -> torch.Tensor:
    """#{j : |beta_j| > threshold}."""
    return (beta.abs() > threshold).sum(-1).to(beta.dtype)


def support_mass(beta: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Share of ||beta||_1 on the true support: sum_{j in S} |beta_j| / ||beta||_1 (NaN if beta = 0)."""
    a = beta.abs()
    return a[:, support].sum(-1) / a.sum(-1)


def balancedness(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """|| |u| - |v| ||_2 (0 on the balanced manifold, conserved-ish by gradient flow)."""
    return (u.abs() - v.abs()).norm(dim=-1)
