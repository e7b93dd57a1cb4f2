"""Datasets of the related-findings experiments (docs/related-*.md).

* ``scalar_target``: one example x = 1, y = Phi. With the two-layer linear model of width d
  (``two_layer``, input dimension 1) the training loss is exactly 1/2 (a^T b - Phi)^2 with
  a = W[:, 0], b = v: the depth-2 linear network of Beneventano & Woodworth (2025).
* ``support_regression``: x ~ N(0, I_d) and a target that depends on the first ``support``
  coordinates only and is *not* linear in x (so a linear model keeps non-zero per-example
  residuals, the source of the SGD noise that removes irrelevant first-layer weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import sgdlab
from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.data.base import DataConfig, Dataset
from sgdlab.data.synthetic import InputDistribution, check_inputs, unit_inputs


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


@sgdlab.register_data("scalar_target")
@dataclass(frozen=True)
class ScalarTarget(DataConfig):
    """x_train = x_test = [[1]], y_train = y_test = [phi] (the same single example)."""

    phi: float = 1.0  # the target of a^T b; the global minima are the set a^T b = phi

    def __post_init__(self):
        check(np.isfinite(self.phi) and self.phi != 0, f"phi must be a finite non-zero number, got {self.phi}")

    def build(self) -> Dataset:
        x, y = _t([[1.0]]), _t([self.phi])
        return Dataset(x, y, x.clone(), y.clone(), {"phi": _t(self.phi)})


def support_target(x: np.ndarray, support: int, product: float) -> np.ndarray:
    """y = sum_{j < support} x_j + product * x_0 x_1, for x of shape (n, d): (n,).

    The product term is orthogonal (under N(0, I)) to every linear function of x, so the
    best linear predictor is sum_{j < support} x_j and its residual, product * x_0 x_1, has
    variance product^2: per-example residuals of a linear model stay non-zero.
    """
    return x[:, :support].sum(1) + product * x[:, 0] * x[:, 1]


@sgdlab.register_data("support_regression")
@dataclass(frozen=True)
class SupportRegression(DataConfig):
    """x ~ N(0, I_d); y = sum_{j<support} x_j + product x_0 x_1 (+ noise N(0, 1) on train labels).

    Draws, from ``default_rng(seed)`` in this order: x_train (n, d), x_test (n_test, d), label noise (n,).
    ``inputs`` / ``input_scale`` change the distribution of the input coordinates (any mean-0
    independent coordinates keep x_0 x_1 orthogonal to every linear function).
    extras: ``support`` (d,) bool, True on the first ``support`` coordinates.
    """

    n: int = 200  # training examples (n > d: no interpolation by a linear model)
    d: int = 20  # input dimension
    support: int = 2  # coordinates the target depends on (>= 2: the product uses x_0 and x_1)
    product: float = 1.0  # weight of the non-linear term x_0 x_1 (0 = linearly realizable)
    noise: float = 0.0  # std of Gaussian label noise on the training labels
    n_test: int = 1000  # test examples (noise-free labels)
    seed: int = 0  # the one data seed shared by every run
    # Distribution of every input coordinate, mean 0 and variance 1 before input_scale:
    # "gaussian" N(0, 1) (default), "uniform" U(-sqrt 3, sqrt 3), "rademacher" +-1.
    inputs: InputDistribution = "gaussian"
    input_scale: float = 1.0  # std of every input coordinate

    def __post_init__(self):
        check(self.n >= 1 and self.n_test >= 1, "n and n_test must be positive")
        check_inputs(self.input_scale)
        check(self.d >= 2, f"d must be >= 2 (the target uses x_0 and x_1), got {self.d}")
        check(2 <= self.support <= self.d, f"support must be in [2, d={self.d}], got {self.support}")
        check(self.noise >= 0 and np.isfinite(self.product), "noise must be >= 0 and product finite")
        check(self.product != 0 or self.noise > 0,
              "product = 0 and noise = 0 make the target linearly realizable: residuals vanish at the "
              "minimum and there is no SGD noise to study; set product or noise > 0")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    def build(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        x = self.input_scale * unit_inputs(rng, self.inputs, (self.n, self.d), rng.standard_normal)
        x_test = self.input_scale * unit_inputs(rng, self.inputs, (self.n_test, self.d), rng.standard_normal)
        noise = self.noise * rng.standard_normal(self.n) if self.noise > 0 else 0.0
        y = support_target(x, self.support, self.product) + noise
        mask = np.zeros(self.d, dtype=bool)
        mask[: self.support] = True
        return Dataset(_t(x), _t(y), _t(x_test), _t(support_target(x_test, self.support, self.product)),
                       {"support": torch.as_tensor(mask)})
