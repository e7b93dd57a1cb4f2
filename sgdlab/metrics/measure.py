"""The one implementation of tracked curvature, shared by the engine and ``sgdlab.Monitor``.

Both the engine's :class:`~sgdlab.metrics.tracking.CurvatureTracker` (every run of a batched
experiment) and :class:`sgdlab.Monitor` (a user's own ``nn.Module`` and loop) measure through
these functions, so warm starts, measurement subsets, random streams and estimators exist once:

* :func:`subset_indices`: the fixed measurement subset, sorted ``randperm(n)[:size]`` of a CPU
  generator seeded with ``seed`` (default :data:`SUBSET_SEED`); all ``n`` examples when ``size``
  is None or >= n. Drawn once, the same subset at every measurement.
* :func:`measurement_generator`: a CPU generator keyed by ``(seed, STREAM_CURVATURE, step)``
  (Lanczos start vectors) or ``(seed, STREAM_CURVATURE, step, BATCH_SUBSTREAM)`` (Monte Carlo
  batches): reproducible, independent of training, and the batches independent of how many
  random vectors Lanczos drew (a warm or a cold start: resumed runs draw the same batches).
* :class:`WarmStart`: top-k eigenpairs by Lanczos, each call started from the previous call's
  k eigenvectors of the same key (a run). k >= 2 is advised: the top two eigenvalues cross during
  training and a one-vector warm start can converge to the second.
* :func:`batch_estimates`: mini-batch curvature (batch sharpness, GNI, ...) by Monte Carlo over
  batches drawn without replacement (a uniform b-subset: the law of one batch of SGD with
  distinct examples and of random reshuffling), stopped at relative standard error < rse_tol;
  a batch at least as large as the data is the single full batch (the exact value).
* :func:`dead_fraction`: the fraction of units whose mean |activation| is below
  :data:`DEAD_THRESHOLD` (Jastrzebski et al. 2018).
* :func:`stability_thresholds`: where GD / heavy-ball / Nesterov SGD with a given step size
  becomes unstable along an eigendirection of the loss.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.core.streams import BATCH_SUBSTREAM, STREAM_CURVATURE
from sgdlab.metrics.curvature import EigResult, batch_curvature, lanczos
from sgdlab.metrics.curvature.batch import (
    DEFAULT_MAX_BATCHES,
    DEFAULT_MIN_BATCHES,
    DEFAULT_RSE_TOL,
)

__all__ = [
    "BATCH_SUBSTREAM",
    "DEAD_THRESHOLD",
    "STREAM_CURVATURE",
    "SUBSET_SEED",
    "Thresholds",
    "WarmStart",
    "batch_estimates",
    "dead_fraction",
    "eig_names",
    "measurement_generator",
    "stability_thresholds",
    "subset_indices",
]

# Jastrzebski et al. (2018): a unit is dead if its mean |activation| over the examples is below this.
DEAD_THRESHOLD = 1e-3
# Seed of the fixed measurement subset (the same subset for every run and every measurement).
SUBSET_SEED = 0


def subset_indices(n: int, size: int | None, seed: int = SUBSET_SEED) -> torch.Tensor:
    """Sorted indices ``(min(size, n),)`` of the fixed measurement subset of ``n`` examples.

    size None (or >= n) = all examples ``arange(n)``; otherwise the first ``size`` entries of
    ``randperm(n)`` from a CPU generator seeded with ``seed``, sorted. Raises ConfigError for
    size < 1.
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(f"the measurement subset size must be a positive integer or None (all), got {size!r}")
    if size is None or size >= n:
        return torch.arange(n)
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=gen)[:size].sort().values


def measurement_generator(seed: int, step: int, *substream: int) -> torch.Generator:
    """CPU generator of the measurement of run ``seed`` at ``step``: stream STREAM_CURVATURE
    (``substream`` integers separate independent draws of one measurement)."""
    key = [int(seed), STREAM_CURVATURE, int(step), *map(int, substream)]
    state = np.random.SeedSequence(key).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def eig_names(k: int) -> list[str]:
    """Metric names of :meth:`WarmStart.measure`: sharpness, hessian_eig2..k, hessian_cond, curvature_hvps."""
    return ["sharpness", *[f"hessian_eig{i}" for i in range(2, k + 1)], "hessian_cond", "curvature_hvps"]


class WarmStart:
    """Top-k Hessian eigenpairs by Lanczos, warm-started per key from the previous call.

    ``vectors[key]`` holds the last ``(p, k)`` float64 eigenvectors (the only state kept between
    calls: no graph, no operator); ``total_hvps`` counts every product used.
    """

    def __init__(self):
        self.vectors: dict[Hashable, torch.Tensor] = {}
        self.total_hvps = 0

    def eigs(self, op, k: int, tol: float, generator: torch.Generator, key: Hashable = 0) -> EigResult:
        """k largest algebraic eigenpairs of ``op``, relative residual <= tol."""
        v0 = self.vectors.get(key)
        if v0 is not None and v0.shape[0] != op.dim:
            v0 = None  # the parameter count changed (a different model under the same key)
        res = lanczos(op, k, which="LA", tol=tol, v0=v0, generator=generator)
        self.vectors[key] = res.eigenvectors
        self.total_hvps += res.n_hvp
        return res

    def measure(self, op, k: int, tol: float, generator: torch.Generator, key: Hashable = 0) -> dict[str, float]:
        """{sharpness: lambda_1, hessian_eig{i}: lambda_i (i = 2..k), hessian_cond: lambda_1 / lambda_k,
        curvature_hvps: products used}."""
        res = self.eigs(op, k, tol, generator, key)
        ev = res.eigenvalues.tolist()
        out = {"sharpness": ev[0], "curvature_hvps": float(res.n_hvp),
               "hessian_cond": ev[0] / ev[-1] if ev[-1] != 0 else math.inf}
        out.update({f"hessian_eig{i}": ev[i - 1] for i in range(2, len(ev) + 1)})
        return out


