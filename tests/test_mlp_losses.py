"""Classification losses of the MLP family: one-hot MSE summed over classes (with and without
the 1/2) and cross-entropy, closed-form gradients against autograd in float64; vector targets;
MLPs on the deep-net path without registering anything."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.arrays import ArrayFile
from sgdlab.data.base import Dataset
from sgdlab.data.image_configs import SyntheticImages
from sgdlab.engine.train import train
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import ModelConfig
from sgdlab.models.cifar import DEEP_MODELS, DEFAULT_WIDTHS, build_deep_model
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim import noise
from sgdlab.optim.config import GD, SGD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

K = 4  # classes


def _data(n=10, d=3, seed=0, vector=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, dtype=torch.float64, generator=g)
    y = torch.randn(n, K, dtype=torch.float64, generator=g) if vector else torch.randint(0, K, (n,), generator=g)
    return Dataset(x, y, x[:6], y[:6])


def reference_loss(kind, out, y):
    """Mean over the batch of the per-example loss, written with torch.nn.functional."""
    if kind == "cross_entropy":
        return F.cross_entropy(out, y)
    t = y if y.is_floating_point() else F.one_hot(y, out.shape[-1]).to(out.dtype)
    s = F.mse_loss(out, t, reduction="none").sum(-1).mean()
    return 0.5 * s if kind == "half_mse" else s


def autograd_loss_and_grad(model, params, x, y):
    """Per run: plain autograd of reference_loss on the model's forward (float64)."""
    losses, grads = [], {k: [] for k in params}
    for r in range(next(iter(params.values())).shape[0]):
        leaves = {k: v[r:r + 1].detach().clone().requires_grad_(True) for k, v in params.items()}
        xr, yr = (x if x.dim() == 2 else x[r]), (y if y.dim() == (2 if y.is_floating_point() else 1) else y[r])
        loss = reference_loss(model.loss_kind, model.forward(leaves, xr)[0], yr)
        g = torch.autograd.grad(loss, list(leaves.values()))
        losses.append(loss.detach())
        for k, gi in zip(leaves, g):
            grads[k].append(gi[0])
    return torch.stack(losses), {k: torch.stack(v) for k, v in grads.items()}


@pytest.mark.parametrize("loss, targets", [("mse", "labels"), ("half_mse", "labels"), ("cross_entropy", "labels"),
                                           ("mse", "vectors"), ("half_mse", "vectors")])
@pytest.mark.parametrize("per_run", [False, True], ids=["shared-batch", "per-run-batch"])
def test_closed_form_gradients_match_autograd(loss, targets, per_run):
    ds = _data(vector=targets == "vectors")
    model = MLPConfig(hidden=(5, 3), biases=(True, True, True), activation="tanh", loss=loss,
                      init_scales=(0.8, 0.6, 0.7)).build(ds)
    assert model.k == K
    params = model.init_params([1, 2, 3])
    x, y = ds.x_train[:6], ds.y_train[:6]
    if per_run:
        idx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7], [1, 3, 5, 9]])
        x, y = ds.x_train[idx], ds.y_train[idx]
    got_loss, got = model.loss_and_grad(params, x, y)
    want_loss, want = autograd_loss_and_grad(model, params, x, y)
    torch.testing.assert_close(got_loss, want_loss, rtol=1e-13, atol=1e-15)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=1e-14)
    # The noisy rules' loss derivative is the same closed form (sigma = 0: the plain gradient).
    rule = noise.NoisyGradient()
    rule.bind([0, 1, 2], ds.n, params)
    _, via_rule = rule.loss_and_grad(model, params, x, y, 0)
    for k in want:
        torch.testing.assert_close(via_rule[k], want[k], rtol=1e-12, atol=1e-14)


def test_half_mse_is_half_of_mse_and_classifiers_report_errors():
    ds = _data()
    kw = {"hidden": (5,), "init_scales": (0.8, 0.6)}
    full, half = MLPConfig(loss="mse", **kw).build(ds), MLPConfig(loss="half_mse", **kw).build(ds)
    p = full.init_params([0])
    m_full, m_half = (m.metrics(p, ds, MetricsConfig(), {"train_loss", "train_error", "test_error"})
                      for m in (full, half))
    torch.testing.assert_close(m_half["train_loss"], 0.5 * m_full["train_loss"], rtol=1e-15, atol=0)
    out = full.forward(p, ds.x_train)
    assert float(m_full["train_error"][0]) == float((out.argmax(-1) != ds.y_train).double().mean())
    assert "test_error" in m_half


