"""Synthetic regression tasks of the diagonal-linear-network experiments."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.data.base import DataConfig, Dataset

# Per-coordinate input distributions, each of mean 0 and variance 1 (times input_scale^2).
InputDistribution = Literal["gaussian", "uniform", "rademacher"]
UNIFORM_HALF_WIDTH = math.sqrt(3.0)  # U(-sqrt 3, sqrt 3) has variance 1
DEFAULT_SUPPORT = 20  # r of the paper's main experiment (n = 80, d = 200)
# Seeds numpy's legacy RandomState takes (the authors' generator): [0, 2**32).
LEGACY_SEEDS = 2**32


def unit_inputs(rng, kind: str, shape: tuple[int, int],
                gaussian: Callable[[tuple[int, int]], np.ndarray]) -> np.ndarray:
    """Independent mean-0, variance-1 coordinates of ``shape``: ``gaussian(shape)`` (the task's
    own Gaussian draw, kept for bit-for-bit reproducibility), ``U(-sqrt 3, sqrt 3)`` or +-1 with
    probability 1/2. ``rng`` is a legacy ``RandomState`` or a ``Generator`` (both have ``uniform``
    and ``random``)."""
    draws = {
        "gaussian": lambda: gaussian(shape),
        "uniform": lambda: rng.uniform(-UNIFORM_HALF_WIDTH, UNIFORM_HALF_WIDTH, shape),
        "rademacher": lambda: np.where(rng.random(shape) < 0.5, -1.0, 1.0),
    }
    return draws[kind]()


def check_inputs(scale: float) -> None:
    check(math.isfinite(scale) and scale > 0, f"input_scale must be a positive number, got {scale}")


def sparse_regression(n: int, d: int, r: int, n_test: int, rng: np.random.Generator | np.random.RandomState,
                      noise: float = 0.0, inputs: str = "gaussian", input_scale: float = 1.0,
                      support: tuple[int, ...] = (), values: tuple[float, ...] = (),
                      beta: tuple[float, ...] = ()) -> Dataset:
    """Sparse noiseless regression of Andriushchenko et al. (2023), diagonal-net section.

    x ~ N(0, I_d); beta* has its first r coordinates |N(0, 1)|, the rest 0, then
    beta* /= ||beta*||_2; y = X beta* (+ noise * N(0, 1) on the training labels only).
    Draws in the authors' order (X, X_test, beta*) with multivariate_normal: a legacy
    ``np.random.RandomState(seed)`` reproduces their data bit for bit (checked against the
    outputs saved in their notebooks: GD eta=0.03, n=20, d=30, seed 0 -> test loss 0.0149096).
    Returns float64 tensors: x_train (n, d), y_train (n,), x_test (n_test, d), y_test (n_test,),
    extras beta_star (d,) and support (d,) bool.

    Generator choices (the defaults are the authors'): ``inputs`` / ``input_scale``, the
    distribution of every coordinate of x (:func:`unit_inputs`) times its std; ``support``, the
    indices of beta*'s non-zeros instead of the first r (values still drawn |N(0, 1)| and
    normalised); ``support`` with ``values``, beta* exactly (no draw); ``beta``, the whole vector
    exactly (no draw). The label noise is drawn after beta*.
    """
    gauss = lambda shape: rng.multivariate_normal(np.zeros(d), np.eye(d), shape[0])  # the authors' draw
    x = input_scale * unit_inputs(rng, inputs, (n, d), gauss)
    x_test = input_scale * unit_inputs(rng, inputs, (n_test, d), gauss)
    if beta:
        beta = np.asarray(beta, dtype=np.float64)
    elif values:
        beta = np.zeros(d)
        beta[list(support)] = values
    else:
        beta = rng.standard_normal(d)
        keep = np.zeros(d, dtype=bool)
        keep[list(support) if support else slice(0, r)] = True
        beta[~keep] = 0
        beta = np.abs(beta) / np.linalg.norm(beta)
    y = x @ beta + (noise * rng.standard_normal(n) if noise > 0 else 0.0)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    return Dataset(t(x), t(y), t(x_test), t(x_test @ beta),
                   {"beta_star": t(beta), "support": torch.as_tensor(beta != 0)})


@dataclass(frozen=True)
class SparseRegression(DataConfig):
    """Sparse linear regression y = <beta*, x> (+ noise) with an r-sparse beta* (the paper's diag-net data)."""

    kind: ClassVar[str] = "sparse_regression"
    n: int = 80  # training examples
    d: int = 200  # input dimension
    # support size of beta* (its first r coordinates); default 20, or the number of non-zeros of
    # `support` / `beta` when those are given (then r may be omitted; if given it must agree)
    r: int | None = None
    n_test: int = 1000  # test examples (paper: 1000)
    noise: float = 0.0  # std of label noise on training labels (paper: none)
    seed: int = 0  # the one fixed data seed shared by every run (authors: 0)
    # "authors": numpy's legacy RandomState(seed), the authors' exact data; "pcg64": numpy's
    # default_rng(seed), same distribution from the modern generator.
    generator: Literal["authors", "pcg64"] = "authors"
    # Distribution of every input coordinate, mean 0 and variance 1 before input_scale:
    # "gaussian" N(0, 1) (authors), "uniform" U(-sqrt 3, sqrt 3), "rademacher" +-1.
    inputs: InputDistribution = "gaussian"
    input_scale: float = 1.0  # std of every input coordinate (x = input_scale * unit-variance draw)
    # Indices of beta*'s non-zero coordinates instead of the first r, e.g. [0, 5, 17]; without
    # `values` these are drawn |N(0, 1)| and beta* normalised to norm 1, as the authors'.
    support: tuple[int, ...] = ()
    values: tuple[float, ...] = ()  # beta* on `support`, exactly (no draw, no normalisation)
    beta: tuple[float, ...] = ()  # the whole target beta* (d numbers), exactly; excludes support/values

    def __post_init__(self):
        check(self.n >= 1 and self.d >= 1 and self.n_test >= 1, "n, d and n_test must be positive")
        check(self.noise >= 0, f"noise must be >= 0, got {self.noise}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        check(self.generator != "authors" or self.seed < LEGACY_SEEDS,
              f"seed must be below 2**32 with generator = 'authors' (numpy's legacy RandomState), got {self.seed}")
        check_inputs(self.input_scale)
        check(not (self.beta and (self.support or self.values)), "give either beta or support (+ values), not both")
        check(not self.values or len(self.values) == len(self.support),
              f"values needs one number per support index ({len(self.support)}), got {len(self.values)}")
        nonzero = None
        if self.beta:
            check(len(self.beta) == self.d, f"beta needs d = {self.d} numbers, got {len(self.beta)}")
            check(all(math.isfinite(b) for b in self.beta), "beta must be finite numbers")
            nonzero = sum(b != 0 for b in self.beta)
            check(nonzero >= 1, "beta must have at least one non-zero coordinate")
        if self.support:
            check(all(0 <= i < self.d for i in self.support), f"support indices must be in [0, d = {self.d}), "
                  f"got {list(self.support)}")
            check(len(set(self.support)) == len(self.support),
                  f"support indices must be distinct, got {list(self.support)}")
            check(all(math.isfinite(v) and v != 0 for v in self.values),
                  f"values must be finite non-zero numbers, got {list(self.values)}")
            nonzero = len(self.support)
        if self.r is None:
            object.__setattr__(self, "r", nonzero if nonzero is not None else DEFAULT_SUPPORT)
        check(nonzero is None or self.r == nonzero,
              f"r = {self.r} disagrees with the {nonzero} non-zeros of {'beta' if self.beta else 'support'}; omit r")
        check(1 <= self.r <= self.d, f"r must be in [1, d={self.d}], got {self.r}")

    def build(self) -> Dataset:
        rng = np.random.RandomState(self.seed) if self.generator == "authors" else np.random.default_rng(self.seed)
        return sparse_regression(self.n, self.d, self.r, self.n_test, rng, self.noise, self.inputs, self.input_scale,
                                 self.support, self.values, self.beta)

