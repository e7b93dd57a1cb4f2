"""The diagonal-net Jacobian rank without an SVD of phi equals brute force (float64).

Two references: the SVD of the explicit phi (the authors' computation; exact where no singular
value lies within its rounding error ~ eps sigma_1 of the threshold), and LAPACK's Jacobi SVD
``dgejsv`` of X diag(s), which computes every singular value of a column-scaled matrix to high
*relative* accuracy (checked against 80-digit mpmath below), so it resolves the authors'
threshold 1e-15 and singular values placed within 0.1% of any threshold.
"""

import numpy as np
import pytest
import torch
from scipy.linalg.lapack import dgejsv

from sgdlab.data.synthetic import SparseRegression
from sgdlab.engine.train import Engine
from sgdlab.optim.config import SGD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.diag_net.metrics import DiagJacobianRank, diag_jacobian_rank_svd
from sgdlab.studies.diag_net.model import DiagonalNetConfig

pytestmark = pytest.mark.study("diag_net")

AUTHORS_RTOL = 1e-15
NEAR = 1e-3  # adversarial thresholds sit this close (relative) to a singular value


def jacobi_singular_values(a: np.ndarray) -> np.ndarray:
    """All singular values of a (N >= d) to high relative accuracy, descending (dgejsv, JOBA='C')."""
    sva, _u, _v, work, _iwork, info = dgejsv(np.asfortranarray(a), joba=0, jobu=3, jobv=3)
    assert info == 0
    return np.sort(sva * (work[0] / work[1]))[::-1]


def jacobi_rank(u, v, x, rtol):
    """rank phi via sigma(phi) = sigma(X diag(sqrt(u^2 + v^2))) and zeros, Jacobi SVD per run."""
    out = []
    for ur, vr in zip(u.numpy(), v.numpy()):
        s = np.sqrt(ur * ur + vr * vr)
        if s.max() == 0:
            out.append(0.0)
            continue
        sv = jacobi_singular_values(x.numpy() * (s / s.max()))
        out.append(float((sv > rtol * sv[0]).sum()))
    return np.array(out)


def trajectory_states(n_states=12):
    """(u, v) batches from real SGD runs on the paper's data, at many points of training."""
    cfg = ExperimentConfig(data=SparseRegression(n=40, d=60, r=6, n_test=200), model=DiagonalNetConfig(), seeds=4,
                           steps=20000,
                           arms=(ArmConfig("a", SGD(1), Constant(0.5)), ArmConfig("b", SGD(1), Constant(0.9))),
                           eval=EvalConfig("log", n_states))
    eng = Engine(cfg)
    state = eng.initial_state()
    out = []
    eng.run(state, after_eval=lambda s: out.append({k: v.clone() for k, v in s.params[0].items()}))
    return eng.data.x_test[:120], out


@pytest.fixture(scope="module")
def trajectory():
    return trajectory_states()


@pytest.mark.parametrize("rtol", [1e-4, 1e-8, 1e-12])
def test_equals_svd_of_phi_along_training(trajectory, rtol):
    x, states = trajectory
    rank = DiagJacobianRank(x, rtol)
    for p in states:
        fast = rank(p["u"], p["v"])
        np.testing.assert_array_equal(fast.numpy(), diag_jacobian_rank_svd(p["u"], p["v"], x, rtol).numpy())
        np.testing.assert_array_equal(fast.numpy(), jacobi_rank(p["u"], p["v"], x, rtol))
    assert rank.n_reduced > 0  # the inertia path was exercised, not only the sandwich


def test_authors_threshold_along_training(trajectory):
    """At rtol = 1e-15 the SVD of phi is at its rounding floor: the exact count equals the Jacobi
    SVD's, and differs from phi's float64 SVD only by singular values inside that SVD's noise."""
    x, states = trajectory
    rank = DiagJacobianRank(x, AUTHORS_RTOL)
    for p in states:
        fast = rank(p["u"], p["v"]).numpy()
        np.testing.assert_array_equal(fast, jacobi_rank(p["u"], p["v"], x, AUTHORS_RTOL))
        for r in range(fast.size):
            phi = torch.cat([x * p["v"][r], x * p["u"][r]], dim=1)
            sv = torch.linalg.svdvals(phi).numpy()
            noise = 64 * np.sqrt(phi.shape[1]) * np.finfo(np.float64).eps * sv[0]  # |error| of a float64 SVD
            near = int((np.abs(sv - AUTHORS_RTOL * sv[0]) <= noise).sum())
            assert abs(fast[r] - (sv > AUTHORS_RTOL * sv[0]).sum()) <= near
    assert rank.n_reduced > 0


def graded_case(seed, n=50, d=20, decades=30.0):
    g = np.random.default_rng(seed)
    x = g.standard_normal((n, d))
    s = 10.0 ** -g.uniform(0, decades, d)
    s[g.integers(d)] = 1.0
    return x, s


