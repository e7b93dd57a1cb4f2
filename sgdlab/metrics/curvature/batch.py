"""Mini-batch curvature (Edge of Stochastic Stability), by Monte Carlo over random batches.

For a batch B (indices into the dataset), g_B = grad L_B and H_B = Hessian of L_B, the mean loss
over B; g = grad L and H = Hessian of the full loss L (mean over the dataset). All vectors (p,).

    batch_sharpness        BS  = E_B[ g_B^T H_B g_B / ||g_B||^2 ]
    batch_sharpness_ratio      = E_B[ g_B^T H_B g_B ] / E_B[ ||g_B||^2 ]
    minibs                 MiniBS = E_B[ lambda_max(H_B) ]        (Lanczos per batch, warm-started)
    gni                    GNI = E_B[ g_B^T H g_B ] / ||g||^2
    step_sharpness             = E_B[ g_B^T H g_B / ||g_B||^2 ]   (curvature of the *full* loss
                               along the SGD step -eta g_B: L(theta - eta g_B) ~ L - eta g^T g_B
                               + eta^2/2 ||g_B||^2 * this; sgdlab's name, see docs/curvature.md)

Batches are drawn iid with an explicit generator: ``"without_replacement"`` (the default, the
estimator of Andreyev & Beneventano) = a uniform b-subset, b distinct examples (the law of one
batch of a random-reshuffling epoch and of SGD that draws distinct examples; batches are still
drawn independently of each other, so the standard error is valid); ``"with_replacement"`` = b iid
uniform indices (duplicates possible); or any callable ``draw(generator) -> LongTensor (b,)``. Sampling stops when every requested
estimate has relative standard error stderr/|mean| < rse_tol (default 0.005, at most 500 batches,
the rule of Andreyev & Beneventano) after at least ``min_batches``.

Standard errors: sample std / sqrt(n) for means; the delta method for the ratio of means,
se(R) = std(a_B - R b_B) / (sqrt(n) |mean b|); ||g||^2 in GNI is exact (no error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.metrics.curvature._common import (
    check_positive_float,
    check_positive_int,
    make_generator,
)
from sgdlab.metrics.curvature.hvp import (
    BNMode,
    HessianOperator,
    HVPMethod,
    LossFn,
    _check_batch,
)
from sgdlab.metrics.curvature.lanczos import lanczos
from sgdlab.metrics.quantities import QUANTITIES

__all__ = [
    "QUANTITIES",
    "MCEstimate",
    "batch_curvature",
    "batch_sharpness",
    "gradient_noise_interaction",
    "mini_batch_sharpness",
    "step_sharpness",
]

Sampler = Literal["with_replacement", "without_replacement"] | Callable[[torch.Generator], torch.Tensor]
_SAMPLERS = ("with_replacement", "without_replacement")
_NEEDS_FULL_H = {"gni", "step_sharpness"}
DEFAULT_RSE_TOL = 0.005
DEFAULT_MAX_BATCHES = 500
# A standard error from fewer draws is itself too noisy to trust as a stopping signal.
DEFAULT_MIN_BATCHES = 10
# Per-batch lambda_max(H_B) for MiniBS: its Monte Carlo error (rse 5e-3) dwarfs 1e-3 solves.
DEFAULT_MINIBS_TOL = 1e-3


@dataclass(frozen=True)
class MCEstimate:
    """A Monte Carlo estimate: mean, standard error, and how many batches it took."""

    name: str
    definition: str
    mean: float
    stderr: float
    n_batches: int
    converged: bool  # rse < rse_tol reached before max_batches
    rse_tol: float
    loss_reduction: str

    @property
    def rse(self) -> float:
        return self.stderr / abs(self.mean) if self.mean != 0 else math.inf


def _make_draw(sampler, batch_size, n: int) -> Callable[[torch.Generator], torch.Tensor]:
    if callable(sampler):
        if batch_size is not None:
            raise ConfigError("batch_size is set by a callable sampler; pass batch_size=None with it")
        return sampler
    if sampler not in _SAMPLERS:
        raise ConfigError(choices_message("sampler", sampler, _SAMPLERS) + " or a callable draw(generator)")
    if batch_size is None:
        raise ConfigError(f"sampler={sampler!r} needs batch_size")
    check_positive_int("batch_size", batch_size)
    if sampler == "without_replacement":
        if batch_size > n:
            raise ConfigError(f"batch_size={batch_size} > n={n} examples: impossible without replacement")
        return lambda gen: torch.randperm(n, generator=gen, device=gen.device)[:batch_size]
    return lambda gen: torch.randint(0, n, (batch_size,), generator=gen, device=gen.device)


def _check_indices(idx, n: int) -> torch.Tensor:
    if not isinstance(idx, torch.Tensor) or idx.ndim != 1 or len(idx) == 0 or idx.is_floating_point():
        raise ConfigError(f"the sampler must return a non-empty 1-D integer index tensor, got {idx!r}")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ConfigError(f"the sampler returned indices outside [0, {n})")
    return idx


class _Stats:
    """Running samples of one quantity and its estimator."""

    def __init__(self, name: str, denom: float = 1.0):
        self.name, self.a, self.b, self.denom = name, [], [], denom

    def add(self, a: float, b: float = 1.0) -> None:
        self.a.append(a)
        self.b.append(b)

    def estimate(self) -> tuple[float, float]:
        a = torch.tensor(self.a, dtype=torch.float64)
        n = len(a)
        if self.name == "batch_sharpness_ratio":
            b = torch.tensor(self.b, dtype=torch.float64)
            r = float(a.mean() / b.mean())
            se = float((a - r * b).std(correction=1)) / (math.sqrt(n) * abs(float(b.mean()))) if n > 1 else math.inf
            return r, se
        se = float(a.std(correction=1)) / math.sqrt(n) if n > 1 else math.inf
        return float(a.mean()) / self.denom, se / abs(self.denom)


def batch_curvature(model: torch.nn.Module, loss_fn: LossFn, data: tuple[torch.Tensor, torch.Tensor],
                    batch_size: int | None = None, *, quantities: Sequence[str] = ("batch_sharpness",),
                    sampler: Sampler = "without_replacement", generator: torch.Generator | None = None,
                    seed: int = 0, rse_tol: float = DEFAULT_RSE_TOL, max_batches: int = DEFAULT_MAX_BATCHES,
                    min_batches: int = DEFAULT_MIN_BATCHES, bn_mode: BNMode | None = None,
                    dtype: torch.dtype | None = None, method: HVPMethod = "auto",
                    chunk_size: int | None = None, minibs_tol: float = DEFAULT_MINIBS_TOL,
                    ) -> dict[str, MCEstimate]:
    """Monte Carlo estimates of the requested ``quantities`` (module doc), sharing the batches.

    data: the whole training set ``(X, Y)``, indexed by the sampler. chunk_size bounds memory of
    the full-data passes (gni, step_sharpness); a batch is processed whole (with
    bn_mode="train" it is also the BatchNorm batch, as in training).
    Returns {name: MCEstimate} in the order requested.
    """
    x_all, y_all = _check_batch(data, "data")
    n = len(x_all)
    if isinstance(quantities, str) or not quantities:
        raise ConfigError(f"quantities must be a non-empty list of names from {sorted(QUANTITIES)}")
    for q in quantities:
        if q not in QUANTITIES:
            raise ConfigError(choices_message("quantity", q, QUANTITIES))
    rse_tol = check_positive_float("rse_tol", rse_tol, allow_zero=True)
    check_positive_int("max_batches", max_batches)
    check_positive_int("min_batches", min_batches)
    if min_batches > max_batches:
        raise ConfigError(f"min_batches={min_batches} exceeds max_batches={max_batches}")
    draw = _make_draw(sampler, batch_size, n)
    gen = make_generator(generator, seed)

    full = HessianOperator(model, loss_fn, (x_all, y_all), bn_mode=bn_mode, dtype=dtype,
                           chunk_size=chunk_size, method=method)
    grad_norm2 = 1.0
    if "gni" in quantities:
        g_full = full.gradient().double()
        grad_norm2 = float(g_full @ g_full)
        if grad_norm2 == 0.0:
            raise ConfigError("the full gradient is zero: GNI = E[g_B^T H g_B]/|grad L|^2 is undefined")
    stats = {q: _Stats(q, grad_norm2 if q == "gni" else 1.0) for q in quantities}
    prev_vec = None
    n_done, converged = 0, False
    while n_done < max_batches:
        idx = _check_indices(draw(gen), n)
        op_b = full.with_data((x_all[idx.to(x_all.device)], y_all[idx.to(y_all.device)]))
        g, hg = op_b.gradient_and_hvp()
        g, hg = g.double(), hg.double()
        gg = float(g @ g)
        needs_norm = {"batch_sharpness", "step_sharpness"} & set(quantities)
        if gg == 0.0 and needs_norm:
            raise FloatingPointError("a mini-batch gradient is exactly zero: g_B^T H g_B / |g_B|^2 is undefined")
        if "batch_sharpness" in stats:
            stats["batch_sharpness"].add(float(g @ hg) / gg)
        if "batch_sharpness_ratio" in stats:
            stats["batch_sharpness_ratio"].add(float(g @ hg), gg)
        if _NEEDS_FULL_H & set(quantities):
            ghg_full = float(g @ full.matvec(g.to(full.dtype)).double())
            if "gni" in stats:
                stats["gni"].add(ghg_full)
            if "step_sharpness" in stats:
                stats["step_sharpness"].add(ghg_full / gg)
        if "minibs" in stats:
            res = lanczos(op_b, 1, tol=minibs_tol, v0=prev_vec, generator=gen)
            prev_vec = res.eigenvectors
            stats["minibs"].add(res.top)
        n_done += 1
        if n_done >= min_batches:
            ests = [s.estimate() for s in stats.values()]
            if all(se <= rse_tol * abs(m) for m, se in ests):
                converged = True
                break
    out = {}
    for q, s in stats.items():
        m, se = s.estimate()
        out[q] = MCEstimate(name=q, definition=QUANTITIES[q], mean=m, stderr=se, n_batches=n_done,
                            converged=converged, rse_tol=rse_tol, loss_reduction=full.loss_reduction)
    return out


def batch_sharpness(model, loss_fn, data, batch_size=None, *, ratio: bool = False, **kw) -> MCEstimate:
    """BS = E_B[g_B^T H_B g_B / |g_B|^2]; ``ratio=True``: E_B[g_B^T H_B g_B] / E_B[|g_B|^2]."""
    name = "batch_sharpness_ratio" if ratio else "batch_sharpness"
    return batch_curvature(model, loss_fn, data, batch_size, quantities=(name,), **kw)[name]


def mini_batch_sharpness(model, loss_fn, data, batch_size=None, **kw) -> MCEstimate:
    """MiniBS = E_B[lambda_max(H_B)] (>= lambda_max(H) by convexity of lambda_max)."""
    return batch_curvature(model, loss_fn, data, batch_size, quantities=("minibs",), **kw)["minibs"]


def gradient_noise_interaction(model, loss_fn, data, batch_size=None, **kw) -> MCEstimate:
    """GNI = E_B[g_B^T H g_B] / |grad L|^2 with the full-data Hessian H."""
    return batch_curvature(model, loss_fn, data, batch_size, quantities=("gni",), **kw)["gni"]


def step_sharpness(model, loss_fn, data, batch_size=None, **kw) -> MCEstimate:
    """E_B[g_B^T H g_B / |g_B|^2]: full-loss curvature along the mini-batch step direction."""
    return batch_curvature(model, loss_fn, data, batch_size, quantities=("step_sharpness",), **kw)["step_sharpness"]
