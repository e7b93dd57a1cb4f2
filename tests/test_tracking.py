"""Curvature tracked by the engine (sgdlab.metrics.tracking): exactness against the dense Hessian
of the run's own training loss (float64), warm starts, the NaN pattern, the configuration."""

import numpy as np
import pytest
import torch

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.engine.train import Engine, train
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.tracking import RunLoss, run_operator
from sgdlab.spec.experiment import ExperimentConfig

pytestmark = pytest.mark.study("eos")


def _cfg(steps=30, arms=None, metrics=None, points=4, loss="half_mse", activation="tanh"):
    return from_dict(ExperimentConfig, {
        "name": "t", "steps": steps, "seeds": 2,
        "data": {"kind": "chebyshev", "k": 3, "n": 12},
        "model": {"kind": "relu_mlp", "hidden": [6], "biases": [True, False], "activation": activation,
                  "loss": loss, "init": "gaussian", "init_scales": [1.0, 0.5], "bias_init": "torch_uniform"},
        "arms": arms or [{"name": "GD", "optimizer": {"kind": "gd"}, "schedule": {"kind": "constant", "lr": 0.05}}],
        "eval": {"grid": "linear", "points": points},
        "metrics": _merge({"names": ["train_loss"], "curvature": {"every": 1, "tol": 1e-8}}, metrics or {}),
    })


def _merge(base: dict, more: dict) -> dict:
    """``base`` with the tables of ``more`` merged key by key (metrics.curvature, metrics.batch)."""
    return {**base, **{k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in more.items()}}


