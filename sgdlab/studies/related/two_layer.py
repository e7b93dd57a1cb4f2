"""Two-layer network f(x) = v^T s(W x), s = identity ("linear") or ReLU, batched over runs.

Two uses (docs/related-*.md):

* depth-2 linear network of Beneventano & Woodworth (2025): input dimension 1 and the single
  example x = 1, y = Phi (data ``scalar_target``) give L = 1/2 (a^T b - Phi)^2 with a = W[:, 0],
  b = v in R^width. Metrics: residual eps = a^T b - Phi, norm lambda = |a|^2 + |b|^2, imbalance
  Q = |a|^2 - |b|^2 (|W|_F and |v| in general), sharpness = exact top Hessian eigenvalue;
* support identification (Beneventano, Pinto & Poggio 2024): data with ``extras["support"]``;
  metrics: norm of the first-layer columns W[:, j] of irrelevant / relevant coordinates j
  relative to initialization.

Initialization: every column of W has norm exactly ``w_scale`` (direction uniform on the sphere)
and v has norm exactly ``v_scale``. The initial column norms are therefore known without storing
the initial parameters, and lambda_0, Q_0 are the same for every seed (only directions vary).
Explicit initial values ``w0`` (W) and ``v0`` (v) replace the draw of their layer: every seed
starts there (with both given the init is deterministic: GD runs once, not once per seed), e.g.
``width = 1, w0 = 2.0, v0 = 0.1`` is the scalar network from ``(a_0, b_0) = (2, 0.1)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

import sgdlab
from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig, Params
from sgdlab.models.explicit_init import InitValues, check_init_values, init_tensor

# The dense Hessian (p x p, p = width * (d + 1)) is formed only for models this small; above,
# the "sharpness" metric is not logged (use sgdlab.metrics.curvature on larger models).
DENSE_HESSIAN_MAX_PARAMS = 256


def _sphere(rng: np.random.Generator, shape: tuple[int, ...], radius: float, axis: int) -> np.ndarray:
    """Gaussian draws normalized to norm ``radius`` along ``axis`` (uniform directions)."""
    g = rng.standard_normal(shape)
    return radius * g / np.linalg.norm(g, axis=axis, keepdims=True)


class TwoLayerNet(BatchedModel):
    """params: W (R, width, d), v (R, width); f(x) = v^T s(W x) for x (b, d) or (R, b, d) -> (R, b)."""

    def __init__(self, d: int, width: int, activation: str, w_scale: float, v_scale: float,
                 w0: torch.Tensor | None = None, v0: torch.Tensor | None = None):
        self.d, self.width, self.activation = d, width, activation
        self.w_scale, self.v_scale = w_scale, v_scale
        self.w0, self.v0 = w0, v0  # explicit (width, d) / (width,) float64 initial values, or None
        self.random_init = w0 is None or v0 is None
        self.n_params = width * (d + 1)

    def init_params(self, seeds, dtype=None) -> Params:
        """Per seed (an integer the engine derives from SeedSequence([seed, STREAM_INIT])):
        rng = default_rng(seed); W = columns of N(0, 1) (width, d) scaled to norm w_scale;
        then v = N(0, 1) (width,) scaled to norm v_scale. An explicit ``w0`` / ``v0`` replaces
        its layer (the draws still happen, so the other layer is the same as without it)."""
        dtype = torch.float64 if dtype is None else dtype
        Ws, vs = [], []
        for s in seeds:
            rng = np.random.default_rng(int(s))
            Ws.append(_sphere(rng, (self.width, self.d), self.w_scale, axis=0))
            vs.append(_sphere(rng, (self.width,), self.v_scale, axis=0))
        W = torch.as_tensor(np.stack(Ws), dtype=dtype)
        v = torch.as_tensor(np.stack(vs), dtype=dtype)
        if self.w0 is not None:
            W = self.w0.to(dtype).expand_as(W).clone()
        if self.v0 is not None:
            v = self.v0.to(dtype).expand_as(v).clone()
        return {"W": W, "v": v}

    def _hidden(self, W, x):
        """(pre-activation, activation), both (R, b, width)."""
        pre = torch.matmul(x, W.transpose(1, 2))  # (b, d) or (R, b, d) @ (R, d, width); matmul beats einsum here
        return pre, (torch.relu(pre) if self.activation == "relu" else pre)

    def forward(self, params, x):
        _, h = self._hidden(params["W"], x)
        return torch.matmul(h, params["v"].unsqueeze(-1)).squeeze(-1)

    def loss_and_grad(self, params, x, y):
        """Closed form, r = f - y (R, b), L = mean(r^2)/2:
        dL/dv = mean_i r_i s(W x_i); dL/dW = mean_i (r_i v * s'(W x_i)) x_i^T."""
        W, v = params["W"], params["v"]
        pre, h = self._hidden(W, x)
        r = torch.matmul(h, v.unsqueeze(-1)).squeeze(-1) - y  # (R, b)
        b = r.shape[-1]
        gv = torch.matmul(r.unsqueeze(1), h).squeeze(1) / b  # (R, width)
        delta = r.unsqueeze(-1) * v.unsqueeze(1)  # (R, b, width)
        if self.activation == "relu":
            delta = delta * (pre > 0).to(delta.dtype)
        gW = torch.matmul(delta.transpose(1, 2), x) / b  # (R, width, d)
        return 0.5 * (r * r).mean(-1), {"W": gW, "v": gv}

    def sharpness(self, params, x, y) -> torch.Tensor:
        """Exact lambda_max of the Hessian of the mean loss on (x, y) (shared (n, d), (n,)), per run: (R,).

        Dense p x p Hessian (p = width * (d + 1), theta = (vec W row-major, v)), then eigvalsh.
        Linear: H = G^T G / n + [[0, C], [C^T, 0]] with G_i = (vec(v x_i^T), W x_i) the gradient of
        f(x_i) and C[(j, l), m] = delta_jm c_l, c = mean_i r_i x_i (the only second derivative of f
        is d2f / dW_jl dv_j = x_l). ReLU: torch.func.hessian (the kink has measure zero)."""
        if self.activation == "linear":
            W, v = params["W"], params["v"]
            R, k, d = W.shape
            n = x.shape[0]
            r = self.forward(params, x) - y  # (R, n)
            gW = (v[:, None, :, None] * x[None, :, None, :]).reshape(R, n, k * d)
            G = torch.cat([gW, torch.matmul(x, W.transpose(1, 2))], dim=2)  # (R, n, p)
            H = torch.matmul(G.transpose(1, 2), G) / n
            c = torch.matmul(r, x) / n  # (R, d)
            C = (torch.eye(k, dtype=W.dtype, device=W.device)[None, :, None, :] * c[:, None, :, None]).reshape(R, k * d, k)
            H[:, : k * d, k * d:] += C
            H[:, k * d:, : k * d] += C.transpose(1, 2)
            return torch.linalg.eigvalsh(H)[:, -1]

        def one(flat):
            W = flat[: self.width * self.d].reshape(1, self.width, self.d)
            v = flat[self.width * self.d:].reshape(1, self.width)
            return self.loss({"W": W, "v": v}, x, y)[0]

        R = params["W"].shape[0]
        flat = torch.cat([params["W"].reshape(R, -1), params["v"].reshape(R, -1)], dim=1)
        H = torch.func.vmap(torch.func.hessian(one))(flat)
        return torch.linalg.eigvalsh(H)[:, -1]

    def metrics(self, params, data, cfg: MetricsConfig, names=None):
        """(R,) each; only ``names`` (all if None). sharpness: only when p <= DENSE_HESSIAN_MAX_PARAMS;
        irrelevant_norm / relevant_norm / beta_irrelevant: only when data has extras["support"]."""
        W, v = params["W"], params["v"]
        xtr, ytr = data.x_train, data.y_train
        w2, v2 = (W * W).sum((1, 2)), (v * v).sum(1)
        table = {
            "train_loss": lambda: self.loss(params, xtr, ytr),
            "test_loss": lambda: self.loss(params, data.x_test, data.y_test),
            "residual": lambda: (self.forward(params, xtr) - ytr).mean(-1),  # eps for the scalar target
            "norm_sq": lambda: w2 + v2,  # lambda = |a|^2 + |b|^2
            "imbalance": lambda: w2 - v2,  # Q = |a|^2 - |b|^2
            "a1": lambda: W[:, 0, 0],  # first coordinates: (a, b) itself for the scalar net (width 1)
            "b1": lambda: v[:, 0],
        }
        if self.n_params <= DENSE_HESSIAN_MAX_PARAMS:
            table["sharpness"] = lambda: self.sharpness(params, xtr, ytr)
        if "support" in data.extras:
            mask = data.extras["support"].to(torch.bool)
            col = W.norm(dim=1)  # (R, d) column norms; each is w_scale at init

            def rel(m):
                if self.w0 is not None:  # RMS column norm / its value at the explicit init
                    col0 = self.w0.to(col).norm(dim=0)[m]
                    return col[:, m].pow(2).mean(1).sqrt() / col0.pow(2).mean().sqrt()
                return col[:, m].pow(2).mean(1).sqrt() / self.w_scale  # RMS column norm / initial

            table["irrelevant_norm"] = lambda: rel(~mask)
            table["relevant_norm"] = lambda: rel(mask)
            if self.activation == "linear":  # end-to-end weights beta = W^T v on irrelevant coordinates
                table["beta_irrelevant"] = lambda: torch.einsum("rkd,rk->rd", W, v)[:, ~mask].norm(dim=1)
        return {k: f() for k, f in table.items() if names is None or k in names}


@sgdlab.register_model("two_layer")
@dataclass(frozen=True)
class TwoLayerConfig(ModelConfig):
    """Two-layer network f(x) = v . s(W x) with activation s (linear: the depth-2 linear net)."""

    width: int = 10  # hidden units (= d of a, b in R^d for the scalar target)
    activation: Literal["linear", "relu"] = "linear"
    w_scale: float = 1.0  # norm of every first-layer column W[:, j] at init (|a_0| for the scalar target)
    v_scale: float = 1.0  # norm of the second layer v at init (|b_0| for the scalar target)
    # Explicit initial W (width x d), the same for every seed, replacing the w_scale draw: one
    # number for every entry, a list of `width` rows of d numbers, or (d = 1) a list of `width`
    # numbers (the vector a = W[:, 0] of the depth-2 linear net). Scalar net: width = 1, w0 = 2.0.
    w0: InitValues = None
    # Explicit initial v (width,), replacing the v_scale draw: one number or `width` numbers.
    # With w0 and v0 both given the init is deterministic (a GD arm runs once, not per seed).
    v0: float | tuple[float, ...] | None = None

    def __post_init__(self):
        check(self.width >= 1, f"width must be >= 1, got {self.width}")
        check(self.w_scale > 0 and self.v_scale > 0,
              f"w_scale and v_scale must be positive, got {self.w_scale}, {self.v_scale}")
        check_init_values("w0", self.w0)
        check_init_values("v0", self.v0)

    def build(self, data) -> TwoLayerNet:
        check(data.y_train.dim() == 1, "two_layer needs scalar targets y of shape (n,)")
        d, k = data.x_train.shape[1], self.width
        w0 = init_tensor("model.w0", self.w0, (k, d), f"width = {k} rows of d = {d} inputs", column_ok=True)
        v0 = init_tensor("model.v0", self.v0, (k,), f"width = {k}")
        return TwoLayerNet(d, k, self.activation, self.w_scale, self.v_scale, w0, v0)
