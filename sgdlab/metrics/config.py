"""Which measurements a run logs, and their parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import check


@dataclass(frozen=True)
class MetricsConfig:
    names: tuple[str, ...] = ()  # metrics to log; empty = every metric the model family defines
    rank_rtol: float | None = None  # Jacobian rank: singular value / largest > rank_rtol; None = model default
    l0_threshold: float = 1e-50  # ||u*v||_0 as in the authors' code (|beta_j| > 1e-50)
    l0_robust_threshold: float = 1e-3  # a threshold that does not count numerical dust
    sparsity_tau: float = 0.99  # feature sparsity: merge neurons with |corr| > tau

    def __post_init__(self):
        if self.rank_rtol is not None:
            check(0 < self.rank_rtol < 1, f"rank_rtol must be in (0, 1), got {self.rank_rtol}")
        check(self.l0_threshold >= 0 and self.l0_robust_threshold >= 0, "l0 thresholds must be >= 0")
        check(0 < self.sparsity_tau <= 1 and math.isfinite(self.sparsity_tau), "sparsity_tau must be in (0, 1]")
