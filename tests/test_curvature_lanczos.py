"""Lanczos eigenpairs against dense eigendecompositions and closed forms."""

import warnings

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature import (
    HessianOperator,
    MatrixOperator,
    dense_hessian,
    hessian_eigs,
    lanczos,
    sharpness,
)

DT = torch.float64


def mlp_problem(seed: int = 0, n: int = 24):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 10), torch.nn.Tanh(), torch.nn.Linear(10, 3)).to(DT)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 5, generator=g, dtype=DT)
    y = torch.randn(n, 3, generator=g, dtype=DT)
    loss = lambda out, t: ((out - t) ** 2).sum(dim=1).mean()
    return model, loss, (x, y)


def quadratic(eigs, seed: int = 0):
    """A = U diag(eigs) U^T with a random orthogonal U: known spectrum, dense eigenvectors."""
    eigs = torch.as_tensor(eigs, dtype=DT)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), dtype=DT,
                                       generator=torch.Generator().manual_seed(seed)))
    return q @ torch.diag(eigs) @ q.T, q


def test_top_k_matches_eigvalsh_of_dense_hessian():
    model, loss, batch = mlp_problem()
    evals = torch.linalg.eigvalsh(dense_hessian(model, loss, batch))
    res = hessian_eigs(model, loss, batch, k=5, tol=1e-9)
    assert res.converged and res.eigenvalues.shape == (5,) and res.eigenvectors.shape == (93, 5)
    assert torch.allclose(res.eigenvalues, evals.flip(0)[:5], rtol=1e-6, atol=0)
    assert (res.residual_norms <= 1e-9 * res.eigenvalues.abs()).all()
    vtv = res.eigenvectors.T @ res.eigenvectors
    assert torch.allclose(vtv, torch.eye(5, dtype=DT), atol=1e-8)
    low = hessian_eigs(model, loss, batch, k=3, which="SA", tol=1e-9)
    assert torch.allclose(low.eigenvalues, evals[:3], rtol=1e-6, atol=1e-10)


def test_sharpness_default_tolerance_is_1e4_relative():
    model, loss, batch = mlp_problem(seed=3)
    lam = torch.linalg.eigvalsh(dense_hessian(model, loss, batch))[-1]
    for seed in range(3):
        assert sharpness(model, loss, batch, seed=seed) == pytest.approx(float(lam), rel=1e-4)
    # float32 model: the default computes in float32 and still meets 1e-4
    assert sharpness(model.float(), loss, (batch[0].float(), batch[1].float())) == pytest.approx(float(lam), rel=1e-4)


SPECTRUM = [-3.0, -2.5, -1.0, -0.2, 0.0, 0.1, 0.5, 1.0, 2.0, 4.0, 4.5, 7.0] + list(np.linspace(-0.5, 0.9, 48))


@pytest.mark.parametrize("which,expected", [
    ("LA", [7.0, 4.5, 4.0]),
    ("SA", [-3.0, -2.5, -1.0]),
    ("BE", [7.0, 4.5, -2.5, -3.0]),
    ("LM", [7.0, 4.5, 4.0, -3.0]),
])
def test_closed_form_quadratic_with_negative_eigenvalues(which, expected):
    a, q = quadratic(SPECTRUM)
    op = MatrixOperator(a)
    res = lanczos(op, len(expected), which=which, tol=1e-10)
    assert res.converged
    assert torch.allclose(res.eigenvalues, torch.tensor(expected, dtype=DT), atol=1e-9)
    # eigenvectors are the true ones up to sign
    idx = [SPECTRUM.index(e) for e in expected]
    overlap = (res.eigenvectors.T @ q[:, idx]).abs().diagonal()
    assert torch.allclose(overlap, torch.ones(len(expected), dtype=DT), atol=1e-8)
    assert res.n_hvp == op.n_hvp


def test_restarts_and_budget():
    a, _ = quadratic(np.linspace(1.0, 2.0, 300))  # clustered: needs restarts
    res = lanczos(MatrixOperator(a), 3, tol=1e-8, max_basis=20, max_hvp=2000)
    assert res.converged and res.n_restarts > 0
    assert torch.allclose(res.eigenvalues, torch.tensor([2.0, 2.0 - 1 / 299, 2.0 - 2 / 299], dtype=DT), atol=1e-7)
    op = MatrixOperator(a)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        bad = lanczos(op, 3, tol=1e-12, max_basis=10, max_hvp=30)
    assert not bad.converged and op.n_hvp == bad.n_hvp <= 30 + 3


