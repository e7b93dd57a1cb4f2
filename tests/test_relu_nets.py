"""ReLU MLPs on the batched engine: closed forms against autograd, batched against single runs,
metrics against direct definitions, the new data kinds."""

import numpy as np
import pytest
import torch

from sgdlab.core.errors import DataError
from sgdlab.data.toy_configs import (
    Digits,
    Regression1D,
    TeacherStudent2D,
    ThreeLayerTeacher,
)
from sgdlab.engine.train import train
from sgdlab.metrics.config import MetricsConfig, ThresholdsConfig
from sgdlab.metrics.jacobian import matrix_rank, per_example_jacobian_batched
from sgdlab.metrics.sparsity import feature_sparsity
from sgdlab.models.base import BatchedModel
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim.config import GD, SGD
from sgdlab.optim.schedules import Constant, Piecewise
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

pytestmark = pytest.mark.study("relu_nets")

TS = TeacherStudent2D(n_train=15, n_test=200, seed=0)
THREE = MLPConfig(hidden=(6, 5), biases=(True, True, True), init_scales=(0.8, 0.8, 0.8))


@pytest.mark.parametrize("cfg,data", [(MLPConfig(init_scales=(0.5, 0.3)), TS),
                                      (THREE, ThreeLayerTeacher(n_test=100)),
                                      (MLPConfig(hidden=(7,), activation="tanh", biases=(True, True),
                                                 init_scales=(1.0, 1.0), bias_init="gaussian"), TS)])
def test_closed_form_gradient_and_jacobian_match_torch_func(cfg, data):
    ds = data.build()
    m = cfg.build(ds)
    p = m.init_params([3, 4, 5])
    gen = torch.Generator().manual_seed(0)
    for x, y in [(ds.x_train, ds.y_train),
                 (ds.x_train[torch.randint(0, ds.n, (3, 4), generator=gen)], torch.randn(3, 4, generator=gen, dtype=torch.float64))]:
        l1, g1 = m.loss_and_grad(p, x, y)
        l2, g2 = BatchedModel.loss_and_grad(m, p, x, y)
        torch.testing.assert_close(l1, l2, rtol=1e-12, atol=1e-14)
        for k in g1:
            torch.testing.assert_close(g1[k], g2[k], rtol=1e-10, atol=1e-13)
    if m.activation == "relu":
        one = lambda q, xb: m.forward({k: v.unsqueeze(0) for k, v in q.items()}, xb)[0]
        torch.testing.assert_close(m.jacobian(p, ds.x_test[:50]),
                                   per_example_jacobian_batched(one, p, ds.x_test[:50]), rtol=1e-12, atol=1e-13)


DEFAULT_MLP = MLPConfig()


def _cfg(arms, steps=400, seeds=3, model=DEFAULT_MLP, data=TS, **kw):
    return ExperimentConfig(data=data, model=model, arms=tuple(arms), steps=steps, seeds=seeds,
                            eval=EvalConfig("linear", 5), **kw)


def test_batched_runs_equal_single_runs_float64():
    arms = [ArmConfig("a", SGD(1), Constant(0.2)), ArmConfig("b", SGD(3), Piecewise(0.3, (0.5,), (2.0,))),
            ArmConfig("gd", GD(), Constant(0.3))]
    cfg = _cfg(arms)
    eng, state, _ = train(cfg)
    data = cfg.data.build()
    model = cfg.model.build(data)
    arm_of = {a.name: a for a in arms}
    for r in eng.runs:
        g = next(g for g in eng.groups if r.index in g.runs)
        p = model.init_params([eng.init_seeds(g)[g.runs.index(r.index)]])
        lr = arm_of[r.arm].schedule.build(cfg.steps)
        idx = None if g.sampler.full else g.sampler.indices(r.seed, 0, cfg.steps)
        for t in range(cfg.steps):  # one run, one example batch at a time
            xb, yb = (data.x_train, data.y_train) if idx is None else (data.x_train[idx[t]], data.y_train[idx[t]])
            _, grads = model.loss_and_grad(p, xb, yb)
            for k in p:
                p[k] = p[k] - lr(t) * grads[k]
        for k, v in eng.params_of(state, r.index).items():
            np.testing.assert_allclose(v.numpy(), p[k][0].numpy(), rtol=0, atol=1e-12)


