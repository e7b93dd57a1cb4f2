"""sgdlab.Monitor: it never changes the training (bit for bit), its metrics against brute force in
float64, the stability thresholds against torch.optim.SGD itself, schedules, the measurement set,
bounded memory and the run directory that `sgdlab plot` / `sgdlab summary` read."""

import gc
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import sgdlab
from sgdlab.core.errors import ConfigError
from sgdlab.frontends.cli import main
from sgdlab.metrics.curvature import dense_eigvalsh, dense_hessian
from sgdlab.metrics.jacobian import jacobian_rank
from sgdlab.metrics.measure import WarmStart, stability_thresholds, subset_indices
from sgdlab.metrics.probes import PROBES, ProbeSettings
from sgdlab.metrics.sparsity import feature_sparsity
from sgdlab.metrics.user_objects import measurement_set
from sgdlab.store.runs import RunDir
from sgdlab.workflows.monitor import LogSpaced, Monitor

DT = torch.float64
ALL = ["sharpness", "threshold", "batch_sharpness", "gni", "sparsity", "dead_units", "jacobian_rank"]


def bn_dropout_net():
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def data(n=96, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def state_of(model, opt):
    return ([p.detach().clone() for p in model.parameters()], [b.clone() for b in model.buffers()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()],
            {k: {n: t.clone() for n, t in v.items()} for k, v in opt.state_dict()["state"].items()},
            torch.get_rng_state(), [m.training for m in model.modules()])


def train_run(with_monitor: bool, steps=24):
    torch.manual_seed(0)
    model = bn_dropout_net()
    x, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)  # draws from the global RNG
    mon = None
    if with_monitor:
        mon = Monitor(model, F.cross_entropy, loader, opt, metrics={m: 3 for m in ALL}, bn_mode="train",
                      subset=64, settings=ProbeSettings(rse_tol=0.05, max_batches=20))
    step = 0
    while step < steps:
        for xb, yb in loader:
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            if mon is not None:  # between backward and step: .grad must survive
                mon.step(step)
                if step % 5 == 0:
                    model.eval()  # measuring an evaluated model keeps it evaluated
                    mon.step(step + 0)  # a repeated step is skipped
                    model.train()
            opt.step()
            step += 1
            if step == steps:
                break
    return state_of(model, opt), mon


def test_monitor_never_changes_training_bit_for_bit():
    (p0, b0, g0, s0, rng0, modes0), _ = train_run(False)
    (p1, b1, g1, s1, rng1, modes1), mon = train_run(True)
    assert len(mon.history) == 8 and all(math.isfinite(v) for v in mon.history[-1][1].values())
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))  # parameters
    assert all(torch.equal(a, b) for a, b in zip(b0, b1))  # BatchNorm running statistics and counters
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))  # .grad
    assert all(torch.equal(s0[k][n], s1[k][n]) for k in s0 for n in s0[k])  # momentum buffers
    assert torch.equal(rng0, rng1) and modes0 == modes1


def test_one_measurement_leaves_modes_grads_and_rng_exactly():
    torch.manual_seed(0)
    model = bn_dropout_net()
    model[3].eval()  # a mixed state must come back mixed
    x, y = data()
    F.cross_entropy(model(x), y).backward()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    before = state_of(model, opt)
    Monitor(model, F.cross_entropy, (x, y), opt, metrics=ALL, bn_mode="eval", batch_size=32,
            settings=ProbeSettings(max_batches=12)).step()
    after = state_of(model, opt)
    assert all(torch.equal(a, b) for a, b in zip(before[0] + before[1] + before[2], after[0] + after[1] + after[2]))
    assert torch.equal(before[4], after[4]) and before[5] == after[5]


def small_tanh_net():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 7), nn.Tanh(), nn.Linear(7, 2)).to(DT)


def mse(out, t):
    return ((out - t) ** 2).sum(1).mean()


