"""Noisy dynamics: the constant-noise SDE's covariance, label-noise unbiasedness, counter-based
noise (chunking never changes a run), configs."""

import dataclasses

import numpy as np
import pytest
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.data.synthetic import SparseRegression
from sgdlab.data.toy_configs import TeacherStudent2D
from sgdlab.engine.train import train
from sgdlab.metrics.jacobian import per_example_jacobian
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim.noise import LabelNoiseGD, LabelNoiseSGD, NoisyGD, NoisyGradient
from sgdlab.optim.schedules import Constant, Piecewise
from sgdlab.optim.sde import ConstantNoiseSDE, SDERule, delta_from_loss
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.diag_net.model import DiagonalNet, DiagonalNetConfig

pytestmark = pytest.mark.study("diag_net")

N_SAMPLES = 8000  # steps sampled at fixed parameters: covariance error ~ sqrt(2 / N) ~ 1.6%


def flat(grads):
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1)


def sample_directions(rule, model, params, x, y, n=N_SAMPLES):
    rule.bind([11], x.shape[0], params)
    return torch.stack([flat(rule.loss_and_grad(model, params, x, y, t)[1])[0] for t in range(n)])


@pytest.mark.parametrize("which", ["mlp", "diag"])
def test_sde_noise_covariance_is_eta_delta_phi_t_phi(which):
    """Euler-Maruyama increment over dt = eta: noise part -eta sqrt(delta) phi^T xi, so
    Cov(increment noise) / dt = eta delta phi^T phi (phi built explicitly only here)."""
    if which == "mlp":
        ds = TeacherStudent2D(n_train=6, n_test=10).build()
        model = MLPConfig(hidden=(3,), init_scales=(0.7, 0.5)).build(ds)
    else:
        ds = SparseRegression(n=5, d=4, r=2, n_test=10).build()
        model = DiagonalNet(4, 0.3)
    params = model.init_params([1])
    if which == "diag":
        params["v"] = torch.tensor([[0.2, -0.1, 0.3, 0.05]], dtype=torch.float64)
    x, y = ds.x_train, ds.y_train
    eta, delta = 0.3, 0.02
    d = sample_directions(SDERule(delta), model, params, x, y)
    _, clean = model.loss_and_grad(params, x, y)
    incr_noise = -eta * (d - flat(clean)[0])  # increment minus its drift
    emp = incr_noise.T @ incr_noise / len(d) / eta
    one = lambda q, xb: model.forward({k: v.unsqueeze(0) for k, v in q.items()}, xb)[0]
    phi = per_example_jacobian(one, {k: v[0] for k, v in params.items()}, x)
    want = eta * delta * phi.T @ phi
    assert torch.linalg.norm(emp - want) / torch.linalg.norm(want) < 0.06
    torch.testing.assert_close(d.mean(0), flat(clean)[0], rtol=0, atol=0.05 * float(want.diag().max().sqrt()))


def test_label_noise_is_unbiased_with_the_right_covariance():
    ds = TeacherStudent2D(n_train=5, n_test=10).build()
    model = MLPConfig(hidden=(3,), init_scales=(0.7, 0.5)).build(ds)
    params = model.init_params([2])
    sigma = 0.3
    d = sample_directions(NoisyGradient(label_sigma=sigma), model, params, ds.x_train, ds.y_train)
    _loss, clean = model.loss_and_grad(params, ds.x_train, ds.y_train)
    one = lambda q, xb: model.forward({k: v.unsqueeze(0) for k, v in q.items()}, xb)[0]
    phi = per_example_jacobian(one, {k: v[0] for k, v in params.items()}, ds.x_train)
    n = ds.n
    cov = (2 * sigma / n) ** 2 * phi.T @ phi  # mse: l' = 2 (f - y - sigma xi)
    se = cov.diag().sqrt() / np.sqrt(len(d))
    assert ((d.mean(0) - flat(clean)[0]).abs() < 5 * se + 1e-12).all()
    emp = torch.cov(d.T)
    assert torch.linalg.norm(emp - cov) / torch.linalg.norm(cov) < 0.06


def test_noisy_gd_adds_isotropic_noise():
    ds = TeacherStudent2D(n_train=5, n_test=10).build()
    model = MLPConfig(hidden=(3,), init_scales=(0.7, 0.5)).build(ds)
    params = model.init_params([2])
    d = sample_directions(NoisyGradient(param_sigma=0.1), model, params, ds.x_train, ds.y_train, n=5000)
    emp = torch.cov(d.T)
    torch.testing.assert_close(emp, 0.01 * torch.eye(d.shape[1], dtype=emp.dtype), rtol=0, atol=0.0015)


ARMS = [ArmConfig("sde", ConstantNoiseSDE(delta=1e-3, noise_steps=500), Piecewise(0.3, (0.5,), (2.0,))),
        ArmConfig("lngd", LabelNoiseGD(0.2), Constant(0.3)),
        ArmConfig("lnsgd", LabelNoiseSGD(0.2, batch_size=2), Constant(0.2)),
        ArmConfig("ngd", NoisyGD(0.01), Constant(0.3))]


