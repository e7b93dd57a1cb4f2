"""Which measurements a run logs, and their parameters."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ..config import check


_EIG = re.compile(r"hessian_eig(\d+)$")
CURVATURE_NAMES = ("sharpness", "hessian_cond", "curvature_hvps", "dead_fraction")  # and hessian_eig{i}


def curvature_advice(name: str, cfg: MetricsConfig) -> str:
    """Why a curvature quantity ``name`` is not logged under ``cfg`` and which key logs it ("" when
    ``name`` is no curvature quantity): the tail of the unknown-metric error."""
    from .quantities import QUANTITIES

    if name in QUANTITIES and name not in cfg.batch_curvature:
        return (f"; {name!r} is mini-batch curvature: list it in metrics.batch_curvature (with "
                f"metrics.curvature_every > 0)")
    eig = _EIG.match(name)
    if name in CURVATURE_NAMES or name in QUANTITIES or eig:
        if cfg.curvature_every <= 0:
            return (f"; {name!r} is measured by curvature tracking, which is off: set metrics.curvature_every "
                    f"to N > 0 (every N-th evaluation step)")
        if eig and not 2 <= int(eig.group(1)) <= cfg.curvature_k:
            return f"; curvature tracking measures hessian_eig2..{cfg.curvature_k}: raise metrics.curvature_k"
        return ""
    return ("; curvature quantities (sharpness, hessian_eig2, hessian_cond, ...) are logged with "
            "metrics.curvature_every > 0")


@dataclass(frozen=True)
class MetricsConfig:
    names: tuple[str, ...] = ()  # metrics to log; empty = every metric the model family defines
    rank_rtol: float | None = None  # Jacobian rank: singular value / largest > rank_rtol; None = model default
    l0_threshold: float = 1e-50  # ||u*v||_0 as in the authors' code (|beta_j| > 1e-50)
    l0_robust_threshold: float = 1e-3  # a threshold that does not count numerical dust
    sparsity_tau: float = 0.99  # feature sparsity: merge neurons with |corr| > tau
    # Curvature tracking (sgdlab.metrics.tracking, docs/curvature.md): Hessian of each run's own
    # training loss. Off by default: a measurement costs tens of Hessian-vector products per run.
    curvature_every: int = 0  # measure at every n-th eval step (and the last one); 0 = off
    curvature_k: int = 2  # top-k eigenvalues by warm-started Lanczos; >= 2 since the top two cross
    curvature_tol: float = 1e-4  # Lanczos: relative residual bound of every tracked eigenvalue
    curvature_subset: int = 0  # fixed random subset of training examples for the Hessian; 0 = all
    curvature_dtype: Literal["float64", "float32"] = "float64"  # dtype of the functional copy
    # Mini-batch curvature by Monte Carlo over batches drawn like the run's sampler (names from
    # metrics.curvature.QUANTITIES: batch_sharpness, batch_sharpness_ratio, minibs, gni, step_sharpness).
    batch_curvature: tuple[str, ...] = ()
    batch_rse_tol: float = 0.005  # stop at relative standard error < this (Andreyev & Beneventano)
    batch_max_batches: int = 500  # ... or after this many batches (their cap)

    def __post_init__(self):
        if self.rank_rtol is not None:
            check(0 < self.rank_rtol < 1, f"rank_rtol must be in (0, 1), got {self.rank_rtol}")
        check(self.l0_threshold >= 0 and self.l0_robust_threshold >= 0, "l0 thresholds must be >= 0")
        check(0 < self.sparsity_tau <= 1 and math.isfinite(self.sparsity_tau), "sparsity_tau must be in (0, 1]")
        check(self.curvature_every >= 0, f"curvature_every must be >= 0 (0 = off), got {self.curvature_every}")
        check(self.curvature_k >= 2, f"curvature_k must be >= 2 (the top two eigenvalues cross, and a warm "
                                     f"start tracking only one can lock onto the second), got {self.curvature_k}")
        check(0 < self.curvature_tol < 1, f"curvature_tol must be in (0, 1), got {self.curvature_tol}")
        check(self.curvature_subset >= 0, f"curvature_subset must be >= 0 (0 = all examples), got {self.curvature_subset}")
        from .quantities import QUANTITIES

        bad = [q for q in self.batch_curvature if q not in QUANTITIES]
        check(not bad, f"unknown batch_curvature quantities {bad}; allowed: {', '.join(sorted(QUANTITIES))}")
        check(not self.batch_curvature or self.curvature_every > 0,
              "batch_curvature is measured at curvature steps: set curvature_every > 0")
        check(0 <= self.batch_rse_tol < 1, f"batch_rse_tol must be in [0, 1), got {self.batch_rse_tol}")
        check(self.batch_max_batches >= 1, f"batch_max_batches must be >= 1, got {self.batch_max_batches}")