def test_sharpness_and_full_batch_sharpness_equal_dense_hessian_float64():
    model = small_tanh_net()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g, dtype=DT), torch.randn(20, 2, generator=g, dtype=DT)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, mse, (x, y), opt, metrics=["sharpness", "batch_sharpness", "gni", "threshold"],
                  batch_size=20, settings=ProbeSettings(k=3, tol=1e-10))
    m = mon.step()
    ev = dense_eigvalsh(model, mse, (x, y)).flip(0)
    np.testing.assert_allclose([m["sharpness"], m["hessian_eig2"], m["hessian_eig3"]], ev[:3].numpy(), rtol=1e-9)
    h = dense_hessian(model, mse, (x, y))
    grads = torch.autograd.grad(mse(model(x), y), list(model.parameters()))
    gv = torch.cat([t.reshape(-1) for t in grads])
    assert m["batch_sharpness"] == pytest.approx(float(gv @ h @ gv / (gv @ gv)), rel=1e-9)  # one batch = all data
    assert m["gni"] == pytest.approx(m["batch_sharpness"], rel=1e-9)
    assert m["batch_draws"] == 1 and m["threshold"] == pytest.approx(20.0)
    assert m["train_loss"] == pytest.approx(float(mse(model(x), y)), rel=1e-12)


def test_loss_scaled_by_c_scales_eigenvalues_by_c():
    model = small_tanh_net()
    x, y = torch.randn(12, 3, dtype=DT), torch.randn(12, 2, dtype=DT)
    s = ProbeSettings(tol=1e-10)
    one = Monitor(model, mse, (x, y), metrics=["sharpness"], settings=s).step()["sharpness"]
    half = Monitor(model, lambda o, t: 0.5 * mse(o, t), (x, y), metrics=["sharpness"], settings=s).step()["sharpness"]
    assert half == pytest.approx(0.5 * one, rel=1e-9)


@pytest.mark.parametrize("mu,damp,nesterov,wd", [(0.0, 0.0, False, 0.0), (0.9, 0.0, False, 0.0),
                                                 (0.9, 0.0, True, 0.0), (0.5, 0.3, False, 0.0),
                                                 (0.5, 0.0, True, 0.01), (0.0, 0.0, False, 0.05)])
def test_thresholds_are_where_torch_sgd_becomes_unstable(mu, damp, nesterov, wd):
    """On L = lambda/2 x^2, torch.optim.SGD with these settings converges at 0.97 x the threshold
    and diverges at 1.03 x it (the threshold is in units of the loss's own curvature lambda)."""
    lr = 0.1
    edge = stability_thresholds(lr, mu, dampening=damp, nesterov=nesterov, weight_decay=wd).momentum_edge

    def final(lam):
        x = torch.tensor([1.0], dtype=DT, requires_grad=True)
        opt = torch.optim.SGD([x], lr=lr, momentum=mu, dampening=damp, nesterov=nesterov, weight_decay=wd)
        for _ in range(3000):
            opt.zero_grad()
            (0.5 * lam * x ** 2).sum().backward()
            opt.step()
        return abs(float(x))

    assert final(0.97 * edge) < 1e-3 and not final(1.03 * edge) < 1e3  # overflow to inf/nan counts
    if mu == 0:
        assert edge == pytest.approx(2 / lr - wd)


def test_threshold_metric_reads_the_optimizer_now():
    model = small_tanh_net()
    x, y = torch.randn(8, 3, dtype=DT), torch.randn(8, 2, dtype=DT)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, nesterov=True)
    mon = Monitor(model, mse, (x, y), opt, metrics=["threshold"], every=1)
    assert mon.step()["threshold_momentum"] == pytest.approx(3.8 / (0.2 * 2.8))
    opt.param_groups[0]["lr"] = 0.1  # a scheduler moved it
    m = mon.step()
    assert m["lr"] == 0.1 and m["threshold"] == pytest.approx(20.0)
    adam = Monitor(model, mse, (x, y), torch.optim.Adam(model.parameters(), lr=1e-3), metrics=["threshold"]).step()
    assert adam["lr"] == 1e-3 and adam["threshold"] == pytest.approx(2.0 * 1.9 / (0.1 * 1e-3))  # (2 + 2 b1)/((1 - b1) lr)


