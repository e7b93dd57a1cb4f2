"""Which measurements a run logs, and their parameters, nested by concern::

    [metrics]
    names = ["train_loss", "jacobian_rank"]   # empty = every metric the model family defines
    curvature = {every = 10, k = 2}           # Hessian tracking (off: every = 0)
    batch = {quantities = ["batch_sharpness"], rse_tol = 0.005}
    thresholds = {rank_rtol = 1e-4, sparsity_tau = 0.95}

The flat keys of earlier releases (``metrics.curvature_every``, ``metrics.batch_curvature``,
``metrics.rank_rtol``, ...; in TOML files, ``--set`` and the config.toml of run directories written
before) are still read: they are mapped to the nested keys (:data:`FLAT_KEYS`) with a
DeprecationWarning. Metric names (``names``) are those of :mod:`sgdlab.metrics.registry`;
deprecated names are mapped to the current ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import warnings
from dataclasses import dataclass, field
from typing import Literal

from sgdlab.core.config import check
from sgdlab.core.errors import SgdlabDeprecationWarning

__all__ = ["FLAT_KEYS", "BatchConfig", "CurvatureConfig", "MetricsConfig", "ThresholdsConfig"]


@dataclass(frozen=True)
class CurvatureConfig:
    """Curvature tracking (sgdlab.metrics.tracking, docs/curvature.md): Hessian of each run's own
    training loss. Off by default: a measurement costs tens of Hessian-vector products per run."""

    every: int = 0  # measure at every n-th eval step (and the last one); 0 = off
    k: int = 2  # top-k eigenvalues by warm-started Lanczos; >= 2 since the top two cross
    tol: float = 1e-4  # Lanczos: relative residual bound of every tracked eigenvalue
    subset: int = 0  # fixed random subset of training examples for the Hessian; 0 = all
    dtype: Literal["float64", "float32"] = "float64"  # dtype of the functional copy

    def __post_init__(self):
        check(self.every >= 0, f"curvature.every must be >= 0 (0 = off), got {self.every}")
        check(self.k >= 2, f"curvature.k must be >= 2 (the top two eigenvalues cross, and a warm start tracking "
                           f"only one can lock onto the second), got {self.k}")
        check(0 < self.tol < 1, f"curvature.tol must be in (0, 1), got {self.tol}")
        check(self.subset >= 0, f"curvature.subset must be >= 0 (0 = all examples), got {self.subset}")


@dataclass(frozen=True)
class BatchConfig:
    """Mini-batch curvature by Monte Carlo over batches drawn like the run's sampler, measured at
    the curvature steps (names from metrics.quantities.QUANTITIES: batch_sharpness,
    batch_sharpness_ratio, minibs, gni, step_sharpness)."""

    quantities: tuple[str, ...] = ()
    rse_tol: float = 0.005  # stop at relative standard error < this (Andreyev & Beneventano)
    max_batches: int = 500  # ... or after this many batches (their cap)

    def __post_init__(self):
        from sgdlab.metrics.quantities import QUANTITIES

        bad = [q for q in self.quantities if q not in QUANTITIES]
        check(not bad, f"unknown batch.quantities {bad}; allowed: {', '.join(sorted(QUANTITIES))}")
        check(0 <= self.rse_tol < 1, f"batch.rse_tol must be in [0, 1), got {self.rse_tol}")
        check(self.max_batches >= 1, f"batch.max_batches must be >= 1, got {self.max_batches}")


@dataclass(frozen=True)
class ThresholdsConfig:
    """Thresholds of the model families' own measurements."""

    rank_rtol: float | None = None  # Jacobian rank: singular value / largest > rank_rtol; None = model default
    l0: float = 1e-50  # ||u*v||_0 as in the authors' code (|beta_j| > 1e-50)
    l0_robust: float = 1e-3  # a threshold that does not count numerical dust
    sparsity_tau: float = 0.99  # feature sparsity: merge neurons with |corr| > tau

    def __post_init__(self):
        if self.rank_rtol is not None:
            check(0 < self.rank_rtol < 1, f"thresholds.rank_rtol must be in (0, 1), got {self.rank_rtol}")
        check(self.l0 >= 0 and self.l0_robust >= 0, "thresholds.l0 and thresholds.l0_robust must be >= 0")
        check(0 < self.sparsity_tau <= 1 and math.isfinite(self.sparsity_tau),
              "thresholds.sparsity_tau must be in (0, 1]")


# Flat key of earlier releases -> (table, key) it moved to.
FLAT_KEYS = {
    "curvature_every": ("curvature", "every"), "curvature_k": ("curvature", "k"),
    "curvature_tol": ("curvature", "tol"), "curvature_subset": ("curvature", "subset"),
    "curvature_dtype": ("curvature", "dtype"), "batch_curvature": ("batch", "quantities"),
    "batch_rse_tol": ("batch", "rse_tol"), "batch_max_batches": ("batch", "max_batches"),
    "rank_rtol": ("thresholds", "rank_rtol"), "l0_threshold": ("thresholds", "l0"),
    "l0_robust_threshold": ("thresholds", "l0_robust"), "sparsity_tau": ("thresholds", "sparsity_tau"),
}


