"""Diagonal linear network h(x) = <x, u * v>, batched over runs."""

from __future__ import annotations

from dataclasses import dataclass

import sgdlab
from sgdlab.core._jit import call_kernel
from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig, Params
from sgdlab.models.explicit_init import check_init_values, init_vector

# Authors' toy code: rank of phi on 2d test inputs with relative threshold 1e-15.
AUTHORS_RANK_RTOL = 1e-15


class DiagonalNet(BatchedModel):
    """params: u, v of shape (R, d); beta = u * v; h(x) = <x, beta>.

    Init, the same for every seed: u_0 = init_scale * 1, v_0 = 0 (authors), or the explicit
    ``u0`` / ``v0`` (d,) when given. With u_0 = v_0 the updates of u and v are equal, so u = v
    holds exactly along GD / SGD / label-noise trajectories: beta = u * u, the quadratic
    parametrisation of label-noise analyses.
    """

    random_init = False
    # The SGD/GD/SDE kernels loop per run (a per-run BLAS call at most), the losses come from a
    # per-run loop (metrics.half_mse_loss), the rank from a per-run kernel, the rest are per-run
    # reductions: a run's bits never depend on the runs batched with it (its torch path does not
    # count: Engine.batch_invariant asks for the kernels).
    batch_invariant = True

    def __init__(self, d: int, init_scale: float, u0: torch.Tensor | None = None, v0: torch.Tensor | None = None):
        self.d = d
        self.init_scale = init_scale
        self.u0, self.v0 = u0, v0  # (d,) float64 or None
        self._rank = {}

    def init_params(self, seeds, dtype=None) -> Params:
        dtype = torch.float64 if dtype is None else dtype
        R = len(seeds)
        u = (torch.full((R, self.d), self.init_scale, dtype=dtype) if self.u0 is None
             else self.u0.to(dtype).expand(R, self.d).clone())
        v = torch.zeros(R, self.d, dtype=dtype) if self.v0 is None else self.v0.to(dtype).expand(R, self.d).clone()
        return {"u": u, "v": v}

    def forward(self, params, x):
        beta = params["u"] * params["v"]
        if x.dim() == 2:  # shared inputs (b, d) -> (R, b)
            return beta @ x.T
        return torch.einsum("rbd,rd->rb", x, beta)

    def loss_and_grad(self, params, x, y):
        """Closed form: r = X beta - y, L = mean(r^2)/2, g = mean_i r_i x_i, dL/du = g*v, dL/dv = g*u."""
        u, v = params["u"], params["v"]
        res = self.forward(params, x) - y
        loss = 0.5 * (res * res).mean(-1)
        if x.dim() == 2:
            g = res @ x / x.shape[0]
        else:
            g = torch.einsum("rb,rbd->rd", res, x) / x.shape[1]
        return loss, {"u": g * v, "v": g * u}

    def fused_sgd(self, params, data, idx, full, lr, t0, diverged, max_loss) -> bool:
        """Advance in place with the compiled kernel when possible; False if not applicable."""
        u, v = params["u"], params["v"]
        if u.device.type != "cpu" or not u.is_contiguous() or not v.is_contiguous():
            return False
        from sgdlab.studies.diag_net._kernel import diag_sgd_chunk

        call_kernel(diag_sgd_chunk, u.numpy(), v.numpy(), data.x_train.numpy(), data.y_train.numpy(),
                    idx, full, lr, t0, diverged, max_loss)
        return True

    def fused_sde(self, params, data, noise, noff, scale, lr, t0, diverged, max_loss) -> bool:
        """Constant-noise SDE steps with the compiled kernel (``optim.sde.SDERule.fused_advance``
        supplies the counter-based noise); False if not applicable."""
        u, v = params["u"], params["v"]
        if u.device.type != "cpu" or u.dtype != torch.float64 or not (u.is_contiguous() and v.is_contiguous()):
            return False
        from sgdlab.studies.diag_net._kernel import diag_sde_chunk

        call_kernel(diag_sde_chunk, u.numpy(), v.numpy(), data.x_train.numpy(), data.y_train.numpy(),
                    noise, noff, scale, lr, t0, diverged, max_loss)
        return True

    def metrics(self, params, data, cfg: MetricsConfig, names=None):
        """The diagonal-net measurements, (R,) each; only ``names`` (all if None) are computed."""
        from sgdlab.studies.diag_net import metrics as dm

        u, v = params["u"], params["v"]
        beta = u * v
        rtol = cfg.thresholds.rank_rtol if cfg.thresholds.rank_rtol is not None else AUTHORS_RANK_RTOL
        if rtol not in self._rank:
            # Authors: 2d test inputs, as many as parameters.
            self._rank[rtol] = dm.DiagJacobianRank(data.x_test[: 2 * self.d], rtol)
        table = {
            "train_loss": lambda: dm.half_mse_loss(beta, data.x_train, data.y_train),
            "test_loss": lambda: dm.half_mse_loss(beta, data.x_test, data.y_test),
            "l0": lambda: dm.l0(beta, cfg.thresholds.l0),
            "l0_robust": lambda: dm.l0(beta, cfg.thresholds.l0_robust),
            "l1": lambda: beta.abs().sum(-1),
            # only for data that marks its relevant features (extras["support"])
            **({"support_mass": lambda: dm.support_mass(beta, data.extras["support"])} if "support" in data.extras
               else {}),
            "param_norm": lambda: torch.sqrt((u * u).sum(-1) + (v * v).sum(-1)),
            "balancedness": lambda: dm.balancedness(u, v),
            "jacobian_rank": lambda: self._rank[rtol](u, v),
        }
        return {k: f() for k, f in table.items() if names is None or k in names}


@sgdlab.register_model("diagonal_net")
@dataclass(frozen=True)
class DiagonalNetConfig(ModelConfig):
    """Diagonal linear network f(x) = <u * v, x> (the paper's sparse-regression model)."""

    init_scale: float = 0.1  # u_0 = init_scale * 1 (authors) when u0 is not given
    # Explicit initial values, the same for every seed (no seed hunting): one number for every
    # coordinate or a list of d numbers. u0 replaces init_scale; v0 omitted = 0 (authors).
    # u0 = v0 = 1.0: beta = u * u, the quadratic parametrisation (u = v stays exact).
    u0: float | tuple[float, ...] | None = None
    v0: float | tuple[float, ...] | None = None

    def __post_init__(self):
        check(self.init_scale > 0, f"init_scale must be positive, got {self.init_scale}")
        for name in ("u0", "v0"):
            check_init_values(name, getattr(self, name))

    def check_data(self, data, source: str) -> None:
        """beta = u * v maps (n, d) features to scalar targets (n,): anything else is refused here,
        naming the data's source (sgdlab.data.checks)."""
        from sgdlab.core.errors import DataError

        if data.x_train.dim() != 2:
            raise DataError(f"{source}: 'x' has shape {tuple(data.x_train.shape)}; diagonal_net needs (n, d) features")
        if data.y_train.dim() != 1 or not data.y_train.is_floating_point():
            raise DataError(f"{source}: 'y' has shape {tuple(data.y_train.shape)} and dtype {data.y_train.dtype}; "
                            f"diagonal_net needs real scalar targets of shape (n,)")

    def build(self, data) -> DiagonalNet:
        d = data.x_train.shape[1]
        return DiagonalNet(d, self.init_scale, init_vector("model.u0", self.u0, d), init_vector("model.v0", self.v0, d))
