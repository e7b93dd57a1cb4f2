"""Linear model f(x) = <theta, x>: the finite-sum quadratic L = 1/(2n) sum_i (x_i^T theta - y_i)^2.

The exact minimizer theta* (least squares on the training set) is known, so the metric
``dist_opt`` = |theta - theta*|^2 measures how far an SGD iterate sits from the fixed point of
GD: at constant step SGD keeps fluctuating around it (per-example gradients are non-zero there
when the labels are noisy), and this is what separates sampling with and without replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import sgdlab
from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig, Params


class LinearModel(BatchedModel):
    """params: theta (R, d). Init: theta_0 = init_scale * N(0, I_d) from default_rng(seed)
    (all zeros when init_scale = 0, the same for every seed)."""

    def __init__(self, d: int, init_scale: float, theta_star: torch.Tensor):
        self.d, self.init_scale = d, init_scale
        self.random_init = init_scale > 0
        self.theta_star = theta_star  # (d,)

    def init_params(self, seeds, dtype=None) -> Params:
        dtype = torch.float64 if dtype is None else dtype
        th = np.stack([self.init_scale * np.random.default_rng(int(s)).standard_normal(self.d) for s in seeds])
        return {"theta": torch.as_tensor(th, dtype=dtype)}

    def forward(self, params, x):
        th = params["theta"]
        return th @ x.T if x.dim() == 2 else torch.einsum("rbd,rd->rb", x, th)

    def loss_and_grad(self, params, x, y):
        """r = X theta - y; L = mean(r^2)/2; dL/dtheta = mean_i r_i x_i."""
        r = self.forward(params, x) - y
        g = r @ x / x.shape[0] if x.dim() == 2 else torch.einsum("rb,rbd->rd", r, x) / x.shape[1]
        return 0.5 * (r * r).mean(-1), {"theta": g}

    def metrics(self, params, data, cfg: MetricsConfig, names=None):
        th = params["theta"]
        star = self.theta_star.to(th)
        table = {
            "train_loss": lambda: self.loss(params, data.x_train, data.y_train),
            "test_loss": lambda: self.loss(params, data.x_test, data.y_test),
            "dist_opt": lambda: ((th - star) ** 2).sum(1),  # |theta - theta*|^2
        }
        return {k: f() for k, f in table.items() if names is None or k in names}


@sgdlab.register_model("linear")
@dataclass(frozen=True)
class LinearConfig(ModelConfig):
    """Linear model f(x) = <w, x> (quadratic loss: the replacement and support experiments)."""

    init_scale: float = 0.0  # theta_0 ~ init_scale * N(0, I); 0: every run starts at theta = 0

    def __post_init__(self):
        check(self.init_scale >= 0, f"init_scale must be >= 0, got {self.init_scale}")

    def build(self, data) -> LinearModel:
        check(data.y_train.dim() == 1, "linear needs scalar targets y of shape (n,)")
        x, y = data.x_train.double(), data.y_train.double()
        theta_star = torch.linalg.lstsq(x, y.unsqueeze(1), driver="gelsd").solution[:, 0]
        return LinearModel(x.shape[1], self.init_scale, theta_star)