def batch_estimates(model: torch.nn.Module, loss_fn, data: tuple[torch.Tensor, torch.Tensor],
                    batch_size: int | None, quantities: Sequence[str], *, generator: torch.Generator,
                    rse_tol: float = DEFAULT_RSE_TOL, max_batches: int = DEFAULT_MAX_BATCHES,
                    min_batches: int = DEFAULT_MIN_BATCHES, dtype: torch.dtype | None = None,
                    bn_mode: str | None = None) -> dict[str, float]:
    """Monte Carlo means of the mini-batch ``quantities`` over batches of ``batch_size`` drawn
    without replacement from ``data`` (module doc), with ``<q>_stderr`` (standard error of the
    mean, :mod:`~sgdlab.metrics.curvature.batch`) and ``<q>_converged`` (1.0 when the stopping rule
    stderr/|mean| < rse_tol was met, 0.0 when ``max_batches`` ran out), plus ``batch_draws``.

    batch_size None or >= n: the one full batch, the exact value (one draw).
    """
    n = len(data[0])
    full = batch_size is None or batch_size >= n
    kw = {"max_batches": 1, "min_batches": 1} if full else {
        "max_batches": max_batches, "min_batches": min(max_batches, min_batches)}
    est = batch_curvature(model, loss_fn, data, n if full else batch_size, quantities=tuple(quantities),
                          sampler="without_replacement", generator=generator, rse_tol=rse_tol, dtype=dtype,
                          bn_mode=bn_mode, **kw)
    out = {k: e.mean for k, e in est.items()}
    for k, e in est.items():
        out[f"{k}_stderr"] = 0.0 if full else e.stderr  # the full batch is the exact value
        out[f"{k}_converged"] = 1.0 if full or e.converged else 0.0
    out["batch_draws"] = float(next(iter(est.values())).n_batches)
    return out


def dead_fraction(acts: Sequence[torch.Tensor], threshold: float = DEAD_THRESHOLD) -> torch.Tensor:
    """Fraction of units with mean |activation| over the examples < ``threshold``.

    acts: per layer ``(..., n, h_l)`` (leading dims e.g. runs) -> ``(...)`` float64, over all
    ``sum_l h_l`` units together.
    """
    dead = torch.cat([(a.abs().mean(-2) < threshold).double() for a in acts], dim=-1)
    return dead.mean(-1)


@dataclass(frozen=True)
class Thresholds:
    """Sharpness above which the optimizer is unstable along that eigendirection (loss units).

    gd: 2 / lr (plain GD on the loss as passed). momentum: the optimizer's own edge: heavy ball
    (2 + 2 mu) / (lr (1 - dampening)), Nesterov (2 + 2 mu) / (lr (1 + 2 mu)). Both minus the
    coupled weight decay wd (the trained objective's Hessian is H + wd I).
    """

    lr: float
    momentum: float
    gd: float
    momentum_edge: float


def stability_thresholds(lr: float, momentum: float = 0.0, *, dampening: float = 0.0, nesterov: bool = False,
                         weight_decay: float = 0.0) -> Thresholds:
    """Edges of stability on a quadratic with curvature lambda (PyTorch's SGD convention).

    Heavy ball (b <- mu b + (1 - d) g, theta <- theta - lr b): x_{t+1} = (1 + mu - lr c lambda) x_t
    - mu x_{t-1} with c = 1 - d, stable iff lr c lambda < 2 + 2 mu. Nesterov (direction g + mu b,
    no dampening in PyTorch): the iteration matrix has trace 1 + mu - lr lambda (1 + mu) and
    determinant mu (1 - lr lambda), stable iff lr lambda (1 + 2 mu) < 2 + 2 mu (Jury). PyTorch
    ignores dampening without momentum. Coupled weight decay shifts lambda by +wd.
    """
    if nesterov and dampening:
        raise ConfigError("Nesterov momentum has no dampening (torch.optim.SGD refuses it)")
    if not lr > 0 or not math.isfinite(lr):
        raise ConfigError(f"the step size must be a positive number, got {lr!r}")
    mu = float(momentum)
    c = 1.0 - float(dampening) if mu else 1.0
    denom = lr * (1 + 2 * mu) if nesterov else lr * c
    edge = (2 + 2 * mu) / denom if denom > 0 else math.inf  # dampening 1: momentum never moves
    return Thresholds(lr=float(lr), momentum=mu, gd=2.0 / lr - weight_decay, momentum_edge=edge - weight_decay)
