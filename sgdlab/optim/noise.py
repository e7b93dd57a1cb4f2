"""Noisy gradient dynamics built from small pieces, on the batch-of-runs engine.

A *gradient rule* gives the step direction of every run: ``theta_{t+1} = theta_t - eta_t d_t``.
The plain rule is the model's mini-batch gradient. The rules here are one forward pass with
cached intermediates and one backward pass with a chosen output cotangent ``c (R, b)``:
``d = sum_i c_i grad_theta f(x_i)`` (a VJP), which gives

* the gradient of the batch loss with ``c_i = l'(f_i, y_i) / b``;
* label noise with ``c_i = l'(f_i, y_i + sigma xi_i) / b``, ``xi ~ N(0, I_b)`` fresh every step;
* the constant-noise SDE with ``c_i = l'(f_i, y_i) / n + sqrt(delta) xi_i`` (see ``optim.sde``);

and adds isotropic Gaussian noise ``sigma xi``, ``xi ~ N(0, I_p)``, to ``d`` after the backward
pass. Models may provide ``forward_with_vjp(params, x) -> (out, vjp)`` (the ReLU MLP does, by
hand); otherwise ``torch.func.vjp`` of the batched ``forward`` is used (runs are independent,
so one VJP of all runs' outputs gives every run its own gradient).

Noise levels (``sigma``, the SDE's ``delta``) are a number or a schedule table, like step sizes:
``sigma = {kind = "steps", values = [1.0, 0.0], milestones = [0.8]}`` is label noise for the
first 80% of the run and none after. A constant level takes exactly the arithmetic of a number.

Counter-based randomness: the noise of run ``seed`` at step ``t`` depends only on
``(seed, t)`` (and the noise's size): it comes from
``SeedSequence([seed, STREAM_NOISE, tag, block])`` with ``block = t // block_len``, like the
batch samplers, so chunking and resuming never change a run. ``tag`` separates the streams of
different noise sources of one optimizer.

The optimizer configs (``label_noise_sgd``, ``label_noise_gd``, ``noisy_gd``, and ``sde`` in
``optim.sde``) build an ``optim.config.Optimizer`` that carries their rule to the stepper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.streams import TAG_LABEL, TAG_PARAM, TAG_SDE  # noqa: F401  (re-exported)
from sgdlab.models.base import half_mse
from sgdlab.optim import samplers
from sgdlab.optim.base import Optimizer, OptimizerConfig
from sgdlab.optim.samplers import STREAM_NOISE
from sgdlab.optim.schedules import Schedule, ScheduleConfig

# Noise pre-drawn per (run, block): at most this many numbers (8 MiB of float64) and at most
# MAX_BLOCK steps; the block length depends only on the noise size, never on the chunking.
BLOCK_NUMBERS = 2**20
MAX_BLOCK = 1024


def block_len(dim: int) -> int:
    return int(max(1, min(MAX_BLOCK, BLOCK_NUMBERS // max(dim, 1))))


class NoiseStream:
    """Standard Gaussian noise ``(R, dim)`` per step, counter-based (see module docstring)."""

    def __init__(self, seeds, tag: int, dim: int, dtype=None, device="cpu"):
        dtype = torch.float64 if dtype is None else dtype
        self.seeds = [int(s) for s in seeds]
        self.tag, self.dim, self.dtype, self.device = tag, dim, dtype, device
        self.L = block_len(dim)
        self._blk, self._buf, self._np = None, None, None

    @staticmethod
    def draw(seed: int, tag: int, dim: int, blk: int, out: np.ndarray | None = None) -> np.ndarray:
        """The ``(block_len(dim), dim)`` float64 noise of one run's block ``blk`` (into ``out``)."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_NOISE, tag, blk]))
        return rng.standard_normal((block_len(dim), dim), out=out)

    def block(self, blk: int) -> np.ndarray:
        """The float64 noise ``(R, block_len, dim)`` of block ``blk`` (steps ``blk L .. blk L + L - 1``)."""
        if blk != self._blk:
            self._np = np.empty((len(self.seeds), self.L, self.dim))  # fresh: earlier views stay valid
            for r, s in enumerate(self.seeds):
                self.draw(s, self.tag, self.dim, blk, out=self._np[r])
            self._blk, self._buf = blk, None
        return self._np

    def at(self, t: int) -> torch.Tensor:
        blk = t // self.L
        self.block(blk)
        if self._buf is None:
            self._buf = torch.as_tensor(self._np, dtype=self.dtype, device=self.device)
        return self._buf[:, t - blk * self.L]


