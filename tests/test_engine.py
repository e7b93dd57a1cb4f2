"""The batched engine against a plain per-run loop, autograd, and its divergence handling."""

import numpy as np
import pytest
import torch

from sgdlab.core.config import override
from sgdlab.data.synthetic import SparseRegression
from sgdlab.engine.train import Engine, train
from sgdlab.models.base import BatchedModel
from sgdlab.optim.config import GD, SGD
from sgdlab.optim.samplers import WithoutReplacement, WithReplacement
from sgdlab.optim.schedules import Constant, Piecewise
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.diag_net.model import DiagonalNet, DiagonalNetConfig

pytestmark = pytest.mark.study("diag_net")

SMALL = SparseRegression(n=20, d=30, r=3, n_test=100, seed=0)


def reference_loop(x, y, init_scale, lr_fn, T, batches):
    """One run, plain numpy float64: the authors' update, batch mean of 0.5 r^2."""
    d = x.shape[1]
    u, v = np.full(d, init_scale), np.zeros(d)
    for t in range(T):
        xb, yb = (x, y) if batches is None else (x[batches[t]], y[batches[t]])
        r = xb @ (u * v) - yb
        g = xb.T @ r / len(yb)
        u, v = u - lr_fn(t) * g * v, v - lr_fn(t) * g * u
    return u, v


def small_cfg(arms, steps=1500, seeds=3, fused=True, **kw):
    return ExperimentConfig(data=SMALL, arms=tuple(arms), steps=steps, seeds=seeds, fused=fused,
                            eval=EvalConfig("linear", 7), **{"model": DiagonalNetConfig(), **kw})


ARMS = [
    ArmConfig("sgd b1", SGD(1), Constant(0.3)),
    ArmConfig("sgd b1 decay", SGD(1), Piecewise(0.4, (0.3,), (3.0,))),
    ArmConfig("sgd b4 rr", SGD(4, replacement=False), Constant(0.5)),
    ArmConfig("sgd b5", SGD(5), Constant(0.5)),
    ArmConfig("gd", GD(), Constant(0.5)),
]


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "torch"])
def test_batched_engine_equals_per_run_loop(fused):
    cfg = small_cfg(ARMS, fused=fused)
    eng, state, _ = train(cfg)
    data = cfg.data.build()
    x, y = data.x_train.numpy(), data.y_train.numpy()
    arm_of = {a.name: a for a in cfg.arms}
    assert eng.n_runs == 4 * 3 + 1  # GD with a deterministic init runs once for all seeds
    for r in eng.runs:
        arm = arm_of[r.arm]
        g = next(g for g in eng.groups if r.index in g.runs)
        batches = None if g.sampler.full else g.sampler.indices(r.seed, 0, cfg.steps)
        u, v = reference_loop(x, y, 0.1, arm.schedule.build(cfg.steps), cfg.steps, batches)
        p = eng.params_of(state, r.index)
        np.testing.assert_allclose(p["u"].numpy(), u, rtol=0, atol=1e-10)
        np.testing.assert_allclose(p["v"].numpy(), v, rtol=0, atol=1e-10)


def test_compiled_and_torch_paths_agree_on_metrics():
    _, _, m1 = train(small_cfg(ARMS, fused=True))
    _, _, m2 = train(small_cfg(ARMS, fused=False))
    for k in m1:
        np.testing.assert_allclose(m1[k], m2[k], rtol=1e-9, atol=1e-12, equal_nan=True)


