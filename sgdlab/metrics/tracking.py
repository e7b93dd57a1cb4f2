"""Curvature tracked during training: any :class:`~sgdlab.models.base.BatchedModel`, every run.

The curvature library (:mod:`sgdlab.metrics.curvature`) works on ``torch.nn.Module`` losses.
:class:`RunLoss` exposes *one run* of a batched model as such a module whose output **is** that
run's training loss on the examples it is given (their indices)::

    RunLoss(model, params_r, X, Y, weight_decay)(idx) = model.loss(params_r[None], X[idx], Y[idx])[0]
                                                        + weight_decay / 2 * |theta|^2

with ``params_r`` the run's parameters (no run dimension), ``idx`` a LongTensor ``(b,)`` and the
loss function of the library the identity. ``model.loss`` is the mean over the batch of the model's
per-example loss, the loss its ``loss_and_grad`` differentiates (tests check gradient equality),
so eigenvalues are on the scale SGD/GD with step eta sees and compare directly with 2/eta: the
MLP's ``half_mse`` is (f - y)^2 / 2 (EoS), ``mse`` (f - y)^2 (EoSS), ``cross_entropy`` the mean
cross-entropy. Weight decay is part of the trained objective (the step subtracts
``lr * wd * theta``), so it is included: every Hessian eigenvalue is shifted by +wd. Gradient
noise rules (``optim.noise``: label noise, SDE) are *not* part of the loss: the clean loss's
curvature is measured.

:class:`CurvatureTracker` (owned by the engine, built from ``MetricsConfig``) measures, at every
``curvature.every``-th evaluation step and at the last one, for every live run (metrics ``(R,)``):

* ``sharpness`` = lambda_1 and ``hessian_eig{i}`` = lambda_i, i = 2..k, of the Hessian of the full
  training loss (or of a fixed random subset of ``curvature.subset`` examples, the same for every
  run), by Lanczos with relative residual <= ``curvature.tol``, warm-started from the run's
  previous k eigenvectors (k >= 2: the top two cross during training; a one-vector warm start
  can converge to the second); ``hessian_cond`` = lambda_1 / lambda_k; ``curvature_hvps`` = the
  Hessian-vector products that call used;
* ``dead_fraction`` (models with ``activations``): fraction of hidden neurons whose mean
  |activation| over the tracked examples is < ``DEAD_THRESHOLD`` (Jastrzebski et al. 2018);
* ``batch.quantities`` (``batch_sharpness``, ``minibs``, ``gni``, ...): Monte Carlo over
  batches drawn with the run's batch law. sgdlab's SGD samplers (with replacement = b *distinct*
  examples per step, independently across steps; random reshuffling = one uniform b-subset per
  step marginally) both give uniform b-subsets, the library's ``"without_replacement"`` law;
  full-batch runs have a single batch (the exact value). Draws use a generator keyed by
  (run seed, ``STREAM_CURVATURE``, step, ``BATCH_SUBSTREAM``): reproducible, independent of the
  training batches and of the Lanczos start (a resumed run draws the same batches).

Other evaluation steps get NaN for these metrics. The warm-start vectors live in the tracker; a
resumed run starts cold (same values up to the tolerance, a few more products).

Warm starts, the subset rule, the random stream and the estimators are those of
:mod:`sgdlab.metrics.measure`, which ``sgdlab.Monitor`` uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.curvature import HessianOperator
from sgdlab.metrics.measure import (
    BATCH_SUBSTREAM,
    DEAD_THRESHOLD,
    STREAM_CURVATURE,
    WarmStart,
    batch_estimates,
    dead_fraction,
    eig_names,
    measurement_generator,
    subset_indices,
)

__all__ = ["DEAD_THRESHOLD", "STREAM_CURVATURE", "CurvatureTracker", "RunLoss", "run_operator"]


def _identity_loss(out: torch.Tensor, _idx: torch.Tensor) -> torch.Tensor:
    return out


class RunLoss(torch.nn.Module):
    """One run of a batched model as an ``nn.Module``: ``forward(idx)`` = its training loss.

    params: the run's tensors without the run dimension (copied into ``nn.Parameter``s, in the
    model's key order); x, y: the training set ``(n, d)``, ``(n, ...)``; ``forward(idx (b,))``
    -> scalar mean loss over examples ``idx`` plus ``weight_decay / 2 * |theta|^2``. Use it with
    :data:`LOSS_FN` (the identity) and data ``(idx, idx)`` in the curvature library.
    """

    def __init__(self, model, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 weight_decay: float = 0.0):
        super().__init__()
        self._model, self._x, self._y, self.weight_decay = model, x, y, float(weight_decay)
        trainable = model.trainable(params) if hasattr(model, "trainable") else list(params)
        # nn.Module parameter names cannot contain "." (deep nets' "stage1.0.conv1.weight")
        self._names = {k: k.replace(".", "__") for k in trainable}
        for k, name in self._names.items():
            self.register_parameter(name, torch.nn.Parameter(params[k].detach().clone()))
        # non-trainable state (e.g. BatchNorm running statistics) enters as constants
        self._fixed = {k: v.detach() for k, v in params.items() if k not in self._names}

    def params(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, name) for k, name in self._names.items()}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        p = self.params()
        dt = next(iter(p.values())).dtype
        fixed = {k: (v.to(dt) if v.is_floating_point() else v).unsqueeze(0) for k, v in self._fixed.items()}
        idx = idx.to(self._x.device)
        x = self._x[idx]
        y = self._y[idx]
        x = x.to(dt) if x.is_floating_point() else x
        y = y.to(dt) if y.is_floating_point() else y
        loss = self._model.loss({**fixed, **{k: v.unsqueeze(0) for k, v in p.items()}}, x, y)[0]
        if self.weight_decay:
            loss = loss + 0.5 * self.weight_decay * sum((v * v).sum() for v in p.values())
        return loss


LOSS_FN = _identity_loss


def run_operator(model, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
                 idx: torch.Tensor | None = None, weight_decay: float = 0.0,
                 dtype: torch.dtype | None = torch.float64) -> HessianOperator:
    """Hessian of one run's training loss on examples ``idx`` (default all), a HessianOperator.

    Flat parameter order: the model's key order, each tensor in C order (``RunLoss``).
    """
    idx = torch.arange(len(x)) if idx is None else idx
    return HessianOperator(RunLoss(model, params, x, y, weight_decay), LOSS_FN, (idx, idx), dtype=dtype)


@dataclass(frozen=True)
class RunBatching:
    """How one run draws batches: ``batch_size`` None = full batch."""

    index: int
    seed: int
    batch_size: int | None
    weight_decay: float


class CurvatureTracker:
    """Per-run curvature at evaluation steps with warm starts (module doc).

    runs: one :class:`RunBatching` per run index 0..R-1; eval_steps: the engine's evaluation
    steps (measurements at every ``cfg.curvature.every``-th and at the last; other steps NaN).
    """

    def __init__(self, model, data, cfg: MetricsConfig, runs: list[RunBatching], eval_steps):
        self.model, self.data, self.cfg, self.runs = model, data, cfg, runs
        self.enabled = cfg.curvature.every > 0
        steps = [int(t) for t in eval_steps]
        self.measure_steps = {t for i, t in enumerate(steps)
                              if i % max(cfg.curvature.every, 1) == 0 or i == len(steps) - 1}
        self.dtype = getattr(torch, cfg.curvature.dtype)
        n = data.n
        if cfg.curvature.subset > n:
            raise ConfigError(f"metrics.curvature.subset={cfg.curvature.subset} exceeds the {n} training examples")
        self.subset = subset_indices(n, cfg.curvature.subset or None)
        self.warm = WarmStart()  # run index -> (p, k) warm start
        self._cache: tuple | None = None

    @property
    def vectors(self) -> dict:
        """Warm-start eigenvectors per run index, (p, k)."""
        return self.warm.vectors

    @vectors.setter
    def vectors(self, store: dict) -> None:
        self.warm.vectors = store

    @property
    def total_hvps(self) -> int:
        return self.warm.total_hvps

    @classmethod
    def for_engine(cls, eng) -> CurvatureTracker:
        """From an engine (duck-typed: cfg, model, data, eval_steps, run_batching(step))."""
        return cls(eng.model, eng.data, eng.cfg.metrics, eng.run_batching(0), eng.eval_steps)

    def names(self) -> list[str]:
        out = eig_names(self.cfg.curvature.k)
        if hasattr(self.model, "activations"):
            out.append("dead_fraction")
        return out + list(self.cfg.batch.quantities)

    def measure(self, step: int, groups, params: list[dict[str, torch.Tensor]],
                diverged: np.ndarray, runs: list[RunBatching] | None = None) -> dict[str, np.ndarray]:
        """Metrics name -> (R,) float64 at ``step`` (all NaN off the measurement steps); ``runs``:
        the batching in effect at ``step`` (multi-phase arms change it), default the one given."""
        if runs is not None:
            self.runs = runs
        if not self.enabled:
            return {}
        R = len(self.runs)
        out = {k: np.full(R, np.nan) for k in self.names()}
        if step not in self.measure_steps:
            return out
        key = (step, tuple(float(v.double().sum()) for p in params for v in p.values()))
        if self._cache is not None and self._cache[0] == key:  # evaluated twice at step 0
            return {k: v.copy() for k, v in self._cache[1].items()}
        for g, p in zip(groups, params):
            if "dead_fraction" in out:
                out["dead_fraction"][g.runs] = self._dead(p)
            for j, r in enumerate(g.runs):
                one = {k: v[j].detach() for k, v in p.items()}
                if diverged[r] >= 0 or not all(bool(torch.isfinite(v).all()) for v in one.values()):
                    continue
                for name, val in self._measure_run(self.runs[r], one, step).items():
                    out[name][r] = val
        self._cache = (key, {k: v.copy() for k, v in out.items()})
        return out

    # ------------------------------------------------------------------ pieces
    def _measure_run(self, run: RunBatching, params: dict[str, torch.Tensor], step: int) -> dict[str, float]:
        cfg = self.cfg
        # one copy of the run's parameters serves the Hessian and the batch estimates
        module = RunLoss(self.model, params, self.data.x_train, self.data.y_train, run.weight_decay)
        op = HessianOperator(module, LOSS_FN, (self.subset, self.subset), dtype=self.dtype)
        out = self.warm.measure(op, cfg.curvature.k, cfg.curvature.tol, measurement_generator(run.seed, step),
                                key=run.index)
        del op  # its cached gradient graph goes with it: nothing but the eigenvectors is kept
        if cfg.batch.quantities:
            out.update(self._batch(run, module, step))
        return out

    def _batch(self, run: RunBatching, module: RunLoss, step: int) -> dict[str, float]:
        idx = torch.arange(len(self.data.x_train))
        est = batch_estimates(module, LOSS_FN, (idx, idx), run.batch_size, self.cfg.batch.quantities,
                              generator=measurement_generator(run.seed, step, BATCH_SUBSTREAM),
                              rse_tol=self.cfg.batch.rse_tol, max_batches=self.cfg.batch.max_batches,
                              dtype=self.dtype)
        return {k: est[k] for k in self.cfg.batch.quantities}

    def _dead(self, params: dict[str, torch.Tensor]) -> np.ndarray:
        """Fraction of hidden neurons with mean |activation| over the tracked examples < threshold."""
        x = self.data.x_train[self.subset.to(self.data.x_train.device)]
        with torch.no_grad():
            acts = self.model.activations(params, x)  # [(R, n, h_l)]
        return dead_fraction(acts, DEAD_THRESHOLD).cpu().numpy()
