"""Unit tests of the related-findings models, data, weight decay and gradient flow (float64)."""

import numpy as np
import pytest
import torch

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.base import DataConfig
from sgdlab.engine.train import train
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig
from sgdlab.optim.config import GD
from sgdlab.optim.flow import gradient_flow
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.related.data import ScalarTarget, SupportRegression
from sgdlab.studies.related.linear import LinearConfig
from sgdlab.studies.related.metrics import (
    depth2_flow_limit,
    steps_to_converge,
    value_at_time,
)
from sgdlab.studies.related.two_layer import TwoLayerConfig, TwoLayerNet

pytestmark = pytest.mark.study("related")


def _rand_params(R, k, d, gen):
    return {"W": torch.randn(R, k, d, dtype=torch.float64, generator=gen),
            "v": torch.randn(R, k, dtype=torch.float64, generator=gen)}


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_two_layer_closed_form_gradient_matches_autograd(activation):
    gen = torch.Generator().manual_seed(0)  # test-local generator; library code never seeds globally
    model = TwoLayerNet(5, 4, activation, 1.0, 1.0)
    params = _rand_params(3, 4, 5, gen)
    for x, y in [(torch.randn(6, 5, dtype=torch.float64, generator=gen), torch.randn(6, dtype=torch.float64, generator=gen)),
                 (torch.randn(3, 2, 5, dtype=torch.float64, generator=gen),
                  torch.randn(3, 2, dtype=torch.float64, generator=gen))]:
        loss, g = model.loss_and_grad(params, x, y)
        loss2, g2 = BatchedModel.loss_and_grad(model, params, x, y)  # torch.func path
        torch.testing.assert_close(loss, loss2, rtol=1e-12, atol=1e-14)
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        model.loss(p, x, y).sum().backward()
        for k in g:
            torch.testing.assert_close(g[k], g2[k], rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(g[k], p[k].grad, rtol=1e-12, atol=1e-14)


def test_linear_model_gradient_and_optimum():
    data = from_dict(DataConfig, {"kind": "sparse_regression", "n": 12, "d": 4, "r": 4, "noise": 0.3,
                                  "generator": "pcg64"}).build()
    model = LinearConfig().build(data)
    gen = torch.Generator().manual_seed(1)
    params = {"theta": torch.randn(2, 4, dtype=torch.float64, generator=gen)}
    _loss, g = model.loss_and_grad(params, data.x_train, data.y_train)
    p = {"theta": params["theta"].clone().requires_grad_(True)}
    model.loss(p, data.x_train, data.y_train).sum().backward()
    torch.testing.assert_close(g["theta"], p["theta"].grad, rtol=1e-12, atol=1e-14)
    # the stored minimizer has zero full-batch gradient
    _, g0 = model.loss_and_grad({"theta": model.theta_star[None]}, data.x_train, data.y_train)
    assert g0["theta"].abs().max() < 1e-12


def test_depth2_sharpness_is_exact():
    """Hessian of 1/2 (a^T b - phi)^2 in (a, b): [[b b^T, eps I + b a^T], [eps I + a b^T, a a^T]];
    at a global minimum its top eigenvalue is |a|^2 + |b|^2 (the Hessian is g g^T, g = (b, a))."""
    data = ScalarTarget(phi=1.5).build()
    d = 3
    model = TwoLayerConfig(width=d).build(data)
    gen = torch.Generator().manual_seed(2)
    params = _rand_params(4, d, 1, gen)
    a, b = params["W"][:, :, 0], params["v"]
    eps = (a * b).sum(1) - 1.5
    eye = torch.eye(d, dtype=torch.float64)
    H = torch.stack([torch.cat([torch.cat([torch.outer(b[r], b[r]), eps[r] * eye + torch.outer(b[r], a[r])], 1),
                                torch.cat([eps[r] * eye + torch.outer(a[r], b[r]), torch.outer(a[r], a[r])], 1)], 0)
                     for r in range(4)])
    torch.testing.assert_close(model.sharpness(params, data.x_train, data.y_train), torch.linalg.eigvalsh(H)[:, -1],
                               rtol=1e-12, atol=1e-12)
    # a global minimum: rescale b so that a^T b = phi
    b_min = b * (1.5 / (a * b).sum(1, keepdim=True))
    p_min = {"W": params["W"], "v": b_min}
    lam = (a * a).sum(1) + (b_min * b_min).sum(1)
    torch.testing.assert_close(model.sharpness(p_min, data.x_train, data.y_train), lam, rtol=1e-12, atol=1e-12)


def test_two_layer_init_norms_and_seed_determinism():
    data = SupportRegression(n=10, d=6, n_test=5).build()
    model = TwoLayerConfig(width=7, w_scale=0.3, v_scale=2.0).build(data)
    p = model.init_params([11, 12])
    np.testing.assert_allclose(p["W"].norm(dim=1).numpy(), 0.3, rtol=1e-14)  # every column at norm w_scale
    np.testing.assert_allclose(p["v"].norm(dim=1).numpy(), 2.0, rtol=1e-14)
    q = model.init_params([11])
    assert torch.equal(p["W"][0], q["W"][0]) and not torch.equal(p["W"][0], p["W"][1])
    m = model.metrics(p, data, MetricsConfig())
    np.testing.assert_allclose(m["irrelevant_norm"].numpy(), 1.0, rtol=1e-14)  # relative to init
    assert "sharpness" in m  # 7 * 7 = 49 parameters: dense Hessian


def test_support_target_and_config_errors():
    data = SupportRegression(n=50, d=5, support=3, product=2.0, seed=3).build()
    x = data.x_train
    torch.testing.assert_close(data.y_train, x[:, :3].sum(1) + 2.0 * x[:, 0] * x[:, 1])
    assert data.extras["support"].tolist() == [True, True, True, False, False]
    with pytest.raises(ConfigError, match="linearly realizable"):
        SupportRegression(product=0.0)
    with pytest.raises(ConfigError, match="support must be"):
        SupportRegression(d=5, support=6)
    with pytest.raises(ConfigError, match="weight_decay"):
        GD(weight_decay=-1.0)
    with pytest.raises(ConfigError, match="phi"):
        ScalarTarget(phi=0.0)
    assert type(from_dict(ModelConfig, {"kind": "two_layer"})) is TwoLayerConfig  # kinds are registered


def test_weight_decay_is_gd_on_the_l2_regularized_loss():
    """GD with weight_decay wd = GD on L + wd/2 |theta|^2: theta <- theta - eta (grad L + wd theta)."""
    data_cfg = SupportRegression(n=30, d=4, n_test=5)
    model_cfg = TwoLayerConfig(width=3)
    eta, wd, T = 0.05, 0.1, 25
    cfg = ExperimentConfig(data=data_cfg, model=model_cfg, steps=T, seeds=2, eval=EvalConfig("linear", 2),
                           arms=(ArmConfig("gd+l2", GD(weight_decay=wd), Constant(eta)),))
    eng, state, _ = train(cfg)
    data = data_cfg.build()
    model = model_cfg.build(data)
    p = model.init_params(eng.init_seeds(eng.groups[0]))
    for _ in range(T):
        _, g = model.loss_and_grad(p, data.x_train, data.y_train)
        p = {k: v - eta * (g[k] + wd * v) for k, v in p.items()}
    for k in p:
        torch.testing.assert_close(state.params[0][k], p[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("d", [1, 3])
def test_gradient_flow_matches_the_closed_form_limit(d):
    """solve_ivp (DOP853, rtol 1e-10, atol 1e-12) against the exact limit of the flow on
    1/2 (a^T b - phi)^2 (u = a + b, w = a - b scale by e^{-s}, e^{s}): norm and Q to 1e-7."""
    data = ScalarTarget(phi=1.0).build()
    model = TwoLayerConfig(width=d, w_scale=2.5, v_scale=0.25).build(data)
    p0 = model.init_params([5, 6])
    flow = gradient_flow(model, p0, data, t_end=40.0)  # residual contracts at rate >= 2 phi: e^{-80}
    lim = flow.final()
    for r in range(2):
        exact = depth2_flow_limit(p0["W"][r, :, 0].numpy(), p0["v"][r].numpy(), 1.0)
        lam = float((lim["W"][r] ** 2).sum() + (lim["v"][r] ** 2).sum())
        q = float((lim["W"][r] ** 2).sum() - (lim["v"][r] ** 2).sum())
        assert abs(lam - exact["norm_sq"]) < 1e-7 and abs(q - exact["imbalance"]) < 1e-7
        assert flow.loss[r, -1] < 1e-18
    if d == 1:  # same |a0|, |b0| for every seed: lambda_GF = sqrt(Q0^2 + 4 phi^2)
        assert depth2_flow_limit([2.5], [0.25], 1.0)["norm_sq"] == pytest.approx(np.hypot(2.5 ** 2 - 0.25 ** 2, 2.0))


def test_reductions():
    steps = np.array([0, 1, 2, 4, 8])
    loss = np.array([[1, 1], [1e-13, 1], [1, 1e-13], [1e-13, 1e-14], [1e-14, np.nan]], dtype=float)
    np.testing.assert_array_equal(steps_to_converge(steps, loss), [4, np.nan])
    vals = np.array([[0.0], [1.0], [2.0], [4.0], [8.0]])
    assert value_at_time(steps, vals, np.array([0.5]), 1.5)[0] == pytest.approx(3.0)


def test_linear_closed_form_hessian_matches_torch_func():
    gen = torch.Generator().manual_seed(4)
    lin = TwoLayerNet(3, 2, "linear", 1.0, 1.0)
    params = _rand_params(3, 2, 3, gen)
    x, y = torch.randn(5, 3, dtype=torch.float64, generator=gen), torch.randn(5, dtype=torch.float64, generator=gen)
    lin.activation = "linear_generic"  # any name but "linear" takes the torch.func path (same function: no ReLU)
    generic = lin.sharpness(params, x, y)
    lin.activation = "linear"
    torch.testing.assert_close(lin.sharpness(params, x, y), generic, rtol=1e-12, atol=1e-12)