def test_sparsity_dead_units_and_rank_equal_direct_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 1)).to(DT)
    with torch.no_grad():
        model[2].bias[:5] = -50.0  # five dead units in the second layer
    x, y = torch.randn(40, 4, dtype=DT), torch.randn(40, 1, dtype=DT)
    m = Monitor(model, F.mse_loss, (x, y), metrics=["sparsity", "dead_units", "jacobian_rank"], probe=40,
                settings=ProbeSettings(sparsity_tau=0.9)).step()
    h1 = torch.relu(model[0](x))
    h2 = torch.relu(model[2](h1))
    for name, a in (("1", h1), ("3", h2)):
        assert m[f"{name}_sparsity"] == pytest.approx(float(feature_sparsity(a.detach(), 0.9).coefficient), abs=1e-12)
        assert m[f"{name}_active"] == pytest.approx(float((a > 0).double().mean()), abs=1e-12)
    dead = torch.cat([h1.abs().mean(0) < 1e-3, h2.abs().mean(0) < 1e-3]).double().mean()
    assert m["dead_fraction"] == pytest.approx(float(dead)) and m["dead_fraction"] >= 5 / 50
    assert m["jacobian_rank"] == jacobian_rank(model, x)


def test_shared_relu_module_gives_one_feature_set_per_call():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 5), relu, nn.Linear(5, 4), relu, nn.Linear(4, 1))
    mon = Monitor(model, F.mse_loss, (torch.randn(10, 3), torch.randn(10, 1)), metrics=["sparsity"])
    assert {"1_sparsity", "1#2_sparsity"} <= set(mon.names)
    assert np.isfinite([mon.step()["1#2_sparsity"]]).all()


def test_unknown_metric_and_bad_arguments_name_what_is_allowed():
    model = small_tanh_net()
    d = (torch.randn(8, 3, dtype=DT), torch.randn(8, 2, dtype=DT))
    with pytest.raises(ConfigError, match="allowed: .*batch_sharpness.*sharpness"):
        Monitor(model, mse, d, metrics=["sharpnes"])
    with pytest.raises(ConfigError, match="batch_size"):
        Monitor(model, mse, d, metrics=["batch_sharpness"])
    with pytest.raises(ConfigError, match="optimizer"):
        Monitor(model, mse, d, metrics=["threshold"])
    with pytest.raises(ConfigError, match="BatchNorm"):
        Monitor(bn_dropout_net(), F.cross_entropy, data())
    with pytest.raises(ConfigError, match="layer"):
        Monitor(model, mse, d, metrics=["sparsity"], layers=["nope"])
    with pytest.raises(ConfigError, match="ReLU-like"):
        Monitor(model, mse, d, metrics=["sparsity"])  # tanh only
    with pytest.raises(ConfigError, match="scalar"):
        Monitor(model, lambda o, t: (o - t) ** 2, d)
    with pytest.raises(ConfigError, match="step"):
        Monitor(model, mse, d).step(-1)
    assert set(PROBES.names()) >= {"train_loss", "sharpness", "threshold", "batch_sharpness", "gni", "sparsity",
                                   "jacobian_rank", "dead_units", "minibs"}
    assert all(PROBES.get(n).doc for n in PROBES.names())


def test_schedules_every_log_spaced_and_per_metric():
    model = small_tanh_net()
    d = (torch.randn(8, 3, dtype=DT), torch.randn(8, 2, dtype=DT))
    mon = Monitor(model, mse, d, metrics={"sharpness": LogSpaced(2), "jacobian_rank": 7}, settings=ProbeSettings(tol=1e-3))
    for _ in range(40):
        mon.step()
    steps, m = mon.metrics()
    assert steps.tolist() == [0, 1, 3, 7, 10, 14, 21, 28, 32, 35]
    assert np.isfinite(m["sharpness"]).nonzero()[0].tolist() == [0, 1, 2, 4, 8]  # 0, 1, 3, 10, 32
    assert np.isfinite(m["train_loss"]).all()  # measured at every measurement
    assert mon.step(35) is None  # a step already seen


