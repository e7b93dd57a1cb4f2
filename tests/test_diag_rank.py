"""The diagonal-net Jacobian rank without an SVD per point equals the SVD of phi."""

import numpy as np
import pytest
import torch

from sgdlab.data.synthetic import SparseRegression
from sgdlab.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.metrics.diagonal import DiagJacobianRank, diag_jacobian_rank_svd
from sgdlab.optim.config import SGD
from sgdlab.schedules import Constant
from sgdlab.train import Engine


def trajectory_states(n_states=12):
    """(u, v) batches from real SGD runs on the paper's data, at many points of training."""
    cfg = ExperimentConfig(data=SparseRegression(n=40, d=60, r=6, n_test=200), seeds=4, steps=20000,
                           arms=(ArmConfig("a", SGD(1), Constant(0.5)), ArmConfig("b", SGD(1), Constant(0.9))),
                           eval=EvalConfig("log", n_states))
    eng = Engine(cfg)
    state = eng.initial_state()
    out = []
    eng.run(state, after_eval=lambda s: out.append({k: v.clone() for k, v in s.params[0].items()}))
    return eng.data.x_test[:120], out


@pytest.mark.parametrize("rtol", [1e-4, 1e-8, 1e-12])
def test_equals_svd_of_phi_along_training(rtol):
    x, states = trajectory_states()
    rank = DiagJacobianRank(x, rtol)
    for p in states:
        fast = rank(p["u"], p["v"])
        ref = diag_jacobian_rank_svd(p["u"], p["v"], x, rtol)
        np.testing.assert_array_equal(fast.numpy(), ref.numpy())


def test_adversarial_scales_inside_the_ambiguous_band():
    g = torch.Generator().manual_seed(0)
    n, d = 50, 20
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    rtol = 1e-6
    rank = DiagJacobianRank(x, rtol)
    # coordinates spread over decades around the threshold, exact zeros, one dominant
    scales = torch.logspace(-9, 0, d, dtype=torch.float64)
    u = torch.stack([scales, scales.flip(0), torch.where(torch.arange(d) % 3 == 0, scales, 0 * scales)])
    v = torch.stack([0 * scales, scales, scales * 0.5])
    np.testing.assert_array_equal(rank(u, v).numpy(), diag_jacobian_rank_svd(u, v, x, rtol).numpy())
    assert rank.n_svd > 0  # the band was hit and resolved exactly


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


def test_few_inputs_fall_back_to_exact_svd():
    # N < d: X cannot have full column rank; every run takes the exact path
    x = torch.randn(8, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    rank = DiagJacobianRank(x, 1e-4)
    u = torch.rand(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    v = torch.rand(2, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(rank(u, v).numpy(), diag_jacobian_rank_svd(u, v, x, 1e-4).numpy())
