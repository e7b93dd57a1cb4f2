"""Explicit initial values of the diagonal and two-layer nets: every seed starts at the given
point, the engine runs a deterministic arm once, shapes are checked with clear errors."""

import numpy as np
import pytest
import torch

from sgdlab.core.config import from_dict, override
from sgdlab.core.errors import ConfigError
from sgdlab.data.base import Dataset
from sgdlab.data.synthetic import SparseRegression
from sgdlab.engine.train import train
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import ModelConfig
from sgdlab.optim.config import GD, SGD
from sgdlab.optim.noise import LabelNoiseGD, LabelNoiseSGD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.diag_net.model import DiagonalNetConfig
from sgdlab.studies.related.data import ScalarTarget, SupportRegression
from sgdlab.studies.related.two_layer import TwoLayerConfig

pytestmark = pytest.mark.study("diag_net", "related")

SMALL = SparseRegression(n=20, d=30, r=3, n_test=50)
EVAL = EvalConfig("linear", 3)


# ------------------------------------------------------------------------------ diagonal net
def test_diagonal_u0_v0_scalar_and_list():
    ds = SMALL.build()
    m = DiagonalNetConfig(u0=1.0, v0=1.0).build(ds)
    p = m.init_params([3, 4])
    assert torch.equal(p["u"], torch.ones(2, 30, dtype=torch.float64)) and torch.equal(p["v"], p["u"])
    vals = tuple(np.linspace(0.1, 3.0, 30))
    p = DiagonalNetConfig(u0=vals).build(ds).init_params([0])
    assert torch.equal(p["u"][0], torch.as_tensor(vals))
    assert torch.equal(p["v"], torch.zeros(1, 30, dtype=torch.float64))
    # Without u0/v0: the authors' init_scale * 1, 0 (unchanged).
    p = DiagonalNetConfig(init_scale=0.3).build(ds).init_params([0])
    assert torch.equal(p["u"], torch.full((1, 30), 0.3, dtype=torch.float64)) and not p["v"].any()
    assert not m.random_init


@pytest.mark.parametrize("opt", [GD(), LabelNoiseGD(0.5), LabelNoiseSGD(0.5, batch_size=2), SGD(batch_size=2)],
                         ids=["gd-kernel", "label-noise-gd", "label-noise-sgd", "sgd-kernel"])
def test_u_equals_v_stays_exact(opt):
    """u0 = v0: dL/du = g v and dL/dv = g u are equal, so u = v (beta = u * u) along the run,
    bit for bit, in the compiled kernel (plain GD / SGD) and the torch path (label noise)."""
    cfg = ExperimentConfig(data=SMALL, model=DiagonalNetConfig(u0=1.0, v0=1.0),
                           arms=(ArmConfig("a", opt, Constant(0.05)),), steps=300, seeds=2, eval=EVAL)
    _, st, m = train(cfg)
    for p in st.params:
        assert torch.equal(p["u"], p["v"])
    assert np.isfinite(m["train_loss"]).all() and (m["train_loss"][-1] < m["train_loss"][0]).all()


@pytest.mark.parametrize("key, value", [("u0", [1.0, 2.0]), ("v0", [0.5] * 31)])
def test_diagonal_wrong_lengths(key, value):
    cfg = from_dict(ModelConfig, {"kind": "diagonal_net", key: value})
    with pytest.raises(ConfigError, match=rf"model.{key}: expected one number or values of shape \(30,\)"):
        cfg.build(SMALL.build())


def test_diagonal_bad_values():
    with pytest.raises(ConfigError, match="u0: .* matches none of float, list of numbers"):
        from_dict(ModelConfig, {"kind": "diagonal_net", "u0": [[1.0] * 30]})
    with pytest.raises(ConfigError, match="finite"):
        from_dict(ModelConfig, {"kind": "diagonal_net", "u0": float("inf")})
    with pytest.raises(ConfigError, match="empty"):
        from_dict(ModelConfig, {"kind": "diagonal_net", "v0": []})


