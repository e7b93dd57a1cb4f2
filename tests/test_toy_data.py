"""Toy datasets: shapes, dtypes, determinism under a seed, unit norms, teacher structure."""

import dataclasses

import numpy as np
import pytest
import torch

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.toy import (
    Regression1DConfig,
    SharpestDirectionsConfig,
    TeacherStudent2DConfig,
    ThreeLayerTeacherConfig,
    hidden_preactivations,
    regression_1d,
    sharpest_directions,
    teacher_forward,
    teacher_student_2d,
    three_layer_teacher,
)

pytestmark = pytest.mark.study("eos")


def _assert_float64(ds, n, n_test, d):
    assert ds.x_train.shape == (n, d) and ds.y_train.shape == (n,)
    assert ds.x_test.shape == (n_test, d) and ds.y_test.shape == (n_test,)
    for t in ds.as_tuple():
        assert t.dtype == torch.float64


def _assert_same(a, b):
    for s, t in zip(a.as_tuple(), b.as_tuple()):
        assert torch.equal(s, t) or (torch.isnan(s).all() and torch.isnan(t).all())
    assert a.teacher.keys() == b.teacher.keys()
    for k in a.teacher:
        assert torch.equal(a.teacher[k], b.teacher[k])


def test_regression_1d_exact_points():
    ds = regression_1d(Regression1DConfig(n_test=500))
    _assert_float64(ds, 12, 500, 1)
    want_x = (np.arange(12) - 5.5) / 4 + 0.07
    np.testing.assert_allclose(ds.x_train[:, 0].numpy(), want_x, rtol=0, atol=1e-15)
    want_y = 0.345 + np.array([-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1])
    np.testing.assert_allclose(ds.y_train.numpy(), want_y, rtol=0, atol=1e-15)
    assert ds.x_test[0, 0] == ds.x_train[0, 0] and ds.x_test[-1, 0] == ds.x_train[-1, 0]
    assert torch.all(ds.x_test[1:] > ds.x_test[:-1])
    assert not ds.has_test_labels and torch.isnan(ds.y_test).all() and ds.teacher == {}


def test_teacher_student_2d():
    cfg = TeacherStudent2DConfig()
    ds = teacher_student_2d(0, cfg)
    _assert_float64(ds, 15, 1000, 2)
    for x in (ds.x_train, ds.x_test):
        torch.testing.assert_close(x.norm(dim=1), torch.ones(len(x), dtype=torch.float64))
    W1, W2 = ds.teacher["W1"], ds.teacher["W2"]
    assert set(ds.teacher) == {"W1", "W2"}  # no biases
    assert W1.shape == (3, 2) and W2.shape == (1, 3)
    torch.testing.assert_close(W1.norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert set(W2.abs().flatten().tolist()) == {1.0}
    manual = torch.relu(ds.x_train @ W1.T) @ W2[0]
    torch.testing.assert_close(ds.y_train, manual)
    _assert_same(ds, teacher_student_2d(0, cfg))
    _assert_same(ds, teacher_student_2d(np.random.default_rng(0), cfg))
    assert not torch.equal(ds.x_train, teacher_student_2d(1, cfg).x_train)


def test_three_layer_teacher():
    ds = three_layer_teacher(3)
    _assert_float64(ds, 50, 1000, 5)
    torch.testing.assert_close(ds.x_train.norm(dim=1), torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(ds.x_test.norm(dim=1), torch.ones(1000, dtype=torch.float64))
    shapes = {k: tuple(v.shape) for k, v in ds.teacher.items()}
    assert shapes == {"W1": (2, 5), "b1": (2,), "W2": (2, 2), "b2": (2,), "W3": (1, 2), "b3": (1,)}
    t = ds.teacher
    manual = torch.relu(torch.relu(ds.x_test @ t["W1"].T + t["b1"]) @ t["W2"].T + t["b2"]) @ t["W3"][0] + t["b3"]
    torch.testing.assert_close(ds.y_test, manual)
    _assert_same(ds, three_layer_teacher(3))
    for seed in range(6):  # rejection sampling: no dead or always-on teacher unit
        d = three_layer_teacher(seed)
        for z in hidden_preactivations(d.teacher, d.x_train):
            frac = (z > 0).double().mean(0)
            assert torch.all((frac >= 0.1) & (frac <= 0.9))
        assert d.y_train.std() > 0


def test_sharpest_directions_small():
    cfg = SharpestDirectionsConfig(d=300, n_train=2000, n_test=100)
    ds = sharpest_directions(0, cfg)
    _assert_float64(ds, 2000, 100, 300)
    assert ds.x_train.var().item() == pytest.approx(1 / 300, rel=0.02)
    assert [tuple(ds.teacher[k].shape) for k in ("W1", "W2", "W3")] == [(100, 300), (100, 100), (1, 100)]
    assert not any(k.startswith("b") for k in ds.teacher)
    clean = teacher_forward(ds.teacher, ds.x_train)
    noise = ds.y_train - clean
    assert noise.var().item() == pytest.approx(0.2, rel=0.1)  # 2000 samples: sd of var ~3%
    torch.testing.assert_close(ds.y_test, teacher_forward(ds.teacher, ds.x_test))  # clean test
    noisy = sharpest_directions(0, dataclasses.replace(cfg, noisy_test=True))
    assert not torch.equal(noisy.y_test, ds.y_test)
    _assert_same(ds, sharpest_directions(0, cfg))


@pytest.mark.parametrize(
    "cls, bad, match",
    [
        (Regression1DConfig, {"n_test": 0}, "n_test"),
        (TeacherStudent2DConfig, {"n_train": -1}, "n_train"),
        (ThreeLayerTeacherConfig, {"hidden": [2]}, "hidden"),
        (ThreeLayerTeacherConfig, {"min_active_fraction": 0.5}, "min_active_fraction"),
        (SharpestDirectionsConfig, {"label_noise_var": -0.1}, "label_noise_var"),
    ],
)
def test_config_validation(cls, bad, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(cls, bad)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        teacher_student_2d(-1)
    with pytest.raises(ValueError, match="seed"):
        teacher_student_2d(1.5)
