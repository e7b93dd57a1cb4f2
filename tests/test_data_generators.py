"""Generator choices of the synthetic tasks as config keys: the defaults reproduce the data of
the fixed generators bit for bit (reference copies of the former code below), and every new
key changes exactly what it says."""

import itertools
import typing

import numpy as np
import pytest
import torch

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.base import DataConfig
from sgdlab.data.synthetic import SparseRegression
from sgdlab.data.toy import TEACHER_ACTIVATIONS, hidden_preactivations, teacher_forward
from sgdlab.data.toy_configs import (
    TeacherActivation,
    TeacherStudent2D,
    ThreeLayerTeacher,
)
from sgdlab.studies.eos.data import EoSSRegression, SharpestDirections
from sgdlab.studies.related.data import SupportRegression, support_target

pytestmark = pytest.mark.study("related", "eos")


# ------------------------------------------------- reference copies of the former fixed generators
def ref_sparse(n, d, r, n_test, rng, noise=0.0):
    x = rng.multivariate_normal(np.zeros(d), np.eye(d), n)
    x_test = rng.multivariate_normal(np.zeros(d), np.eye(d), n_test)
    beta = rng.standard_normal(d)
    beta[r:] = 0
    beta = np.abs(beta) / np.linalg.norm(beta)
    y = x @ beta + (noise * rng.standard_normal(n) if noise > 0 else 0.0)
    return x, y, x_test, x_test @ beta, beta


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def ref_forward(teacher, x):
    """The former teacher_forward: ReLU hidden layers, torch arithmetic."""
    n_layers = sum(1 for k in teacher if k.startswith("W"))
    h = x
    for i in range(1, n_layers + 1):
        h = h @ teacher[f"W{i}"].T
        if f"b{i}" in teacher:
            h = h + teacher[f"b{i}"]
        if i < n_layers:
            h = torch.relu(h)
    return h.reshape(-1)


def ref_teacher_student_2d(seed, n_train, n_test, n_teacher):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_teacher, 2))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    a = rng.choice(np.array([-1.0, 1.0]), size=n_teacher)
    teacher = {"W1": _t(w), "W2": _t(a[None, :])}

    def circle(n):
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        return _t(np.stack([np.cos(angle), np.sin(angle)], axis=1))

    x, xt = circle(n_train), circle(n_test)
    return x, ref_forward(teacher, x), xt, ref_forward(teacher, xt)


def ref_three_layer(seed, d=5, hidden=(2, 2), n_train=50, n_test=1000, lo=0.1):
    rng = np.random.default_rng(seed)

    def sphere(n):
        g = rng.standard_normal((n, d))
        return _t(g / np.linalg.norm(g, axis=1, keepdims=True))

    x, xt = sphere(n_train), sphere(n_test)
    widths = (d, *hidden, 1)
    while True:
        teacher = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
            teacher[f"W{i}"] = _t(rng.standard_normal((fan_out, fan_in)))
            teacher[f"b{i}"] = _t(rng.standard_normal(fan_out))
        h, ok = x, True
        for i in range(1, len(widths) - 1):
            z = h @ teacher[f"W{i}"].T + teacher[f"b{i}"]
            frac = (z > 0).double().mean(0)
            ok &= bool(((frac >= lo) & (frac <= 1 - lo)).all())
            h = torch.relu(z)
        if ok:
            return x, ref_forward(teacher, x), xt, ref_forward(teacher, xt)


def ref_sharpest(seed, d, hidden, n_train, n_test, var):
    rng = np.random.default_rng(seed)
    widths = (d, *hidden, 1)
    teacher = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
        std = 1.0 if i == 1 else np.sqrt(2.0 / fan_in)
        teacher[f"W{i}"] = _t(std * rng.standard_normal((fan_out, fan_in)))
    x = _t(np.sqrt(1.0 / d) * rng.standard_normal((n_train, d)))
    xt = _t(np.sqrt(1.0 / d) * rng.standard_normal((n_test, d)))
    y = ref_forward(teacher, x) + _t(np.sqrt(var) * rng.standard_normal(n_train))
    return x, y, xt, ref_forward(teacher, xt)


def ref_support(n, d, support, product, noise, n_test, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    xt = rng.standard_normal((n_test, d))
    eps = noise * rng.standard_normal(n) if noise > 0 else 0.0
    return x, support_target(x, support, product) + eps, xt, support_target(xt, support, product)


def assert_bitwise(ds, ref):
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), ref):
        assert torch.equal(got, torch.as_tensor(want, dtype=torch.float64))


