"""Monitor probes on the engine's runs: ``metrics.names = ["sparsity", ...]`` in an experiment.

A name in ``metrics.names`` that is a Monitor probe (:data:`sgdlab.metrics.probes.PROBES`) and that
neither the model family, a user metric nor curvature tracking logs is measured by the Monitor's own
:class:`~sgdlab.metrics.probes.Prober` on every run at every evaluation step: one run of the
batched model is exposed as an ``nn.Module`` (:class:`RunModule`, ``forward(x) = model.forward(
params_r[None], x)[0]``) trained on the mean of the model's per-example loss, measured on the
training set (or the fixed ``metrics.curvature.subset``). Settings come from the metrics config:
Lanczos ``curvature.k`` / ``tol`` / ``dtype``, batch ``rse_tol`` / ``max_batches`` (batches of the
run's own batch size), ``thresholds.sparsity_tau`` / ``rank_rtol``. Probes that read a
``torch.optim`` optimizer (``threshold``) or hook ReLU modules (``sparsity``, ``dead_units``: the
batched models log per-layer features themselves) are refused with one line.

Warm starts are kept per run (one Prober per run). Diverged runs get NaN.
"""

from __future__ import annotations

import numpy as np
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.probes import PROBES, Prober, ProbeSettings
from sgdlab.metrics.registry import METRIC_SPECS

__all__ = ["EngineProbes", "RunModule"]


class RunModule(torch.nn.Module):
    """One run of a batched model as an ``nn.Module``; params: that run's tensors (no run
    dimension), copied into ``nn.Parameter``s (``.`` in names becomes ``__``); non-trainable
    entries (BatchNorm statistics) enter as constants."""

    def __init__(self, model, params: dict[str, torch.Tensor]):
        super().__init__()
        self._model = model
        trainable = model.trainable(params)
        self._names = {k: k.replace(".", "__") for k in trainable}
        for k, name in self._names.items():
            self.register_parameter(name, torch.nn.Parameter(params[k].detach().clone()))
        self._fixed = {k: v.detach().clone() for k, v in params.items() if k not in self._names}

    def load(self, params: dict[str, torch.Tensor]) -> None:
        """Copy one run's current tensors in (same names and shapes)."""
        with torch.no_grad():
            for k, name in self._names.items():
                getattr(self, name).copy_(params[k])
            self._fixed = {k: v.detach().clone() for k, v in params.items() if k not in self._names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = {k: getattr(self, name).unsqueeze(0) for k, name in self._names.items()}
        return self._model.forward({**{k: v.unsqueeze(0) for k, v in self._fixed.items()}, **p}, x)[0]


class EngineProbes:
    """The probes an experiment names (module doc); ``probes``: probe name -> Probe."""

    def __init__(self, eng, probes: list[str]):
        self.probes = {name: PROBES.get(name) for name in probes}
        self._probers: dict[int, Prober] = {}
        self._names: list[str] = []
        if not probes:
            return
        for name, p in self.probes.items():
            if p.needs_optimizer:
                raise ConfigError(f"metrics.names: the Monitor probe {name!r} reads a torch optimizer; the engine's "
                                  f"runs have none (their step sizes are in runs.json)")
        cfg = eng.cfg.metrics
        self.model, self.data = eng.model, eng.data
        self.settings = ProbeSettings(
            k=cfg.curvature.k, tol=cfg.curvature.tol, dtype=getattr(torch, cfg.curvature.dtype),
            rse_tol=cfg.batch.rse_tol, max_batches=cfg.batch.max_batches,
            sparsity_tau=cfg.thresholds.sparsity_tau,
            **({} if cfg.thresholds.rank_rtol is None else {"rank_rtol": cfg.thresholds.rank_rtol}))
        self.subset = cfg.curvature.subset or None
        template = {k: v[0].to(eng.data.x_train.device)
                    for k, v in eng.model.init_params([0], dtype=eng.dtype).items()}
        self._names = self._prober(0, template, eng.data.n).names()

    @classmethod
    def for_engine(cls, eng) -> EngineProbes:
        """The probes of ``eng.cfg.metrics.names`` that nothing else logs (module doc)."""
        asked = [n for n in eng.cfg.metrics.names if n in PROBES and METRIC_SPECS.computed(n) is None]
        from sgdlab.metrics.config import curvature_advice
        from sgdlab.metrics.quantities import QUANTITIES

        batch = [n for n in asked if n in QUANTITIES]  # Monte Carlo over hundreds of batches: tracking's job
        if batch:
            raise ConfigError(f"metrics.names: {batch[0]!r}{curvature_advice(batch[0], eng.cfg.metrics)}")
        if asked:
            own = set(eng.model.metric_names(eng.data, eng.cfg.metrics, eng.dtype))
            own |= set(eng.curvature.names()) if eng.curvature.enabled else set()
            asked = [n for n in asked if n not in own]
        out = cls(eng, asked)
        clash = sorted(set(out.names()) & set(eng.curvature.names())) if eng.curvature.enabled else []
        if clash:
            raise ConfigError(f"metrics.names: probes {list(out.probes)} write {clash}, which curvature tracking "
                              f"(metrics.curvature.every) logs already; drop one of the two")
        return out

    def names(self) -> list[str]:
        """Metric names the probes write."""
        return list(self._names)

    def _prober(self, run: int, params: dict[str, torch.Tensor], batch_size: int) -> Prober:
        if run not in self._probers:
            module = RunModule(self.model, params)
            per_example = self.model.per_example_loss
            try:
                self._probers[run] = Prober(module, lambda out, y: per_example(out, y).mean(), (
                    self.data.x_train, self.data.y_train), list(self.probes), subset=self.subset,
                    batch_size=batch_size, settings=self.settings)
            except ConfigError as e:
                raise ConfigError(f"metrics.names: Monitor probes {list(self.probes)} on this model: {e}") from None
        else:
            self._probers[run].model.load(params)
        return self._probers[run]

    def measure(self, step: int, groups, params: list[dict[str, torch.Tensor]], diverged: np.ndarray,
                runs) -> dict[str, np.ndarray]:
        """name -> (R,) float64 at ``step``; ``runs``: each run's batching then (RunBatching)."""
        if not self.probes:
            return {}
        out = {k: np.full(len(runs), np.nan) for k in self._names}
        for g, p in zip(groups, params):
            for j, r in enumerate(g.runs):
                one = {k: v[j].detach() for k, v in p.items()}
                if diverged[r] >= 0 or not all(bool(torch.isfinite(v).all()) for v in one.values()):
                    continue
                prober = self._prober(r, one, runs[r].batch_size or self.data.n)
                prober.batch_size = runs[r].batch_size or self.data.n  # a later phase may change it
                for k, v in prober.measure(list(self.probes), step).items():
                    if k in out:
                        out[k][r] = v
        return out