def test_measurement_set_rule_for_tensors_loaders_and_batch_lists():
    x, y = data(50)
    idx = subset_indices(50, 20, seed=4)
    assert idx.tolist() == sorted(torch.randperm(50, generator=torch.Generator().manual_seed(4))[:20].tolist())
    gen = torch.Generator().manual_seed(9)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, generator=gen)
    state = gen.get_state()
    for got in (measurement_set((x, y), 20, 4), measurement_set(loader, 20, 4),
                measurement_set([(x[:25], y[:25]), (x[25:], y[25:])], 20, 4)):
        assert torch.equal(got[0], x[idx]) and torch.equal(got[1], y[idx])
    assert torch.equal(gen.get_state(), state)  # the loader was never iterated
    assert torch.equal(measurement_set((x, y))[0], x)  # no subset: all examples, in order


def test_no_graph_is_kept_between_measurements():
    def graphs():  # tensors with an autograd graph alive anywhere in the process
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)

    before = graphs()  # other tests of the same process may hold some: the monitor must add none
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 1))
    mon = Monitor(model, F.mse_loss, (torch.randn(64, 5), torch.randn(64, 1)), every=1,
                  metrics=["sharpness", "batch_sharpness", "sparsity"], batch_size=16,
                  settings=ProbeSettings(max_batches=12))
    for _ in range(6):
        mon.step()
        assert graphs() <= before
    assert isinstance(mon.prober.warm, WarmStart) and mon.prober.warm.vectors[0].shape == (225, 1)  # k = 1 by default


def test_divergence_gives_nan_not_an_exception():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    mon = Monitor(model, F.mse_loss, (torch.randn(8, 3), torch.randn(8, 1)), every=1)
    assert math.isfinite(mon.step()["sharpness"])
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    m = mon.step()
    assert math.isnan(m["train_loss"]) and math.isnan(m["sharpness"]) and mon.diverged_at == 1


def test_run_directory_plot_summary_export_and_refusal_to_rerun(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out = tmp_path / "mon"
    with sgdlab.Monitor(model, F.cross_entropy, (x, y), opt, out=out, name="mine", batch_size=16,
                        loggers=["tensorboard"], settings=ProbeSettings(max_batches=12),
                        metrics={"sharpness": 2, "threshold": 2, "batch_sharpness": 4, "sparsity": 2}) as mon:
        for _ in range(9):
            m = mon.step()
            assert m is None or str(m).startswith(f"step {m.step} | loss")
            opt.zero_grad()
            F.cross_entropy(model(x[:16]), y[:16]).backward()
            opt.step()
    rd = RunDir(out)
    steps, metrics = rd.metrics()
    # close() measures the final state (after the 9th update) with every metric
    assert steps.tolist() == [0, 2, 4, 6, 8, 9] and metrics["sharpness"].shape == (6, 1)
    assert np.isfinite(metrics["batch_sharpness"][:, 0]).tolist() == [True, False, True, False, True, True]
    assert rd.config().steps == 9 and rd.meta()["monitor"]["batch_size"] == 16
    assert rd.summary()["arms"]["mine"]["final"]["sharpness"]["median"] == pytest.approx(metrics["sharpness"][-1, 0])
    assert list((out / "tensorboard").iterdir()) and rd.complete()  # summary, figures, "finished"
    assert (out / "figures" / "mine-monitor.png").exists()
    runner = CliRunner()
    res = runner.invoke(main, ["plot", str(out)])
    assert res.exit_code == 0 and "mine-monitor.png" in res.output, res.output
    res = runner.invoke(main, ["summary", str(out)])
    assert res.exit_code == 0 and "sharpness" in res.output and "batch_sharpness" in res.output, res.output
    res = runner.invoke(main, ["export", str(out), "--to", "tensorboard"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["run", str(out / "config.toml"), "--out", str(tmp_path / "again")])
    assert res.exit_code == 2 and "sgdlab.Monitor" in res.output and "Traceback" not in res.output