# ---------------------------------------------------------------------------- defaults, bit for bit
@pytest.mark.parametrize("kw", [{"n": 20, "d": 30, "r": 3}, {"n": 20, "d": 30, "r": 3, "noise": 0.1},
                                {"n": 15, "d": 10, "r": 4, "generator": "pcg64", "noise": 0.5}])
def test_sparse_regression_default_keys_reproduce_the_former_data(kw):
    ds = SparseRegression(n_test=40, **kw).build()
    gen = kw.get("generator", "authors")
    rng = np.random.RandomState(0) if gen == "authors" else np.random.default_rng(0)
    x, y, xt, yt, beta = ref_sparse(kw["n"], kw["d"], kw["r"], 40, rng, kw.get("noise", 0.0))
    assert_bitwise(ds, (x, y, xt, yt))
    assert torch.equal(ds.extras["beta_star"], torch.as_tensor(beta)) and ds.extras["support"].sum() == kw["r"]
    assert SparseRegression().r == 20  # the paper's default support size


def test_teacher_tasks_default_keys_reproduce_the_former_data():
    assert_bitwise(TeacherStudent2D(n_test=50).build(), ref_teacher_student_2d(0, 15, 50, 3))
    assert_bitwise(ThreeLayerTeacher(n_test=50, seed=2).build(), ref_three_layer(2, n_test=50))
    assert_bitwise(SharpestDirections(d=20, hidden=(8, 8), n_train=30, n_test=10).build(),
                   ref_sharpest(0, 20, (8, 8), 30, 10, 0.2))
    assert_bitwise(EoSSRegression(n_test=20).build(), ref_sharpest(0, 10, (32,), 256, 20, 0.2))
    for noise in (0.0, 0.3):
        assert_bitwise(SupportRegression(n_test=30, noise=noise).build(), ref_support(200, 20, 2, 1.0, noise, 30, 0))


# ----------------------------------------------------------------------------------- new keys
def test_sparse_regression_explicit_beta_and_support():
    beta = np.zeros(10)
    beta[[1, 4]] = [2.0, -0.5]
    ds = SparseRegression(n=12, d=10, n_test=5, beta=tuple(beta)).build()
    assert torch.equal(ds.extras["beta_star"], torch.as_tensor(beta))
    assert ds.extras["support"].nonzero().flatten().tolist() == [1, 4]
    torch.testing.assert_close(ds.y_train, ds.x_train @ torch.as_tensor(beta), rtol=0, atol=0)
    same = SparseRegression(n=12, d=10, n_test=5, support=(1, 4), values=(2.0, -0.5)).build()
    assert torch.equal(same.x_train, ds.x_train) and torch.equal(same.y_train, ds.y_train)
    assert SparseRegression(d=10, support=(1, 4)).r == 2  # r follows the support
    # The first r indices as an explicit support draw exactly the default data.
    a = SparseRegression(n=20, d=30, r=3, n_test=40).build()
    b = SparseRegression(n=20, d=30, support=(0, 1, 2), n_test=40).build()
    assert torch.equal(a.y_train, b.y_train) and torch.equal(a.extras["beta_star"], b.extras["beta_star"])
    # Another support: drawn |N(0,1)| values, normalised, on those coordinates only.
    c = SparseRegression(n=20, d=30, support=(5, 9, 29), n_test=40).build()
    assert c.extras["support"].nonzero().flatten().tolist() == [5, 9, 29]
    assert float(c.extras["beta_star"].norm()) == pytest.approx(1.0) and bool((c.extras["beta_star"] >= 0).all())


@pytest.mark.parametrize("inputs", ["uniform", "rademacher"])
def test_sparse_regression_input_distributions(inputs):
    ds = SparseRegression(n=4000, d=5, r=2, n_test=10, inputs=inputs, input_scale=2.0, generator="pcg64").build()
    x = ds.x_train
    assert float(x.mean()) == pytest.approx(0.0, abs=0.05)
    assert float(x.var()) == pytest.approx(4.0, rel=0.03)  # 20000 draws: sd of the variance ~1%
    if inputs == "rademacher":
        assert set(x.abs().unique().tolist()) == {2.0}
    else:
        assert float(x.abs().max()) <= 2.0 * np.sqrt(3.0)
    torch.testing.assert_close(ds.y_train, x @ ds.extras["beta_star"])
    scaled = SparseRegression(n=20, d=30, r=3, n_test=40, input_scale=0.5).build()
    assert torch.equal(scaled.x_train, 0.5 * SparseRegression(n=20, d=30, r=3, n_test=40).build().x_train)