# ------------------------------------------------------------------------------ two-layer net
def test_scalar_linear_net_from_a0_b0_without_seed_search():
    """Beneventano & Woodworth's depth-2 scalar net from (a0, b0) = (2, 0.1): W = [[2]], v = [0.1]
    for every seed; a GD arm is deterministic, so it runs once (a noisy arm once per seed)."""
    cfg = ExperimentConfig(data=ScalarTarget(), model=TwoLayerConfig(width=1, w0=2.0, v0=0.1),
                           arms=(ArmConfig("gd", GD(), Constant(0.1)), ArmConfig("gd2", GD(), Constant(0.2)),
                                 ArmConfig("noisy", LabelNoiseGD(0.1), Constant(0.1))),
                           steps=200, seeds=3, eval=EVAL)
    eng, _, m = train(cfg)
    assert [r.arm for r in eng.runs] == ["gd", "gd2", "noisy", "noisy", "noisy"]
    assert np.all(m["a1"][0] == 2.0) and np.all(m["b1"][0] == 0.1)
    # GD by hand: L = 1/2 (a b - 1)^2, a' = a - eta (ab - 1) b, b' = b - eta (ab - 1) a.
    a, b = 2.0, 0.1
    for _ in range(200):
        r = a * b - 1.0
        a, b = a - 0.1 * r * b, b - 0.1 * r * a
    assert m["a1"][-1][0] == pytest.approx(a, rel=1e-12) and m["b1"][-1][0] == pytest.approx(b, rel=1e-12)


def test_two_layer_lists_rows_and_column_vectors():
    ds = ScalarTarget().build()  # d = 1: w0 may be the flat vector a = W[:, 0]
    m = TwoLayerConfig(width=3, w0=(1.0, -2.0, 0.5), v0=(0.1, 0.2, 0.3)).build(ds)
    p = m.init_params([0, 1])
    assert torch.equal(p["W"], torch.tensor([[[1.0], [-2.0], [0.5]]] * 2, dtype=torch.float64))
    assert torch.equal(p["v"], torch.tensor([[0.1, 0.2, 0.3]] * 2, dtype=torch.float64))
    ds2 = Dataset(torch.ones(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.float64),
                  torch.ones(2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    m2 = from_dict(ModelConfig, {"kind": "two_layer", "width": 2, "w0": [[1.0, 2.0], [3.0, 4.0]], "v0": 0.5}).build(ds2)
    assert torch.equal(m2.init_params([0])["W"][0], torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64))
    assert not m2.random_init


def test_two_layer_one_explicit_layer_keeps_the_other_random():
    ds = ScalarTarget().build()
    base = TwoLayerConfig(width=4).build(ds).init_params([5, 6])
    half = TwoLayerConfig(width=4, w0=1.0).build(ds)
    p = half.init_params([5, 6])
    assert half.random_init and torch.equal(p["v"], base["v"]) and torch.equal(p["W"], torch.ones(2, 4, 1).double())


@pytest.mark.parametrize("kw, match", [
    ({"w0": [1.0, 2.0]}, r"model.w0: expected one number or values of shape \(3, 1\)"),
    ({"w0": [[1.0], [2.0]]}, r"model.w0: .*shape \(3, 1\).*got shape \(2, 1\)"),
    ({"w0": [[1.0], [2.0, 3.0], [1.0]]}, "rows of unequal length"),
    ({"v0": [1.0, 2.0]}, r"model.v0: expected one number or values of shape \(3,\)"),
])
def test_two_layer_wrong_shapes(kw, match):
    cfg = from_dict(ModelConfig, {"kind": "two_layer", "width": 3, **kw})
    with pytest.raises(ConfigError, match=match):
        cfg.build(ScalarTarget().build())


def test_support_metrics_relative_to_an_explicit_init():
    ds = SupportRegression(n=50, d=4, n_test=10).build()
    w0 = [[1.0, 2.0, 0.5, 0.5], [1.0, 0.0, 0.5, 1.5]]
    m = TwoLayerConfig(width=2, w0=tuple(map(tuple, w0)), v0=(1.0, -1.0)).build(ds)
    out = m.metrics(m.init_params([0]), ds, MetricsConfig())
    assert float(out["relevant_norm"][0]) == pytest.approx(1.0)
    assert float(out["irrelevant_norm"][0]) == pytest.approx(1.0)


def test_override_from_the_cli_shape():
    """What `--set model.u0=1.0 --set model.v0=1.0` does to a bundled TOML."""
    from sgdlab.workflows.api import load_experiment

    cfg = override(load_experiment("label-noise-diag-net"), ["model.u0=1.0", "model.v0=[1.0, 2.0]"])
    assert cfg.model.u0 == 1.0 and cfg.model.v0 == (1.0, 2.0)
    cfg = override(load_experiment("linear2-large-step"), ["model.w0=2.0", "model.v0=0.1"])
    assert (cfg.model.w0, cfg.model.v0) == (2.0, 0.1)