def test_metrics_match_definitions_and_skip_missing_test_labels():
    ds = TS.build()
    m = THREE.build(ds)
    p = m.init_params([0, 1])
    out = m.metrics(p, ds, MetricsConfig(thresholds=ThresholdsConfig(sparsity_tau=0.95)))
    acts = m.activations(p, ds.x_train)
    for l, a in enumerate(acts, start=1):
        s = feature_sparsity(a, 0.95, normalize=True)
        torch.testing.assert_close(out[f"block{l}_sparsity"], s.coefficient)
        torch.testing.assert_close(out[f"block{l}_active"], (a > 0).double().mean((-2, -1)))
    one = lambda q, xb: m.forward({k: v.unsqueeze(0) for k, v in q.items()}, xb)[0]
    phi = per_example_jacobian_batched(one, p, ds.x_test[: m.n_params])
    torch.testing.assert_close(out["jacobian_rank"], matrix_rank(phi, 1e-4))
    torch.testing.assert_close(out["test_loss"], ((m.forward(p, ds.x_test) - ds.y_test) ** 2).mean(-1))
    d1 = Regression1D().build()
    m1 = MLPConfig(hidden=(10,), biases=(True, False), init="blanc", init_scales=(1.0, 1.0)).build(d1)
    out1 = m1.metrics(m1.init_params([0]), d1, MetricsConfig())
    assert "test_loss" not in out1 and "train_loss" in out1
    assert d1.extras["rank_inputs"].shape == (300, 1)


def test_one_d_regression_trains_through_the_engine_without_test_labels():
    cfg = _cfg([ArmConfig("sgd", SGD(1), Constant(2e-4))], steps=200, seeds=2, data=Regression1D(),
               model=MLPConfig(hidden=(20,), biases=(True, False), init="blanc", init_scales=(1.0, 1.0)))
    _, _state, m = train(cfg)
    assert "test_loss" not in m and np.isfinite(m["train_loss"]).all()
    assert m["train_loss"][-1].max() < m["train_loss"][0].min()


def test_data_kinds_and_missing_optional_packages():
    ts = TS.build()
    assert ts.x_train.shape == (15, 2) and "teacher_W1" in ts.extras
    np.testing.assert_allclose(ts.x_train.norm(dim=1).numpy(), 1.0)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match="sklearn"):
            Digits().build()
    else:
        d = Digits(n_train=100).build()
        m = MLPConfig(hidden=(16,), biases=(True, True), loss="cross_entropy", init_scales=(0.1, 0.1)).build(d)
        out = m.metrics(m.init_params([0]), d, MetricsConfig())
        assert 0 <= float(out["test_error"][0]) <= 1


def test_neuron_movement_and_learned_function_figures_are_drawn(tmp_path):
    import sgdlab

    ts = sgdlab.override(sgdlab.load_experiment("relu-teacher-student"),
                         ["steps=300", "seeds=1", "snapshots=4", "eval.points=5"])
    sgdlab.run(ts, tmp_path / "ts", progress=False, quiet=True)
    names = {p.name for p in (tmp_path / "ts" / "figures").iterdir()}
    assert {"relu-teacher-student-neurons.png"} <= names and any(n.endswith(".gif") for n in names), names
    one_d = sgdlab.override(sgdlab.load_experiment("relu-1d"), ["steps=300", "seeds=1", "snapshots=2", "eval.points=5"])
    sgdlab.run(one_d, tmp_path / "1d", progress=False, quiet=True)
    assert len(list((tmp_path / "1d" / "figures").iterdir())) >= 2
