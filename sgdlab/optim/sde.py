"""The constant-noise SDE of Andriushchenko et al. (2023), Euler-Maruyama, for any model.

    d theta = -grad L(theta) dt + sqrt(eta delta) phi_theta(X)^T dB,     B: n-dim Brownian motion,

``phi_theta(X) (n, p)`` stacks the per-example output gradients ``grad_theta f(x_i)``. With time
step ``dt = eta_t`` (the step size of the SGD run it models, so ``eta = eta_t``) one step is

    theta <- theta - eta_t (grad L(theta) + sqrt(delta) phi^T xi),   xi ~ N(0, I_n),

i.e. per-step noise covariance ``eta_t^2 delta phi^T phi`` (= ``eta delta phi^T phi dt``). Both
terms are one VJP of the outputs: ``grad L + sqrt(delta) phi^T xi = phi^T c`` with cotangent
``c_i = l'(f_i, y_i) / n + sqrt(delta) xi_i``, so a step costs one forward and one backward
pass of the full batch, like GD, and ``phi`` is never formed.

Choosing delta
--------------
``delta`` is set by the user. To model a given SGD run, match the noise covariances: for batch
size ``b`` drawn uniformly, SGD's gradient noise is ``~ (1 / (b n)) sum_i l'_i^2 grad f_i grad f_i^T``
and, where the residuals are comparable across examples (the stabilized regime),
``~ (mean_i l'_i^2 / (b n)) phi^T phi``. Hence

    delta = mean_i l'_i^2 / (b n),   l' = 2 r (loss "mse", L = mean r^2):  delta = 4 L / (b n);
                                     l' = r  (half_mse, L = mean r^2 / 2): delta = 2 L / (b n),

with ``L`` the stabilized training loss of the SGD run (the level it bounces at before the
step size is decayed). :func:`delta_from_loss` computes it and :func:`delta_from_run` reads
``L`` (median over seeds and a window of the run) from a finished run of the matching SGD arm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from sgdlab.core.config import check
from sgdlab.optim import samplers
from sgdlab.optim.base import OptimizerConfig
from sgdlab.optim.noise import (
    TAG_SDE,
    GradientRule,
    NoiseLevel,
    build_level,
    check_level,
    forward_with_vjp,
    level_at,
    loss_derivative,
    with_rule,
)
from sgdlab.optim.schedules import Schedule

# mean_i l'_i^2 / L for the two squared losses (see the module docstring).
DERIVATIVE_SQ_PER_LOSS = {"mse": 4.0, "half_mse": 2.0}


def delta_from_loss(loss_level: float, n: int, batch_size: int = 1,
                    loss: Literal["mse", "half_mse"] = "mse") -> float:
    """delta matching SGD (batch ``batch_size``) stabilized at training loss ``loss_level``."""
    check(loss in DERIVATIVE_SQ_PER_LOSS, f"loss must be one of {sorted(DERIVATIVE_SQ_PER_LOSS)}, got {loss!r}")
    return DERIVATIVE_SQ_PER_LOSS[loss] * loss_level / (batch_size * n)


def delta_from_run(result, arm: str, window: tuple[float, float] = (0.2, 0.5), n: int | None = None,
                   batch_size: int = 1, loss: Literal["mse", "half_mse"] = "mse") -> float:
    """delta from a finished run (``sgdlab.load_run`` result): the train loss of each of
    ``arm``'s runs averaged over evaluation steps in ``[window[0] T, window[1] T]`` (choose a
    window inside the large-step phase, before any decay; the noise covariance is linear in the
    loss, so its time average is what matters, spikes included), median over the runs, then
    :func:`delta_from_loss`."""
    steps = np.asarray(result.steps)
    T = steps.max()
    sel = (steps >= window[0] * T) & (steps <= window[1] * T)
    check(sel.any(), f"no evaluation step inside window {window} of the run")
    with np.errstate(all="ignore"):
        level = float(np.nanmedian(np.nanmean(result.metrics["train_loss"][sel][:, result.arm(arm)], axis=0)))
    if n is None:
        n = result.config.data.build().n
    return delta_from_loss(level, n, batch_size, loss)


class SDERule(GradientRule):
    """Euler-Maruyama direction ``grad L + sqrt(delta_t) phi^T xi`` via one VJP (full batch).
    ``delta`` is a number or a schedule ``t -> delta_t``; noise is applied at steps
    ``t < noise_steps`` (None: always) where delta_t > 0, plain GD otherwise."""

    stochastic = True

    def __init__(self, delta: float | Schedule, noise_steps: int | None = None):
        # A number keeps its square root precomputed (the arithmetic of a constant level).
        self.scale = math.sqrt(delta) if isinstance(delta, (int, float)) else None
        self.delta = delta
        self.noise_steps = noise_steps

    def scales(self, t0: int, t1: int) -> np.ndarray:
        """sqrt(delta_t) at the global steps ``t0 .. t1 - 1`` (float64), 0.0 where the noise is off:
        ``noise_steps`` and the schedule both count from the phase start. One vectorised schedule
        evaluation per call (the fused path calls it once per chunk)."""
        local = np.arange(t0, t1) - self.start
        if self.scale is not None:
            out = np.full(local.shape, self.scale)
        else:
            delta = np.broadcast_to(np.asarray(self.delta(local), dtype=np.float64), local.shape)
            out = np.sqrt(np.where(delta > 0, delta, 0.0))
        if self.noise_steps is not None:
            out[local >= self.noise_steps] = 0.0
        return out

    def scale_at(self, t: int) -> float:
        """sqrt(delta_t) at global step ``t``: :meth:`scales` of one step, in scalar arithmetic
        (the torch path calls it every step; a few numpy array ops would cost more than it)."""
        if self.noise_steps is not None and self.local(t) >= self.noise_steps:
            return 0.0
        if self.scale is not None:
            return self.scale
        delta_t = level_at(self.delta, self.local(t))
        return math.sqrt(delta_t) if delta_t > 0 else 0.0

    def loss_and_grad(self, model, params, xb, yb, t):
        out, vjp = forward_with_vjp(model, params, xb)
        loss = model.per_example_loss(out, yb).mean(-1)
        n = out.shape[1]
        cot = loss_derivative(model, out, yb) / n
        scale = self.scale_at(t)
        if scale > 0:  # noise off (or delta = 0): no draws, like the fused path
            cot = cot + scale * self.stream(TAG_SDE, n).at(t)
        return loss, vjp(cot)

    def fused_advance(self, model, params, data, lr, t0, diverged, max_loss) -> bool:
        """Steps t0 .. t0 + T - 1 with the model's compiled SDE kernel (``model.fused_sde``), one
        call per noise block, fed the same counter-based draws as :meth:`loss_and_grad`;
        False (nothing done) if the model has no kernel for these parameters."""
        fused = getattr(model, "fused_sde", None)
        if fused is None:
            return False
        n, T = data.n, lr.shape[1]
        stream = self.stream(TAG_SDE, n)
        scales = self.scales(t0, t0 + T)
        t = t0
        while t < t0 + T:
            blk = t // stream.L
            end = min((blk + 1) * stream.L, t0 + T)
            scale = np.ascontiguousarray(scales[t - t0: end - t0])
            if scale.any():
                noise, noff = stream.block(blk), t - blk * stream.L
            else:  # noise switched off: no draws, like the torch path
                noise, noff = np.zeros((len(self.seeds), 0, n)), 0
            if not fused(params, data, noise, noff, scale, np.ascontiguousarray(lr[:, t - t0: end - t0]), t, diverged,
                         max_loss):
                if t == t0:
                    return False
                raise RuntimeError("fused_sde refused a later block of the same chunk")  # pragma: no cover
            t = end
        return True


@dataclass(frozen=True)
class ConstantNoiseSDE(OptimizerConfig):
    """The constant-noise SDE (module docstring); ``delta`` from :func:`delta_from_loss`."""

    kind: ClassVar[str] = "sde"
    # noise level (loss units / n; see delta_from_loss): a number, or a schedule table evaluated
    # per step, e.g. {kind = "steps", values = [1e-3, 0.0], milestones = [0.5]}
    delta: NoiseLevel = 1e-3
    # noise only for steps t < noise_steps (e.g. the large-step phase; counted from the phase start)
    noise_steps: int | None = None

    def __post_init__(self):
        check_level("delta", self.delta)
        check(self.noise_steps is None or self.noise_steps >= 0,
              f"noise_steps must be >= 0 or omitted, got {self.noise_steps}")

    def build(self, n, total_steps):
        return with_rule(samplers.FullBatch(n), SDERule(build_level(self.delta, total_steps), self.noise_steps))