@pytest.mark.parametrize("k,max_ratio", [(1, 0.5), (3, 0.75)])
def test_warm_start_reduces_hvps(k, max_ratio):
    model, loss, batch = mlp_problem(seed=5)
    before = hessian_eigs(model, loss, batch, k=k)
    with torch.no_grad():  # a small training-like step of the parameters
        for p in model.parameters():
            p.add_(1e-4 * torch.randn(p.shape, dtype=DT, generator=torch.Generator().manual_seed(9)))
    cold = hessian_eigs(model, loss, batch, k=k, seed=1)
    warm = hessian_eigs(model, loss, batch, k=k, v0=before.eigenvectors)
    assert warm.converged and torch.allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-4)
    assert warm.n_hvp < max_ratio * cold.n_hvp, (warm.n_hvp, cold.n_hvp)


def test_invariant_start_vector_still_finds_the_top():
    a, q = quadratic([5.0, 1.0, 0.5, -1.0, 2.0, 3.0])
    # v0 is an exact eigenvector of a non-top eigenvalue: breakdown, then a random restart.
    res = lanczos(MatrixOperator(a), 2, tol=1e-10, v0=q[:, 1])
    assert torch.allclose(res.eigenvalues, torch.tensor([5.0, 3.0], dtype=DT), atol=1e-9)


def test_tiny_operator_full_space_and_zero_operator():
    res = lanczos(MatrixOperator(torch.diag(torch.tensor([1.0, -2.0], dtype=DT))), 2, which="BE", tol=1e-12)
    assert res.converged and torch.allclose(res.eigenvalues, torch.tensor([1.0, -2.0], dtype=DT))
    zero = lanczos(MatrixOperator(torch.zeros(4, 4, dtype=DT)), 1)
    assert zero.converged and zero.top == 0.0


def test_agrees_with_scipy_eigsh_on_linear_operator():
    model, loss, batch = mlp_problem(seed=2)
    op = HessianOperator(model, loss, batch)
    ref = sla.eigsh(op.as_linear_operator(), k=2, which="LA", tol=1e-12)[0]
    res = lanczos(op, 2, tol=1e-10)
    assert np.allclose(np.sort(ref)[::-1], res.eigenvalues.numpy(), rtol=1e-9)


def test_bad_arguments():
    op = MatrixOperator(torch.eye(4, dtype=DT))
    with pytest.raises(ConfigError, match="which"):
        lanczos(op, 1, which="largest")
    with pytest.raises(ConfigError, match="exceeds"):
        lanczos(op, 5)
    with pytest.raises(ConfigError, match="v0"):
        lanczos(op, 1, v0=torch.ones(3, dtype=DT))
    with pytest.raises(ConfigError, match="tol"):
        lanczos(op, 1, tol=0)
    with pytest.raises(ConfigError, match="symmetric operator"):
        lanczos(torch.eye(4), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lanczos(op, 1).converged  # identity: converges without warning


def test_basis_stays_orthonormal_and_the_krylov_relation_holds():
    """The recurrence + DGKS-checked single pass keeps Q orthonormal to working precision through
    restarts, and H Q^T = Q^T G + beta q_m e_m^T holds (the basis of every residual estimate)."""
    import importlib

    lz = importlib.import_module("sgdlab.metrics.curvature.lanczos")
    # Clustered top and a wide spread: orthogonality is lost fastest when Ritz values converge.
    eigs = np.concatenate([[10.0, 9.999, 9.99], np.geomspace(5.0, 1e-6, 197)])
    a, _ = quadratic(eigs, seed=3)
    op = MatrixOperator(a)
    kr = lz._Krylov(op, 30)
    assert kr.push(torch.randn(200, dtype=DT, generator=torch.Generator().manual_seed(0)))
    for _ in range(3):  # fill, restart twice (the arrow row of kept Ritz vectors), refill
        while kr.m < kr.max_basis and kr.pending:
            kr.step()
            q = kr.Q[: kr.m]
            assert (q @ q.T - torch.eye(kr.m, dtype=DT)).abs().max() < 1e-13
            e_m = torch.zeros(kr.m, dtype=DT)
            e_m[-1] = 1.0
            resid = a @ q.T - q.T @ torch.from_numpy(kr.G[: kr.m, : kr.m]) - kr.beta * torch.outer(kr.Q[kr.m], e_m)
            assert resid.abs().max() < 1e-12 * 10.0
        theta, s, _ = kr.ritz()
        keep = np.argsort(theta)[::-1][:12]
        kr.restart(s[:, keep], theta[keep])