def _flat(key: str):
    table, sub = FLAT_KEYS[key]

    def get(self):
        warnings.warn(f"MetricsConfig.{key} is deprecated: use .{table}.{sub}", SgdlabDeprecationWarning, stacklevel=2)
        return getattr(getattr(self, table), sub)

    return property(get, doc=f"Deprecated: ``{table}.{sub}``.")


_EIG = re.compile(r"hessian_eig(\d+)$")
CURVATURE_NAMES = ("sharpness", "hessian_cond", "curvature_hvps", "dead_fraction")  # and hessian_eig{i}


def curvature_advice(name: str, cfg: MetricsConfig) -> str:
    """Why a curvature quantity ``name`` is not logged under ``cfg`` and which key logs it ("" when
    ``name`` is no curvature quantity): the tail of the unknown-metric error."""
    from sgdlab.metrics.quantities import QUANTITIES

    if name in QUANTITIES and name not in cfg.batch.quantities:
        return (f"; {name!r} is mini-batch curvature: list it in metrics.batch.quantities (with "
                f"metrics.curvature.every > 0)")
    eig = _EIG.match(name)
    if name in CURVATURE_NAMES or name in QUANTITIES or eig:
        if cfg.curvature.every <= 0:
            return (f"; {name!r} is measured by curvature tracking, which is off: set metrics.curvature.every "
                    f"to N > 0 (every N-th evaluation step)")
        if eig and not 2 <= int(eig.group(1)) <= cfg.curvature.k:
            return f"; curvature tracking measures hessian_eig2..{cfg.curvature.k}: raise metrics.curvature.k"
        return ""
    return ("; curvature quantities (sharpness, hessian_eig2, hessian_cond, ...) are logged with "
            "metrics.curvature.every > 0")


@dataclass(frozen=True)
class MetricsConfig:
    names: tuple[str, ...] = ()  # metrics to log; empty = every metric the model family defines
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)

    @classmethod
    def prepare_dict(cls, data: dict) -> dict:
        """Map the flat keys of earlier releases to the nested tables (one DeprecationWarning)."""
        return _nest(data, "metrics", 5)

    def __post_init__(self):
        from sgdlab.metrics.registry import METRIC_SPECS

        object.__setattr__(self, "names", METRIC_SPECS.canonical_names(self.names, "metrics.names"))
        check(not self.batch.quantities or self.curvature.every > 0,
              "batch.quantities are measured at curvature steps: set metrics.curvature.every > 0")

    # Flat attributes of earlier releases, read-only (deprecated).
    curvature_every = _flat("curvature_every")
    curvature_k = _flat("curvature_k")
    curvature_tol = _flat("curvature_tol")
    curvature_subset = _flat("curvature_subset")
    curvature_dtype = _flat("curvature_dtype")
    batch_curvature = _flat("batch_curvature")
    batch_rse_tol = _flat("batch_rse_tol")
    batch_max_batches = _flat("batch_max_batches")
    rank_rtol = _flat("rank_rtol")
    l0_threshold = _flat("l0_threshold")
    l0_robust_threshold = _flat("l0_robust_threshold")
    sparsity_tau = _flat("sparsity_tau")


def _nest(kw: dict, where: str, stacklevel: int) -> dict:
    """``kw`` (keyword arguments or a table) with flat keys moved into their nested tables (given
    as dicts or config objects), warning once."""
    flat = [k for k in kw if k in FLAT_KEYS]
    if not flat:
        return kw
    kw = dict(kw)
    for key in flat:
        table, sub = FLAT_KEYS[key]
        nested = kw.get(table)
        if dataclasses.is_dataclass(nested):
            nested = {f.name: getattr(nested, f.name) for f in dataclasses.fields(nested)}
        nested = dict(nested) if isinstance(nested, dict) else {}
        nested[sub] = kw.pop(key)  # the flat key is the later assignment (e.g. --set)
        kw[table] = nested
    moved = ", ".join(f"{k} -> {'.'.join(FLAT_KEYS[k])}" for k in flat)
    warnings.warn(f"{where}: deprecated flat keys, use the nested ones: {moved}", SgdlabDeprecationWarning,
                  stacklevel=stacklevel)
    return kw


_dataclass_init = MetricsConfig.__init__


def _init(self, *args, **kw):
    """The dataclass __init__, also taking the flat keywords of earlier releases (deprecated)."""
    kw = _nest(kw, "MetricsConfig", 3)
    types = {"curvature": CurvatureConfig, "batch": BatchConfig, "thresholds": ThresholdsConfig}
    for name, tp in types.items():
        if isinstance(kw.get(name), dict):
            kw[name] = tp(**kw[name])
    _dataclass_init(self, *args, **kw)


_init.__doc__ = _dataclass_init.__doc__
_init.__signature__ = inspect.signature(_dataclass_init)
MetricsConfig.__init__ = _init
