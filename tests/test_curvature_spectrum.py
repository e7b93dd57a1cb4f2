"""Hutchinson trace, SLQ spectral density and spectrum summaries against exact values."""

import numpy as np
import pytest
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature import (
    HessianOperator,
    MatrixOperator,
    condition_ratio,
    curvature_summary,
    dense_hessian,
    directional_curvature,
    hutchinson_trace,
    negative_eigenvalues,
    spectral_density,
)

DT = torch.float64


def problem(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(16, 4, generator=g, dtype=DT), torch.randn(16, 2, generator=g, dtype=DT)
    loss = lambda out, t: 0.5 * ((out - t) ** 2).sum(dim=1).mean()
    return model, loss, (x, y)


def test_hutchinson_within_a_few_standard_errors():
    model, loss, batch = problem()
    exact = float(torch.trace(dense_hessian(model, loss, batch)))
    op = HessianOperator(model, loss, batch)
    res = hutchinson_trace(op, 300, generator=torch.Generator().manual_seed(0))
    assert res.n_hvp == 300 == op.n_hvp and res.stderr > 0
    assert abs(res.estimate - exact) < 4 * res.stderr
    again = hutchinson_trace(op, 300, seed=0)  # seed == a fresh generator with that seed
    assert again.estimate == res.estimate
    # A diagonal matrix: Rademacher probes are exact (zero variance).
    diag = hutchinson_trace(MatrixOperator(torch.diag(torch.arange(5.0, dtype=DT))), 3)
    assert diag.estimate == 10.0 and diag.stderr == 0.0


def test_slq_integrates_to_one_and_matches_moments():
    model, loss, batch = problem(seed=1)
    h = dense_hessian(model, loss, batch)
    evals = torch.linalg.eigvalsh(h).numpy()
    p = len(evals)
    op = HessianOperator(model, loss, batch)
    dens = spectral_density(op, n_vectors=30, n_steps=12, seed=0)
    assert dens.nodes.shape == (30, 12) and np.allclose(dens.weights.sum(axis=1), 1.0)
    assert dens.n_hvp == 30 * 12
    grid, phi = dens.smoothed()
    assert np.trapezoid(phi, grid) == pytest.approx(1.0, abs=1e-6)
    # Gauss quadrature is exact per probe for degree <= 2m-1: check against v^T H^i v.
    v = torch.ones(p, dtype=DT) / np.sqrt(p)
    from sgdlab.metrics.curvature.lanczos import lanczos_quadrature
    theta, tau = lanczos_quadrature(MatrixOperator(h), v, 6)
    for i in range(1, 12):
        assert np.sum(tau * theta ** i) == pytest.approx(float(v @ torch.linalg.matrix_power(h, i) @ v), rel=1e-8)
    # Stochastic: moment i estimates tr(H^i)/p; compare within 4 standard errors across probes.
    for i in (1, 2, 3):
        per_probe = np.sum(dens.weights * dens.nodes ** i, axis=1) * p  # unit probes: E = tr(H^i)
        exact = float(np.sum(evals ** i))
        se = per_probe.std(ddof=1) / np.sqrt(len(per_probe))
        assert abs(per_probe.mean() - exact) < 4 * se + 1e-10
        assert dens.moment(i) == pytest.approx(per_probe.mean() / p)
    # Full Krylov space (m = p): the nodes are the exact eigenvalues.
    full = spectral_density(MatrixOperator(torch.diag(torch.tensor([-1.0, 0.5, 2.0], dtype=DT))), 1, 3)
    assert np.allclose(np.sort(full.nodes[0]), [-1.0, 0.5, 2.0])


def test_summaries_on_known_spectrum():
    eigs = torch.tensor([10.0, 5.0, 4.0, 2.0, 1.0, 0.5, 0.0, -0.5, -3.0], dtype=DT)
    q, _ = torch.linalg.qr(torch.randn(9, 9, dtype=DT, generator=torch.Generator().manual_seed(0)))
    op = MatrixOperator(q @ torch.diag(eigs) @ q.T)
    assert condition_ratio(op, 4, tol=1e-10) == pytest.approx(10.0 / 2.0, rel=1e-8)
    neg = negative_eigenvalues(op, 2, tol=1e-10)
    assert torch.allclose(neg.eigenvalues, torch.tensor([-3.0, -0.5], dtype=DT), atol=1e-9)
    s = curvature_summary(op, k=3, k_neg=3, tol=1e-10)
    assert s.condition_ratio == pytest.approx(2.5) and s.lambda_min == pytest.approx(-3.0)
    assert s.negative_ratio == pytest.approx(0.3) and s.n_negative == 2 and s.converged
    assert directional_curvature(op, q[:, 1] * 3.0) == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="lambda_k"):
        condition_ratio(op, 7, tol=1e-10)
    with pytest.raises(ConfigError, match="zero"):
        directional_curvature(op, torch.zeros(9, dtype=DT))