def test_closed_form_gradient_matches_autograd():
    torch.manual_seed(0)  # test-local data only; library code never seeds globally
    model = DiagonalNet(7, 0.1)
    params = {"u": torch.randn(3, 7, dtype=torch.float64), "v": torch.randn(3, 7, dtype=torch.float64)}
    for x, y in [(torch.randn(5, 7, dtype=torch.float64), torch.randn(5, dtype=torch.float64)),
                 (torch.randn(3, 4, 7, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64))]:
        loss, g = model.loss_and_grad(params, x, y)
        loss2, g2 = BatchedModel.loss_and_grad(model, params, x, y)  # torch.func generic path
        torch.testing.assert_close(loss, loss2, rtol=1e-12, atol=1e-14)
        for k in g:
            torch.testing.assert_close(g[k], g2[k], rtol=1e-12, atol=1e-14)
        # and against plain autograd on the summed loss
        p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
        model.loss(p, x, y).sum().backward()
        for k in g:
            torch.testing.assert_close(g[k], p[k].grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("fused", [True, False], ids=["compiled", "torch"])
def test_divergence_is_recorded_and_does_not_disturb_other_runs(fused):
    calm = ArmConfig("calm", SGD(1), Constant(0.3))
    wild = ArmConfig("wild", SGD(1), Constant(5.0))
    eng, state, m = train(small_cfg([calm, wild], fused=fused))
    runs_wild = [r.index for r in eng.runs if r.arm == "wild"]
    runs_calm = [r.index for r in eng.runs if r.arm == "calm"]
    assert (state.diverged[runs_wild] >= 0).all() and (state.diverged[runs_calm] == -1).all()
    # frozen before the exploding step: parameters stay finite
    for i in runs_wild:
        assert all(torch.isfinite(t).all() for t in eng.params_of(state, i).values())
    # metrics after divergence are NaN; before, finite
    steps = eng.eval_steps
    for i in runs_wild:
        k = state.diverged[i]
        assert np.isnan(m["train_loss"][steps >= k, i]).all()
        assert np.isfinite(m["train_loss"][steps < k, i]).all()
    # the calm runs are what they are without a diverging neighbour (up to the rounding of
    # batched metric reductions)
    eng2, state2, m2 = train(small_cfg([calm], fused=fused))
    np.testing.assert_allclose(m["train_loss"][:, runs_calm], m2["train_loss"], rtol=1e-12)
    for j, i in enumerate(runs_calm):
        for k, v in eng.params_of(state, i).items():
            np.testing.assert_allclose(v.numpy(), eng2.params_of(state2, j)[k].numpy(), rtol=0, atol=1e-13)


def test_divergence_step_is_the_same_on_both_paths():
    wild = ArmConfig("wild", SGD(1), Constant(2.0))
    _, s1, _ = train(small_cfg([wild], fused=True))
    _, s2, _ = train(small_cfg([wild], fused=False))
    assert (s1.diverged >= 0).all()
    np.testing.assert_array_equal(s1.diverged, s2.diverged)


def test_chunking_does_not_change_results(monkeypatch):
    import sgdlab.engine.train as tr

    cfg = small_cfg(ARMS[:2], steps=3000)
    _, _s1, m1 = train(cfg)
    monkeypatch.setattr(tr, "CHUNK", 77)
    _, _s2, m2 = train(cfg)
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])


def test_samplers():
    n, b = 10, 3
    rr = WithoutReplacement(n, b)
    idx = rr.indices(7, 0, 9)  # 3 epochs of 3 batches
    for e in range(3):
        epoch = idx[3 * e: 3 * e + 3].ravel()
        assert len(set(epoch.tolist())) == 9  # no repeats within an epoch
    # any window is the same slice of the full sequence (counter-based)
    np.testing.assert_array_equal(rr.indices(7, 4, 8), idx[4:8])
    wr = WithReplacement(n, b)
    a = wr.indices(3, 0, 3000)
    assert all(len(set(row.tolist())) == b for row in a)  # distinct within a batch
    np.testing.assert_array_equal(wr.indices(3, 1000, 2100), a[1000:2100])
    counts = np.bincount(a.ravel(), minlength=n) / a.size
    assert np.abs(counts - 1 / n).max() < 0.02
    assert not np.array_equal(wr.indices(4, 0, 50), a[:50])  # seeds differ


def test_eval_grids():
    s = EvalConfig("authors", 250, 100).steps(100001)
    assert s[0] == 0 and s[-1] == 100001 and set(range(100)) <= set(s.tolist())
    assert len(s) == 100 + 250 - 1 + 1  # 0..99, 250 points (0 shared), the final step
    lg = EvalConfig("log", 20).steps(10000)
    assert lg[0] == 0 and lg[-1] == 10000 and np.all(np.diff(lg) > 0)


def test_float32_and_torch_path_run():
    cfg = small_cfg(ARMS[:1], steps=200, seeds=2, dtype="float32")
    _, state, m = train(cfg)
    assert state.params[0]["u"].dtype == torch.float32
    assert np.isfinite(m["train_loss"]).all()


def test_engine_groups_compatible_runs():
    eng = Engine(small_cfg(ARMS))
    sizes = sorted(len(g.runs) for g in eng.groups)
    # b1 arms share a group (6 runs); b4-rr, b5 and GD are separate groups
    assert sizes == [1, 3, 3, 6]


def test_deterministic_arm_runs_once_for_all_seeds():
    cfg = override(small_cfg(ARMS), ["seeds=5"])
    eng = Engine(cfg)
    gd = [r for r in eng.runs if r.arm == "gd"]
    assert len(gd) == 1 and gd[0].deterministic