def test_number_of_classes_and_bad_targets():
    ds = _data()
    ds.extras["num_classes"] = torch.tensor(7)
    assert MLPConfig().build(ds).k == 7
    assert MLPConfig().build(_data()).k == K  # the largest label + 1
    one = Dataset(torch.ones(3, 2).double(), torch.zeros(3, dtype=torch.int64), torch.ones(1, 2).double(),
                  torch.zeros(1, dtype=torch.int64))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        MLPConfig().build(one)
    with pytest.raises(ConfigError, match="cross_entropy' needs integer class labels"):
        MLPConfig(loss="cross_entropy").build(_data(vector=True))
    images = SyntheticImages(n_train=4, n_test=2).build()
    with pytest.raises(ConfigError, match="flat inputs"):
        MLPConfig().build(images)


# ------------------------------------------------------------------------- the deep-net path
def test_deep_mlp_is_registered_and_flattens_images():
    assert "mlp" in DEEP_MODELS and DEFAULT_WIDTHS["mlp"] == 200
    model = build_deep_model("mlp", num_classes=10, input_shape=(3, 8, 8), hidden=[16, 12], activation="tanh")
    logits, blocks = model(torch.rand(5, 3, 8, 8), return_blocks=True)
    assert logits.shape == (5, 10) and [b.shape for b in blocks.values()] == [(5, 16), (5, 12)]
    default = build_deep_model("mlp", num_classes=10, input_shape=(6,))
    assert [m.out_features for m in default.modules() if isinstance(m, torch.nn.Linear)] == [200, 200, 10]
    with pytest.raises(ConfigError, match="unknown activation"):
        build_deep_model("mlp", input_shape=(6,), activation="swish")


def test_registered_deep_model_without_default_width_is_a_config_error():
    DEEP_MODELS.add("kinds-test-net", lambda num_classes, width, in_channels=3, generator=None: None)
    try:
        with pytest.raises(ConfigError, match="'kinds-test-net' has no default width: set its width"):
            build_deep_model("kinds-test-net")
        cfg = from_dict(ModelConfig, {"kind": "deep_net", "name": "kinds-test-net"})
        with pytest.raises(ConfigError, match="no default width"):
            cfg.build(SyntheticImages(n_train=4, n_test=2).build())
    finally:
        DEEP_MODELS._items.pop("kinds-test-net")


@pytest.mark.parametrize("loss", ["mse", "half_mse", "cross_entropy"])
def test_deep_mlp_gradients_match_the_batched_mlp(loss):
    """The same network on both paths (deep: nn.Module + autograd; batched: closed form) gives
    the same loss and gradients when given the same weights."""
    ds = _data(n=12)
    deep = from_dict(ModelConfig, {"kind": "deep_net", "name": "mlp", "loss": loss,
                                   "options": {"hidden": [5], "activation": "relu"}}).build(ds)
    batched = MLPConfig(hidden=(5,), biases=(True, True), loss=loss, init_scales=(1.0, 1.0)).build(ds)
    pd = deep.init_params([0, 1], dtype=torch.float64)
    pb = {"W1": pd["blocks.block1.0.weight"], "b1": pd["blocks.block1.0.bias"], "W2": pd["head.weight"],
          "b2": pd["head.bias"]}
    idx = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    for x, y in ((ds.x_train, ds.y_train), (ds.x_train[idx], ds.y_train[idx])):
        ld, gd = deep.loss_and_grad(pd, x, y)
        lb, gb = batched.loss_and_grad(pb, x, y)
        torch.testing.assert_close(ld, lb, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(gd["blocks.block1.0.weight"], gb["W1"], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(gd["head.bias"], gb["b2"], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(deep.forward(pd, ds.x_test), batched.forward(pb, ds.x_test), rtol=1e-12, atol=1e-14)


def test_deep_mlp_trains_on_the_engine_with_flat_inputs_and_images(tmp_path):
    flat = _data(n=32, d=4)
    np.savez(tmp_path / "flat.npz", x=flat.x_train.numpy(), y=flat.y_train.numpy())
    mlp = {"kind": "deep_net", "name": "mlp", "width": 16, "eval_train": 32}
    for data, loss in ((ArrayFile(str(tmp_path / "flat.npz")), "half_mse"),
                       (SyntheticImages(n_train=32, n_test=8, size=4, num_classes=3), "cross_entropy")):
        arms = (ArmConfig("gd", GD(), Constant(0.1)), ArmConfig("sgd", SGD(batch_size=8), Constant(0.1)))
        cfg = ExperimentConfig(data=data, model=from_dict(ModelConfig, {**mlp, "loss": loss}), arms=arms, steps=30,
                               seeds=1, eval=EvalConfig("linear", 2), metrics=MetricsConfig(names=("train_loss",)))
        _, _, m = train(cfg)
        assert np.isfinite(m["train_loss"]).all() and (m["train_loss"][-1] < m["train_loss"][0]).all()