@pytest.mark.parametrize("seed", range(6))
def test_thresholds_within_a_thousandth_of_a_singular_value(seed):
    """Adversarial: for every singular value of X D with ratio in [1e-16, 1e-2], thresholds
    0.1% above and below it; the count must move by exactly one there."""
    x, s = graded_case(seed)
    sv = jacobi_singular_values(x * s)
    ratios = sv / sv[0]
    xt = torch.as_tensor(x)
    u = torch.as_tensor(s[None])  # thresholds high and low: both eliminations are used
    v = torch.zeros_like(u)
    checked = 0
    for k in np.nonzero((ratios >= 1e-16) & (ratios <= 1e-2))[0]:
        for f, want_above in [(1 - NEAR, True), (1 + NEAR, False)]:
            rtol = ratios[k] * f
            rank = DiagJacobianRank(xt, rtol)
            got = rank(u, v).numpy()
            np.testing.assert_array_equal(got, jacobi_rank(u, v, xt, rtol))
            assert got[0] == k + 1 if want_above else got[0] == k
            if rtol >= 1e-10:  # where phi's float64 SVD resolves the threshold, it agrees too
                np.testing.assert_array_equal(got, diag_jacobian_rank_svd(u, v, xt, rtol).numpy())
            checked += 1
    assert checked >= 4


def test_both_eliminations_are_exercised():
    x, s = graded_case(3, n=60, d=40, decades=40.0)
    xt = torch.as_tensor(x)
    sparse = np.where(np.arange(40) < 12, s, s * 1e-3)  # few large coordinates
    g = np.random.default_rng(4)  # many large coordinates, a handful around the threshold
    dense = np.concatenate([10.0 ** -g.uniform(0, 3, 30), 10.0 ** -g.uniform(13, 18, 10)])
    u = torch.as_tensor(np.stack([sparse, dense]))
    v = torch.as_tensor(np.stack([sparse, -dense]) * 0.5)
    rank = DiagJacobianRank(xt, AUTHORS_RTOL)
    np.testing.assert_array_equal(rank(u, v).numpy(), jacobi_rank(u, v, xt, AUTHORS_RTOL))
    assert rank.n_reduced == 2 and rank.n_inverse == 1


def test_jacobi_reference_against_mpmath():
    """The reference itself: dgejsv matches 80-digit singular values of a graded X D."""
    mpmath = pytest.importorskip("mpmath")
    x, s = graded_case(7, n=12, d=6, decades=40.0)
    a = x * s
    mpmath.mp.dps = 80
    exact = np.array([float(t) for t in mpmath.svd_r(mpmath.matrix(a.tolist()), compute_uv=False)])
    np.testing.assert_allclose(jacobi_singular_values(a), np.sort(exact)[::-1], rtol=1e-13)
    u = torch.as_tensor(s[None])
    rank = DiagJacobianRank(torch.as_tensor(x), AUTHORS_RTOL)
    assert rank(u, torch.zeros_like(u)).item() == (exact > AUTHORS_RTOL * exact.max()).sum()


def test_threshold_on_a_singular_value_falls_back_to_the_svd():
    x, s = graded_case(1)
    sv = jacobi_singular_values(x * s)
    k = int(np.nonzero(sv / sv[0] < 1e-6)[0][0])
    rank = DiagJacobianRank(torch.as_tensor(x), sv[k] / sv[0] * (1 + 1e-12))
    u = torch.as_tensor(s[None])
    rank(u, torch.zeros_like(u))
    assert rank.n_svd == 1  # not certified: the dense SVD decides


def test_zero_and_nonfinite_runs():
    x = torch.randn(30, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rank = DiagJacobianRank(x, 1e-4)
    u = torch.zeros(3, 10, dtype=torch.float64)
    v = torch.zeros(3, 10, dtype=torch.float64)
    u[1, :4] = 1.0
    v[1, :4] = 1.0
    u[2, 0] = float("nan")
    out = rank(u, v)
    assert out[0] == 0 and out[1] == 4 and torch.isnan(out[2])


def test_exact_zero_coordinates_in_both_eliminations():
    x = torch.randn(40, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    g = np.random.default_rng(6)
    s = 10.0 ** -g.uniform(0, 25, (2, 16))
    s[:, 0] = 1.0
    s[0, 10:] = 0.0  # zeros with a mostly sparse run
    s[1, 3] = 0.0  # one zero in a dense run
    s[1] = np.where(s[1] > 1e-20, np.maximum(s[1], 1e-3), s[1])
    u = torch.as_tensor(s)
    rank = DiagJacobianRank(x, AUTHORS_RTOL)
    np.testing.assert_array_equal(rank(u, 0 * u).numpy(), jacobi_rank(u, 0 * u, x, AUTHORS_RTOL))


def test_few_inputs_fall_back_to_exact_svd():
    # N < d: X cannot have full column rank; every run takes the exact path
    x = torch.randn(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rank = DiagJacobianRank(x, 1e-4)
    u = torch.rand(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    v = torch.rand(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(rank(u, v).numpy(), diag_jacobian_rank_svd(u, v, x, 1e-4).numpy())


def test_float32_runs_keep_their_dtype():
    x = torch.randn(30, 10, dtype=torch.float32, generator=torch.Generator().manual_seed(8))
    u = torch.rand(2, 10, generator=torch.Generator().manual_seed(9))
    out = DiagJacobianRank(x, 1e-4)(u, u)
    assert out.dtype == torch.float32 and out.tolist() == [10.0, 10.0]