def loss_derivative(model, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d per-example loss / d output for any model (closed form for the MLP's losses)."""
    kind = getattr(model, "loss_kind", None)
    if kind is not None:
        from sgdlab.models.mlp import loss_derivative as closed

        return closed(kind, out, y)
    if getattr(model, "per_example_loss", None) is half_mse:
        return out - y
    with torch.enable_grad():
        o = out.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model.per_example_loss(o, y).sum(), o)
    return g


def forward_with_vjp(model, params, x):
    """``(out, vjp)``: the model's own hand-batched version when it has one, else torch.func."""
    if hasattr(model, "forward_with_vjp"):
        return model.forward_with_vjp(params, x)
    # Plain autograd on detached leaves: cheaper per step than torch.func.vjp for these small
    # models (torch.func's transform overhead dominates a small step).
    with torch.enable_grad():
        leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        out = model.forward(leaves, x)

    def vjp(cot):
        grads = torch.autograd.grad(out, list(leaves.values()), cot)
        return dict(zip(leaves, grads))

    return out.detach(), vjp


# A noise level as configured: a number, or a schedule table evaluated at every step.
NoiseLevel = float | ScheduleConfig


def build_level(level: NoiseLevel, total_steps: int) -> float | Schedule:
    """A number stays a number (the exact arithmetic of a constant level); a schedule table
    becomes its function ``t -> level``."""
    return level if isinstance(level, (int, float)) else level.build(total_steps)


def level_at(level: float | Schedule, t: int) -> float:
    """The level at step ``t`` of a :func:`build_level` result."""
    return level if isinstance(level, (int, float)) else float(level(t))


def is_noisy(level: float | Schedule) -> bool:
    """A scheduled level counts as noisy (every seed is run), a number when it is > 0."""
    return not isinstance(level, (int, float)) or level > 0


def check_level(name: str, level: NoiseLevel) -> None:
    """A number must be finite and >= 0; a schedule table validated itself (values >= 0)."""
    if isinstance(level, (int, float)):
        check(level >= 0 and np.isfinite(level), f"{name} must be a finite number >= 0, got {level}")


class GradientRule:
    """The step direction of a group of runs; ``stochastic`` if it draws noise.

    ``loss_and_grad(model, params, xb, yb, t)`` -> (clean mini-batch loss ``(R,)`` used by the
    divergence check, direction ``d`` like params); ``t`` is the absolute step (noise streams),
    ``local(t)`` the step within the rule's phase (schedules). ``bind(seeds, n, params)`` is called once per
    chunk with the group's run seeds before any step.
    """

    stochastic = False
    # First step of the rule's phase (Optimizer.starting_at): schedules are evaluated at
    # local(t) = t - start, noise streams at the absolute t.
    start = 0

    def local(self, t: int) -> int:
        return t - self.start

    def bind(self, seeds, n: int, params) -> None:
        self.seeds, self.n = seeds, n
        some = next(iter(params.values()))
        self.dtype, self.device = some.dtype, some.device
        self.streams: dict[int, NoiseStream] = {}

    def stream(self, tag: int, dim: int) -> NoiseStream:
        s = self.streams.get(tag)
        if s is None or s.dim != dim:
            s = self.streams[tag] = NoiseStream(self.seeds, tag, dim, self.dtype, self.device)
        return s

    def loss_and_grad(self, model, params, xb, yb, t: int):  # pragma: no cover - abstract
        raise NotImplementedError


class NoisyGradient(GradientRule):
    """``d = grad_theta mean_i l(f(x_i), y_i + label_sigma xi_i) + param_sigma zeta``.

    The loss reported (divergence check) uses the clean labels. ``label_sigma = param_sigma = 0``
    is the plain gradient through one VJP. Each sigma is a number or a schedule ``t -> sigma_t``
    (:func:`build_level`); a step with sigma_t = 0 draws no noise.
    """

    def __init__(self, label_sigma: float | Schedule = 0.0, param_sigma: float | Schedule = 0.0):
        self.label_sigma, self.param_sigma = label_sigma, param_sigma
        self.stochastic = is_noisy(label_sigma) or is_noisy(param_sigma)

    def loss_and_grad(self, model, params, xb, yb, t):
        out, vjp = forward_with_vjp(model, params, xb)
        loss = model.per_example_loss(out, yb).mean(-1)
        b = out.shape[1]
        label_sigma, param_sigma = level_at(self.label_sigma, self.local(t)), level_at(self.param_sigma, self.local(t))
        if label_sigma > 0:
            yb = yb + label_sigma * self.stream(TAG_LABEL, b).at(t)  # (R, b): fresh labels
        grads = vjp(loss_derivative(model, out, yb) / b)
        if param_sigma > 0:
            grads = add_isotropic(grads, param_sigma * self.stream(TAG_PARAM, n_params(params)).at(t))
        return loss, grads


def n_params(params) -> int:
    return sum(v[0].numel() for v in params.values())


def add_isotropic(grads: dict, noise: torch.Tensor) -> dict:
    """``grads + noise`` with ``noise (R, p)`` split over the params in dict order (C order)."""
    out, j = {}, 0
    for k, g in grads.items():
        m = g[0].numel()
        out[k] = g + noise[:, j: j + m].reshape(g.shape)
        j += m
    return out


def with_rule(sampler: samplers.Sampler, rule: GradientRule) -> Optimizer:
    """The optimizer runtime of a noisy rule; noisy rules make a run stochastic even with full
    batches (so every seed is run)."""
    return Optimizer(sampler, rule)


class RandomLabels(GradientRule):
    """Classification label noise: each label of the batch is replaced, with probability p_t,
    by a class drawn uniformly (p_t from its own schedule). Draws keyed by (seed, t)."""

    stochastic = True

    def __init__(self, p_schedule):
        self.p = p_schedule

    def loss_and_grad(self, model, params, xb, yb, t):
        p = float(self.p(self.local(t)))
        if p <= 0:
            return model.loss_and_grad(params, xb, yb)
        b = yb.shape[-1]
        u = self.stream(TAG_LABEL, 2 * b).at(t)  # (R, 2b) standard normal -> two uniforms
        flip = torch.special.ndtr(u[:, :b]) < p
        k = int(model.num_classes)
        new = (torch.special.ndtr(u[:, b:]) * k).long().clamp_(max=k - 1)
        yb2 = torch.where(flip.to(yb.device), new.to(yb.device), yb if yb.dim() == 2 else yb.expand_as(new))
        return model.loss_and_grad(params, xb, yb2)


# --------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class LabelNoiseSGD(OptimizerConfig):
    """SGD on labels ``y_i + sigma xi_i`` with fresh ``xi ~ N(0, 1)`` at every step."""

    kind: ClassVar[str] = "label_noise_sgd"
    # std of the label noise (label units): a number, or a schedule table evaluated per step,
    # e.g. {kind = "steps", values = [1.0, 0.0], milestones = [0.8]} (none after 80%)
    sigma: NoiseLevel = 0.1
    batch_size: int = 1
    replacement: bool = True  # as the sgd optimizer

    def __post_init__(self):
        check_level("sigma", self.sigma)
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")

    def build(self, n, total_steps):
        check(self.batch_size <= n, f"batch_size {self.batch_size} exceeds the {n} training examples")
        cls = samplers.WithReplacement if self.replacement else samplers.WithoutReplacement
        return with_rule(cls(n, self.batch_size), NoisyGradient(label_sigma=build_level(self.sigma, total_steps)))


@dataclass(frozen=True)
class LabelNoiseGD(OptimizerConfig):
    """Full-batch GD on labels ``y + sigma xi`` with fresh ``xi ~ N(0, I_n)`` at every step."""

    kind: ClassVar[str] = "label_noise_gd"
    sigma: NoiseLevel = 0.1  # std of the label noise: a number or a schedule table (as label_noise_sgd)

    def __post_init__(self):
        check_level("sigma", self.sigma)

    def build(self, n, total_steps):
        return with_rule(samplers.FullBatch(n), NoisyGradient(label_sigma=build_level(self.sigma, total_steps)))


@dataclass(frozen=True)
class NoisyGD(OptimizerConfig):
    """Full-batch GD with isotropic Gaussian gradient noise:
    ``theta <- theta - eta_t (grad L + sigma xi_t)``, ``xi_t ~ N(0, I_p)`` (the noise scales with
    the step like SGD's; per-step parameter noise std is ``eta_t sigma``)."""

    kind: ClassVar[str] = "noisy_gd"
    sigma: NoiseLevel = 0.01  # std of the gradient noise: a number or a schedule table

    def __post_init__(self):
        check_level("sigma", self.sigma)

    def build(self, n, total_steps):
        return with_rule(samplers.FullBatch(n), NoisyGradient(param_sigma=build_level(self.sigma, total_steps)))