@pytest.mark.parametrize("model", [MLPConfig(), None], ids=["mlp", "diag"])
def test_noise_is_counter_based_chunking_and_seeds(monkeypatch, model):
    import sgdlab.engine.train as tr

    kw = {"data": TeacherStudent2D(n_test=50)} if model else {"data": SparseRegression(n=20, d=30, r=3, n_test=50)}
    if model:
        kw["model"] = model
    cfg = ExperimentConfig(arms=tuple(ARMS), steps=600, seeds=2, eval=EvalConfig("linear", 4),
                           **{"data": SparseRegression(), "model": DiagonalNetConfig(), **kw})
    eng, s1, m1 = train(cfg)
    assert eng.n_runs == 8  # noisy full-batch runs are stochastic: one run per seed even from a fixed init
    monkeypatch.setattr(tr, "CHUNK", 97)
    _, _s2, m2 = train(cfg)
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    p = [eng.params_of(s1, r.index) for r in eng.runs]
    assert not torch.equal(p[0][next(iter(p[0]))], p[1][next(iter(p[1]))])  # seeds differ


def test_configs_and_delta():
    assert delta_from_loss(0.03, 15) == pytest.approx(4 * 0.03 / 15)
    assert delta_from_loss(0.03, 20, loss="half_mse", batch_size=2) == pytest.approx(2 * 0.03 / 40)
    for bad in (lambda: ConstantNoiseSDE(delta=-1.0), lambda: LabelNoiseGD(sigma=-0.1),
                lambda: NoisyGD(sigma=float("nan")), lambda: delta_from_loss(0.1, 10, loss="l1")):
        with pytest.raises(ConfigError):
            bad()


# ----------------------------------------------------------------------------- fused SDE kernel
def _one_sde_step(fused, params, ds, seeds, eta, delta, t0=0):
    """theta after one SDE step of every run (seed r's noise at step t0) through the stepper."""
    from sgdlab.optim.stepper import advance

    p = {k: v.clone() for k, v in params.items()}
    opt = ConstantNoiseSDE(delta=delta).build(ds.n, t0 + 1)
    R = len(seeds)
    advance(DiagonalNet(params["u"].shape[1], 0.3), p, ds, opt, {}, np.asarray(seeds), np.full((R, 1), eta), t0,
            np.full(R, -1, dtype=np.int64), np.full(R, np.inf), fused=fused)
    return flat(p)


def test_fused_sde_step_covariance_is_eta2_delta_phi_t_phi_and_equals_the_torch_step():
    """Per-step increment of the compiled kernel: drift -eta grad L plus noise with covariance
    eta^2 delta phi^T phi (phi built explicitly), and draw for draw the torch path's step."""
    ds = SparseRegression(n=5, d=4, r=2, n_test=10).build()
    R = N_SAMPLES
    u0 = torch.tensor([0.3, -0.2, 0.25, 0.1], dtype=torch.float64)
    v0 = torch.tensor([0.2, -0.1, 0.3, 0.05], dtype=torch.float64)
    params = {"u": u0.expand(R, 4).contiguous(), "v": v0.expand(R, 4).contiguous()}
    eta, delta = 0.3, 0.02
    seeds = list(range(R))
    fused = _one_sde_step(True, params, ds, seeds, eta, delta, t0=5)
    torch_path = _one_sde_step(False, params, ds, seeds, eta, delta, t0=5)
    torch.testing.assert_close(fused, torch_path, rtol=0, atol=1e-13)
    model = DiagonalNet(4, 0.3)
    one = {k: v[:1] for k, v in params.items()}
    _, clean = model.loss_and_grad(one, ds.x_train, ds.y_train)
    noise = fused - (flat(one) - eta * flat(clean))  # increment minus its drift
    emp = noise.T @ noise / R
    x = ds.x_train
    phi = torch.cat([x * v0, x * u0], dim=1)  # d f(x_i) / d(u, v)
    want = eta**2 * delta * phi.T @ phi
    assert torch.linalg.norm(emp - want) / torch.linalg.norm(want) < 0.06
    assert float(noise.mean(0).abs().max()) < 0.05 * float(want.diag().max().sqrt())


@pytest.mark.parametrize("chunk", [8192, 97])
def test_fused_sde_equals_torch_path_over_a_run(monkeypatch, chunk):
    """Whole runs (noise switched off mid-run, a diverging arm, chunks straddling noise blocks):
    compiled and torch paths agree to rounding, metrics and divergence steps included."""
    import sgdlab.engine.train as tr

    monkeypatch.setattr(tr, "CHUNK", chunk)
    arms = (ArmConfig("sde", ConstantNoiseSDE(delta=2e-3, noise_steps=1500), Piecewise(0.3, (0.5,), (2.0,))),
            ArmConfig("wild", ConstantNoiseSDE(delta=5.0), Constant(1.5)))
    cfg = ExperimentConfig(data=SparseRegression(n=20, d=30, r=3, n_test=50), model=DiagonalNetConfig(), arms=arms,
                           steps=2500, seeds=3,
                           eval=EvalConfig("linear", 6))
    _, s1, m1 = train(cfg)
    _, s2, m2 = train(dataclasses.replace(cfg, fused=False))
    np.testing.assert_array_equal(s1.diverged, s2.diverged)
    assert (s1.diverged[3:] >= 0).any() and (s1.diverged[:3] < 0).all()
    for k in m1:
        np.testing.assert_allclose(m1[k], m2[k], rtol=1e-9, atol=1e-300)
    for a, b in zip(s1.params, s2.params):
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-10, equal_nan=True)