def _dense_eigs(model, params, x, y, wd=0.0):
    """Eigenvalues (descending) of the Hessian of model.loss (one run) by torch.func.hessian."""
    names, shapes = list(params), [v.shape for v in params.values()]
    sizes = [v.numel() for v in params.values()]

    def f(theta):
        p = {n: t.view(1, *s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return model.loss(p, x, y)[0] + 0.5 * wd * (theta * theta).sum()

    theta = torch.cat([v.reshape(-1) for v in params.values()]).double()
    return torch.linalg.eigvalsh(torch.func.hessian(f)(theta)).flip(0)


def test_run_loss_gradient_is_the_training_gradient():
    eng = Engine(_cfg(loss="mse", activation="relu"))
    p = eng.initial_state().params[0]
    x, y = eng.data.x_train, eng.data.y_train
    loss, grads = eng.model.loss_and_grad(p, x, y)  # the closed form the engine steps with
    for r in range(2):
        one = {k: v[r] for k, v in p.items()}
        op = run_operator(eng.model, one, x, y)
        g = torch.cat([grads[k][r].reshape(-1) for k in p])
        assert torch.allclose(op.gradient(), g, rtol=1e-12, atol=1e-14)
        assert abs(op.loss() - float(loss[r])) < 1e-14


@pytest.mark.parametrize("sgd", [False, True])
def test_tracked_eigenvalues_equal_dense_hessian_of_the_run_loss(sgd):
    wd = 0.01 if sgd else 0.0
    opt = {"kind": "sgd", "batch_size": 4, "weight_decay": wd} if sgd else {"kind": "gd"}
    cfg = _cfg(arms=[{"name": "a", "optimizer": opt, "schedule": {"kind": "constant", "lr": 0.05}}],
               metrics={"curvature": {"k": 3}})
    eng, state, m = train(cfg)
    for r in range(eng.n_runs):
        one = {k: v.detach() for k, v in eng.params_of(state, r).items()}
        ev = _dense_eigs(eng.model, one, eng.data.x_train, eng.data.y_train, wd)
        got = [m["sharpness"][-1, r], m["hessian_eig2"][-1, r], m["hessian_eig3"][-1, r]]
        np.testing.assert_allclose(got, ev[:3].numpy(), rtol=1e-7)
        assert m["hessian_cond"][-1, r] == pytest.approx(float(ev[0] / ev[2]), rel=1e-7)


def test_measured_every_nth_eval_step_and_the_last_nan_elsewhere():
    _eng, _, m = train(_cfg(steps=20, points=6, metrics={"curvature": {"every": 2}}))
    measured = np.isfinite(m["sharpness"][:, 0])
    assert measured.tolist() == [True, False, True, False, True, True]  # eval steps 0,4,8,12,16,20
    assert np.isfinite(m["train_loss"]).all()


def test_warm_start_reduces_hvps():
    hvps = {}
    for warm in (True, False):
        eng = Engine(_cfg(steps=60, points=13, metrics={"curvature": {"tol": 1e-6}}))
        if not warm:
            eng.curvature.vectors = _Forget()
        rows = []
        eng.run(eng.initial_state(), on_eval=lambda t, m, rows=rows: rows.append(m["curvature_hvps"]))
        hvps[warm] = np.sum(rows[1:])  # the first measurement has nothing to start from
    assert hvps[True] < 0.8 * hvps[False], hvps


class _Forget(dict):
    """A warm-start store that never keeps anything (cold starts)."""

    def __setitem__(self, k, v):
        pass


def test_full_batch_batch_sharpness_is_exact_rayleigh_quotient_of_the_gradient():
    eng, state, m = train(_cfg(metrics={"batch": {"quantities": ["batch_sharpness", "gni"]}}))
    one = {k: v.detach() for k, v in eng.params_of(state, 0).items()}
    op = run_operator(eng.model, one, eng.data.x_train, eng.data.y_train)
    g, hg = op.gradient_and_hvp()
    assert m["batch_sharpness"][-1, 0] == pytest.approx(float(g @ hg / (g @ g)), rel=1e-10)
    assert m["gni"][-1, 0] == pytest.approx(float(g @ hg / (g @ g)), rel=1e-10)  # one batch = all data


def test_run_loss_leaves_batched_params_untouched():
    eng = Engine(_cfg())
    p = eng.initial_state().params[0]
    before = {k: v.clone() for k, v in p.items()}
    mod = RunLoss(eng.model, {k: v[0] for k, v in p.items()}, eng.data.x_train, eng.data.y_train)
    mod(torch.arange(eng.data.n)).backward()
    assert all(torch.equal(before[k], p[k]) for k in p)


@pytest.mark.parametrize("kw,msg", [({"curvature": {"k": 1}}, "curvature.k"),
                                    ({"batch": {"quantities": ["bs"]}}, "batch.quantities"),
                                    ({"curvature": {"every": 0}, "batch": {"quantities": ["gni"]}},
                                     "curvature.every")])
def test_config_errors(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        from_dict(MetricsConfig, kw)


def test_subset_larger_than_data_is_a_config_error():
    with pytest.raises(ConfigError, match="curvature.subset"):
        Engine(_cfg(metrics={"curvature": {"subset": 1000}}))


def test_batch_curvature_draws_are_the_monitors_and_do_not_depend_on_the_warm_start():
    """One random stream: the engine's Monte Carlo batch estimate of a run at a step equals, bit for
    bit, sgdlab.Monitor's on the same loss (RunLoss), seed and step, and is the same whether the
    Lanczos before it was warm-started (an uninterrupted run) or cold (a resumed run)."""
    from sgdlab.metrics.probes import ProbeSettings
    from sgdlab.metrics.tracking import LOSS_FN
    from sgdlab.workflows.monitor import Monitor

    opt = {"kind": "sgd", "batch_size": 4}
    cfg = _cfg(arms=[{"name": "a", "optimizer": opt, "schedule": {"kind": "constant", "lr": 0.05}}],
               metrics={"batch": {"quantities": ["batch_sharpness"], "max_batches": 12}})
    eng, state, m = train(cfg)
    step, r = int(eng.eval_steps[-1]), 1
    one = {k: v.detach() for k, v in eng.params_of(state, r).items()}
    run = eng.curvature.runs[r]
    warm = eng.curvature._measure_run(run, one, step)["batch_sharpness"]  # the run's vectors are stored
    eng.curvature.vectors = {}
    cold = eng.curvature._measure_run(run, one, step)["batch_sharpness"]
    assert warm == cold == m["batch_sharpness"][-1, r]
    idx = torch.arange(eng.data.n)
    mon = Monitor(RunLoss(eng.model, one, eng.data.x_train, eng.data.y_train), LOSS_FN, (idx, idx),
                  metrics={"batch_sharpness": 1}, batch_size=4,
                  settings=ProbeSettings(seed=run.seed, dtype=torch.float64, max_batches=12))
    assert mon.step(step)["batch_sharpness"] == warm
