"""Spectral density of H by stochastic Lanczos quadrature (SLQ).

The normalised spectral measure phi(t) = (1/p) sum_i delta(t - lambda_i) is estimated as

    phi(t) ~ (1/n_v) sum_{l=1..n_v} sum_{j=1..m} tau_{lj} delta(t - theta_{lj})

where for each random unit start v_l (normalised Rademacher), m Lanczos steps with full
reorthogonalization give Ritz values theta_{lj} (nodes) and squared first components of the
Ritz vectors tau_{lj} (weights, sum_j tau_{lj} = 1). The quadrature is exact for polynomials of
degree <= 2m - 1 for each v_l, so moments sum_j tau_{lj} theta_{lj}^i are unbiased estimates of
tr(H^i) / p for i <= 2m - 1 (E[v v^T] = I / p). ``smoothed`` replaces each delta by a Gaussian of
width sigma, which integrates to 1 up to the mass outside the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature._common import (
    check_operator,
    check_positive_float,
    check_positive_int,
    make_generator,
    rademacher,
)
from sgdlab.metrics.curvature.lanczos import lanczos_quadrature

__all__ = ["SpectralDensity", "spectral_density"]

DEFAULT_N_VECTORS = 10
DEFAULT_N_STEPS = 40
# Default kernel width as a fraction of the spectral range: resolves ~100 features.
_SIGMA_FRACTION = 0.01
# The default grid extends this many widths beyond the extreme nodes (Gaussian mass
# outside ~ 3e-7), so the smoothed density integrates to 1 on it.
_GRID_MARGIN_SIGMAS = 5.0
_DEFAULT_GRID_POINTS = 2000


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ nodes and weights, each (n_vectors, n_steps); rows padded with weight 0 on breakdown."""

    nodes: np.ndarray
    weights: np.ndarray
    n_hvp: int
    loss_reduction: str

    def moment(self, i: int) -> float:
        """Estimate of tr(H^i) / p (exact quadrature for i <= 2 n_steps - 1)."""
        check_positive_int("i", i, minimum=0)
        return float(np.mean(np.sum(self.weights * self.nodes ** i, axis=1)))

    def smoothed(self, grid: np.ndarray | None = None, sigma: float | None = None,
                 n_points: int = _DEFAULT_GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
        """(grid (g,), density (g,)) with each node replaced by N(theta, sigma^2)."""
        mask = self.weights > 0
        lo, hi = float(self.nodes[mask].min()), float(self.nodes[mask].max())
        if sigma is None:
            sigma = _SIGMA_FRACTION * max(hi - lo, abs(hi), np.finfo(np.float64).tiny)
        sigma = check_positive_float("sigma", sigma)
        if grid is None:
            check_positive_int("n_points", n_points, minimum=2)
            margin = _GRID_MARGIN_SIGMAS * sigma
            grid = np.linspace(lo - margin, hi + margin, n_points)
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 1:
            raise ConfigError(f"grid must be 1-D, got shape {grid.shape}")
        t, w = self.nodes[mask], self.weights[mask] / self.nodes.shape[0]
        z = (grid[:, None] - t[None, :]) / sigma
        dens = np.exp(-0.5 * z ** 2) @ w / (sigma * math.sqrt(2 * math.pi))
        return grid, dens


def spectral_density(op, n_vectors: int = DEFAULT_N_VECTORS, n_steps: int = DEFAULT_N_STEPS, *,
                     generator: torch.Generator | None = None, seed: int = 0) -> SpectralDensity:
    """SLQ of the symmetric operator ``op``: n_vectors probes of n_steps Lanczos steps each."""
    check_operator(op)
    check_positive_int("n_vectors", n_vectors)
    check_positive_int("n_steps", n_steps)
    m = min(n_steps, op.dim)
    gen = make_generator(generator, seed)
    nodes, weights = np.zeros((n_vectors, m)), np.zeros((n_vectors, m))
    start = op.n_hvp
    for i in range(n_vectors):
        v = rademacher(op.dim, gen, torch.float64, op.device)
        theta, tau = lanczos_quadrature(op, v, m)
        nodes[i, : len(theta)], weights[i, : len(tau)] = theta, tau
    return SpectralDensity(nodes=nodes, weights=weights, n_hvp=op.n_hvp - start,
                           loss_reduction=op.loss_reduction)