@pytest.mark.parametrize("bad, match", [
    ({"beta": [1.0, 0.0]}, "beta needs d = 3"),
    ({"beta": [0.0, 0.0, 0.0]}, "non-zero"),
    ({"beta": [1.0, 0.0, 0.0], "support": [0]}, "either beta or support"),
    ({"support": [0, 3]}, r"support indices must be in \[0, d = 3\)"),
    ({"support": [1, 1]}, "distinct"),
    ({"support": [0, 1], "values": [1.0]}, "one number per support index"),
    ({"values": [1.0]}, "one number per support index"),
    ({"support": [0, 1], "values": [1.0, 0.0]}, "non-zero"),
    ({"support": [0, 1], "r": 3}, "disagrees"),
    ({"inputs": "laplace"}, "inputs"),
    ({"input_scale": 0.0}, "input_scale"),
])
def test_sparse_regression_validation(bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, {"kind": "sparse_regression", "d": 3, **bad})


@pytest.mark.parametrize("activation", sorted(TEACHER_ACTIVATIONS))
def test_teacher_activation_and_label_noise(activation):
    ds = TeacherStudent2D(n_test=30, activation=activation).build()
    t = {k[len("teacher_"):]: v for k, v in ds.extras.items()}
    torch.testing.assert_close(ds.y_train, teacher_forward(t, ds.x_train, activation), rtol=0, atol=0)
    noisy = TeacherStudent2D(n_test=30, activation=activation, noise=0.5).build()
    assert torch.equal(noisy.x_train, ds.x_train) and torch.equal(noisy.y_test, ds.y_test)  # noise last, train only
    assert not torch.equal(noisy.y_train, ds.y_train)
    three = ThreeLayerTeacher(n_test=30, activation=activation, noise=0.2, seed=1).build()
    t3 = {k[len("teacher_"):]: v for k, v in three.extras.items()}
    torch.testing.assert_close(three.y_test, teacher_forward(t3, three.x_test, activation), rtol=0, atol=0)
    for z in hidden_preactivations(t3, three.x_train, activation):  # the rejection rule still holds
        frac = (z > 0).double().mean(0)
        assert bool(((frac >= 0.1) & (frac <= 0.9)).all())
    sd = SharpestDirections(d=12, hidden=(6,), n_train=20, n_test=10, activation=activation,
                            label_noise_var=0.0).build()
    ts = {k[len("teacher_"):]: v for k, v in sd.extras.items()}
    torch.testing.assert_close(sd.y_train, teacher_forward(ts, sd.x_train, activation), rtol=0, atol=0)


def test_config_activations_are_the_generator_activations():
    """The configs' Literal (what TOML accepts) and the generator's table name the same set."""
    assert set(typing.get_args(TeacherActivation)) == set(TEACHER_ACTIVATIONS)


def test_teacher_widths_are_keys():
    ds = TeacherStudent2D(n_teacher=5, n_test=10).build()
    assert ds.extras["teacher_W1"].shape == (5, 2)
    three = ThreeLayerTeacher(hidden=(4, 3), n_test=10).build()
    assert three.extras["teacher_W2"].shape == (3, 4)
    eoss = EoSSRegression(hidden=(7, 5), n_train=10, n_test=10).build()
    assert [eoss.extras[f"teacher_W{i}"].shape[0] for i in (1, 2, 3)] == [7, 5, 1]


@pytest.mark.parametrize("kind, bad, match", [
    ("teacher_student_2d", {"activation": "softplus"}, "activation"),
    ("teacher_student_2d", {"noise": -0.1}, "noise"),
    ("three_layer_teacher", {"noise": float("nan")}, "noise"),
    ("three_layer_teacher", {"hidden": [2]}, "hidden"),
    ("eoss_regression", {"activation": "sigmoid"}, "activation"),
    ("eoss_regression", {"hidden": [0]}, "hidden"),
    ("sharpest_directions", {"label_noise_var": -1.0}, "label_noise_var"),
    ("support_regression", {"inputs": "cauchy"}, "inputs"),
    ("support_regression", {"input_scale": -1.0}, "input_scale"),
])
def test_teacher_keys_are_validated(kind, bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, {"kind": kind, **bad})


def test_support_regression_inputs():
    ds = SupportRegression(n=3000, d=4, n_test=10, inputs="rademacher", input_scale=0.5).build()
    assert set(ds.x_train.abs().unique().tolist()) == {0.5}
    torch.testing.assert_close(ds.y_train, torch.as_tensor(support_target(ds.x_train.numpy(), 2, 1.0)))
