"""Synthetic regression tasks of the diagonal-linear-network experiments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch

from ..config import check
from .base import DataConfig, Dataset


def sparse_regression(n: int, d: int, r: int, n_test: int, rng: np.random.Generator | np.random.RandomState,
                      noise: float = 0.0) -> Dataset:
    """Sparse noiseless regression of Andriushchenko et al. (2023), diagonal-net section.

    x ~ N(0, I_d); beta* has its first r coordinates |N(0, 1)|, the rest 0, then
    beta* /= ||beta*||_2; y = X beta* (+ noise * N(0, 1) on the training labels only).
    Draws in the authors' order (X, X_test, beta*) with multivariate_normal: a legacy
    ``np.random.RandomState(seed)`` reproduces their data bit for bit (checked against the
    outputs saved in their notebooks: GD eta=0.03, n=20, d=30, seed 0 -> test loss 0.0149096).
    Returns float64 tensors: x_train (n, d), y_train (n,), x_test (n_test, d), y_test (n_test,),
    extras beta_star (d,) and support (d,) bool.
    """
    x = rng.multivariate_normal(np.zeros(d), np.eye(d), n)
    x_test = rng.multivariate_normal(np.zeros(d), np.eye(d), n_test)
    beta = rng.standard_normal(d)
    beta[r:] = 0
    beta = np.abs(beta) / np.linalg.norm(beta)
    y = x @ beta + (noise * rng.standard_normal(n) if noise > 0 else 0.0)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    return Dataset(t(x), t(y), t(x_test), t(x_test @ beta),
                   {"beta_star": t(beta), "support": torch.as_tensor(beta != 0)})


@dataclass(frozen=True)
class SparseRegression(DataConfig):
    kind: ClassVar[str] = "sparse_regression"
    n: int = 80  # training examples
    d: int = 200  # input dimension
    r: int = 20  # support size of beta*
    n_test: int = 1000  # test examples (paper: 1000)
    noise: float = 0.0  # std of label noise on training labels (paper: none)
    seed: int = 0  # the one fixed data seed shared by every run (authors: 0)
    # "authors": numpy's legacy RandomState(seed), the authors' exact data; "pcg64": numpy's
    # default_rng(seed), same distribution from the modern generator.
    generator: Literal["authors", "pcg64"] = "authors"

    def __post_init__(self):
        check(self.n >= 1 and self.d >= 1 and self.n_test >= 1, "n, d and n_test must be positive")
        check(1 <= self.r <= self.d, f"r must be in [1, d={self.d}], got {self.r}")
        check(self.noise >= 0, f"noise must be >= 0, got {self.noise}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    def build(self) -> Dataset:
        rng = np.random.RandomState(self.seed) if self.generator == "authors" else np.random.default_rng(self.seed)
        return sparse_regression(self.n, self.d, self.r, self.n_test, rng, self.noise)
