"""Measurements of the diagonal linear network h(x) = <x, u*v>, batched over runs.

All functions take u, v of shape (R, d) and return tensors of shape (R,).
"""

from __future__ import annotations

import torch


def half_mse_loss(beta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """||X beta - y||^2 / (2n) per run; beta (R, d), x (n, d), y (n,)."""
    return 0.5 * ((beta @ x.T - y) ** 2).mean(-1)


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


class DiagJacobianRank:
    """rank of phi = [X diag(v), X diag(u)] (N x 2d) with a relative threshold, without an SVD per point.

    phi phi^T = X diag(s^2) X^T with s = sqrt(u^2 + v^2), so phi has the singular values of
    X D, D = diag(s). If X (N >= d) has full column rank with extreme singular values
    sigma_min, sigma_max and kappa = sigma_max / sigma_min, then for the k-th largest s_(k):
        sigma_min s_(k) <= sigma_k(X D) <= sigma_max s_(k).
    Hence with rho_k = s_(k) / s_(1): rho_k > rtol kappa  => sigma_k / sigma_1 > rtol (counted),
    and rho_k <= rtol / kappa => sigma_k / sigma_1 <= rtol (not counted). Only runs with some
    rho_k in between need the exact SVD of X D. Exactness against the SVD of phi is tested.
    """

    def __init__(self, x: torch.Tensor, rtol: float):
        self.rtol = rtol
        n, d = x.shape
        sv = torch.linalg.svdvals(x)
        full_rank = n >= d and sv[-1] > sv[0] * d * torch.finfo(x.dtype).eps
        self.kappa = float(sv[0] / sv[-1]) if full_rank else float("inf")
        # X = Q R with orthonormal Q: X D and R D (d x d instead of N x d) have the same
        # singular values, so the exact fallback works on the smaller matrix.
        self.r = torch.linalg.qr(x, mode="r").R if n >= d else x
        self.n_svd = 0  # how many exact SVDs were needed (for tests and benchmarks)

    def __call__(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        s = torch.sqrt(u * u + v * v)
        smax = s.max(-1, keepdim=True).values
        rho = s / smax
        sure = (rho > self.rtol * self.kappa).sum(-1)
        unsure = ((rho > self.rtol / self.kappa) & (rho <= self.rtol * self.kappa)).any(-1)
        out = sure.to(u.dtype)
        ok = torch.isfinite(smax[:, 0]) & (smax[:, 0] > 0)
        out[smax[:, 0] == 0] = 0.0
        out[~torch.isfinite(smax[:, 0])] = float("nan")
        todo = torch.nonzero(unsure & ok).flatten()
        if todo.numel():
            self.n_svd += todo.numel()
            sv = torch.linalg.svdvals(self.r.unsqueeze(0) * s[todo].unsqueeze(1))  # batched (k, d, d)
            out[todo] = (sv / sv[:, :1] > self.rtol).sum(-1).to(u.dtype)
        return out


def diag_jacobian_rank_svd(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, rtol: float) -> torch.Tensor:
    """Reference: rank of phi = [X diag(v), X diag(u)] by a full SVD per run (as the authors)."""
    out = []
    for r in range(u.shape[0]):
        phi = torch.cat([x * v[r], x * u[r]], dim=1)
        sv = torch.linalg.svdvals(phi)
        out.append(float((sv / sv[0] > rtol).sum()) if sv[0] > 0 else 0.0)
    return torch.tensor(out, dtype=u.dtype)
