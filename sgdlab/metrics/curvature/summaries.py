"""Scalar summaries of the spectrum built on :func:`.lanczos.lanczos`.

* condition-style ratio   kappa_k = lambda_1 / lambda_k   (k chosen by the caller: the Hessian
  of a network is singular, so lambda_1 / lambda_min is meaningless; k = 10 or 20 is usual)
* negative curvature      the k_neg smallest algebraic eigenvalues; the ratio
  |lambda_min| / lambda_max when lambda_min < 0 (0 otherwise)
* directional curvature   d^T H d / ||d||^2 along a given direction, e.g. the last update step
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature._common import check_operator, check_positive_int
from sgdlab.metrics.curvature.lanczos import (
    _NEAR_ZERO_REL,
    DEFAULT_TOL,
    EigResult,
    lanczos,
)

__all__ = [
    "CurvatureSummary",
    "condition_ratio",
    "curvature_summary",
    "directional_curvature",
    "negative_eigenvalues",
]


@dataclass(frozen=True)
class CurvatureSummary:
    """top: k largest (descending); bottom: k_neg smallest (ascending), both (.,) float64."""

    top: torch.Tensor
    bottom: torch.Tensor
    condition_ratio: float  # lambda_1 / lambda_k; inf unless lambda_k > its residual (certified > 0)
    lambda_min: float
    negative_ratio: float  # |lambda_min| / lambda_max if lambda_min < 0 else 0
    n_negative: int  # how many of the k_neg smallest are certified < 0 (a lower bound on the count)
    n_hvp: int
    converged: bool
    loss_reduction: str


def condition_ratio(op, k: int, *, tol: float = DEFAULT_TOL, **lanczos_kw) -> float:
    """lambda_1 / lambda_k of the k largest algebraic eigenvalues (raises if lambda_k <= 0)."""
    check_positive_int("k", k, minimum=2)
    res = lanczos(op, k, which="LA", tol=tol, return_eigenvectors=False, **lanczos_kw)
    return _ratio(res)


def _ratio(res: EigResult) -> float:
    lam1, lamk = float(res.eigenvalues[0]), float(res.eigenvalues[-1])
    # Some eigenvalue lies within the residual of lambda_k: positive only if it clears that bound.
    if lamk <= float(res.residual_norms[-1]):
        raise ConfigError(f"lambda_k = {lamk:.3g} is not certified > 0 (residual {float(res.residual_norms[-1]):.1e}): "
                          f"the ratio lambda_1/lambda_k needs k within the positive part of the spectrum; "
                          f"choose a smaller k")
    return lam1 / lamk


def negative_eigenvalues(op, k: int = 1, *, tol: float = DEFAULT_TOL, **lanczos_kw) -> EigResult:
    """The k smallest algebraic eigenpairs (which='SA'), ascending."""
    return lanczos(op, k, which="SA", tol=tol, **lanczos_kw)


def curvature_summary(op, k: int = 10, k_neg: int = 1, *, tol: float = DEFAULT_TOL,
                      **lanczos_kw) -> CurvatureSummary:
    """Top-k, bottom-k_neg, lambda_1/lambda_k and the negative-curvature ratio in one call."""
    check_positive_int("k", k, minimum=2)
    check_positive_int("k_neg", k_neg)
    top = lanczos(op, k, which="LA", tol=tol, return_eigenvectors=False, **lanczos_kw)
    bot = lanczos(op, k_neg, which="SA", tol=tol, return_eigenvectors=False, **lanczos_kw)
    lam_max, lam_min = float(top.eigenvalues[0]), float(bot.eigenvalues[0])
    lamk = float(top.eigenvalues[-1])
    # Certified negative: below zero by more than its residual (the eigenvalue error bound) and
    # than the near-zero floor Lanczos used, so a numerically zero eigenvalue does not count.
    floor = tol * _NEAR_ZERO_REL * max(abs(lam_max), abs(lam_min))
    certified = bot.eigenvalues + torch.clamp(bot.residual_norms, min=floor) < 0
    return CurvatureSummary(
        top=top.eigenvalues,
        bottom=bot.eigenvalues,
        condition_ratio=lam_max / lamk if lamk > float(top.residual_norms[-1]) else float("inf"),
        lambda_min=lam_min,
        negative_ratio=abs(lam_min) / lam_max if (lam_min < 0 and lam_max > 0) else 0.0,
        n_negative=int(certified.sum()),
        n_hvp=top.n_hvp + bot.n_hvp,
        converged=top.converged and bot.converged,
        loss_reduction=op.loss_reduction,
    )


def directional_curvature(op, direction: torch.Tensor) -> float:
    """d^T H d / ||d||^2 for a flat direction d (p,), e.g. theta_{t+1} - theta_t (one product)."""
    check_operator(op)
    if not isinstance(direction, torch.Tensor) or direction.shape != (op.dim,):
        got = tuple(direction.shape) if isinstance(direction, torch.Tensor) else type(direction).__name__
        raise ConfigError(f"direction must be a flat ({op.dim},) tensor, got {got}")
    d = direction.to(op.device, op.dtype)
    nrm2 = float(torch.dot(d.double(), d.double()))
    if nrm2 == 0.0:
        raise ConfigError("direction is zero: curvature along it is undefined")
    return float(torch.dot(d.double(), op.matvec(d).double())) / nrm2
