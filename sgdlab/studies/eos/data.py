"""``DataConfig`` kinds of the curvature experiments (docs/curvature.md).

* ``chebyshev``: Cohen et al.'s (2021) ``chebyshev-k`` regression: ``n`` evenly spaced inputs
  x in [-1, 1] (n = 20 in their code), label T_k(x), the Chebyshev polynomial of the first kind
  (T_k(cos t) = cos(k t)). Deterministic; the test set is a fine grid of the same function.
* ``sharpest_directions``: Jastrzebski et al.'s (2018) teacher-student regression
  (:func:`sgdlab.data.toy.sharpest_directions`: x ~ N(0, I_d / d), Gaussian ReLU teacher
  d -> 100 -> 100 -> 1, label noise variance 0.2), with a data seed.
* ``eoss_regression``: the small Edge-of-Stochastic-Stability analogue: the same teacher-student
  generator at a smaller size (few hundred examples, low input dimension) so that SGD at batch 8
  reaches its stationary regime within a test-sized run.

All float64 on CPU, ``y (n,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import sgdlab
from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.data import toy
from sgdlab.data.base import DataConfig, Dataset
from sgdlab.data.toy_configs import TeacherActivation


def chebyshev_t(k: int, x: np.ndarray) -> np.ndarray:
    """T_k(x) by the recurrence T_0 = 1, T_1 = x, T_{j+1} = 2 x T_j - T_{j-1} (exact on [-1, 1])."""
    t_prev, t = np.ones_like(x), x.copy()
    if k == 0:
        return t_prev
    for _ in range(k - 1):
        t_prev, t = t, 2 * x * t - t_prev
    return t


@sgdlab.register_data("chebyshev")
@dataclass(frozen=True)
class Chebyshev(DataConfig):
    """x_i = -1 + 2 i / (n - 1), i = 0..n-1; y_i = T_k(x_i). Shapes x (n, 1), y (n,)."""

    k: int = 4  # degree (Cohen et al. used chebyshev-3/4/5 with 20 points)
    n: int = 20  # training points (their code: 20)
    n_test: int = 200  # grid points for the test loss (the same noiseless function)

    def __post_init__(self):
        check(self.k >= 0, f"k must be >= 0, got {self.k}")
        check(self.n >= 2 and self.n_test >= 2, f"n and n_test must be >= 2, got {self.n}, {self.n_test}")

    def build(self) -> Dataset:
        x = np.linspace(-1.0, 1.0, self.n)
        xt = np.linspace(-1.0, 1.0, self.n_test)
        t = lambda a: torch.as_tensor(a, dtype=torch.float64)
        return Dataset(t(x[:, None]), t(chebyshev_t(self.k, x)), t(xt[:, None]), t(chebyshev_t(self.k, xt)))


def _toy(c) -> toy.SharpestDirectionsConfig:
    return toy.SharpestDirectionsConfig(c.d, c.hidden, c.n_train, c.n_test, c.label_noise_var, activation=c.activation)


def _teacher_student(seed: int, cfg: toy.SharpestDirectionsConfig) -> Dataset:
    ds = toy.sharpest_directions(seed, cfg)
    return Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, {f"teacher_{k}": v for k, v in ds.teacher.items()})


@sgdlab.register_data("sharpest_directions")
@dataclass(frozen=True)
class SharpestDirections(DataConfig):
    """Teacher-student of "SGD smooths the sharpest directions" (toy.SharpestDirectionsConfig)."""

    d: int = 300  # paper: 300
    hidden: tuple[int, ...] = (100, 100)  # teacher widths (paper: two layers of 100 ReLU)
    n_train: int = 1000  # not given by the paper
    n_test: int = 1000
    label_noise_var: float = 0.2  # variance of the Gaussian label noise on training labels (paper: 0.2)
    seed: int = 0  # the one data seed shared by every run
    activation: TeacherActivation = "relu"  # the teacher's hidden activation (paper: relu)

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _toy(self)  # validates the generator keys

    def build(self) -> Dataset:
        return _teacher_student(self.seed, _toy(self))


@sgdlab.register_data("eoss_regression")
@dataclass(frozen=True)
class EoSSRegression(DataConfig):
    """Small teacher-student regression for the Edge-of-Stochastic-Stability analogue (same
    generator as ``sharpest_directions``; defaults: d = 10, teacher 10 -> 32 -> 1, 256 examples)."""

    d: int = 10
    hidden: tuple[int, ...] = (32,)  # teacher widths
    n_train: int = 256
    n_test: int = 1000
    label_noise_var: float = 0.2  # variance of the Gaussian label noise on training labels
    seed: int = 0
    activation: TeacherActivation = "relu"  # the teacher's hidden activation

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _toy(self)  # validates the generator keys

    def build(self) -> Dataset:
        return _teacher_student(self.seed, _toy(self))
