"""``sgdlab.Monitor``: sharpness, batch sharpness, feature sparsity and more of YOUR training loop.

A few lines to adopt::

    monitor = sgdlab.Monitor(model, loss_fn, (x_sub, y_sub), optimizer, out="runs/mine",
                             metrics={"sharpness": 100, "threshold": 100, "batch_sharpness": 500},
                             batch_size=128)
    for step in range(steps):
        monitor.step()              # measures the state after `step` updates, when one is due
        ...                         # your forward, backward, optimizer.step()
    monitor.close()                 # summary.json; `sgdlab plot runs/mine`, `sgdlab summary runs/mine`

What is measured: the named :data:`sgdlab.metrics.probes.PROBES` entries (docs/curvature.md gives
each formula), on a fixed measurement set, through the same warm starts, subset rule and
estimators as the engine's own curvature tracking (:mod:`sgdlab.metrics.measure`). ``train_loss``
is measured at every measurement. Eigenvalues are those of ``loss_fn`` exactly as passed: a loss
scaled by c scales them by c and moves where 2/eta sits.

When: ``metrics`` maps each name to a schedule (an int N = steps divisible by N; a
:class:`LogSpaced`; or any ``step -> bool``); a plain list uses ``every`` for all. ``step()``
counts calls from 0 (call it before each update: the first call measures the initialisation);
``step(t)`` takes the step from your loop; a step at or before the last one seen is skipped.

It never changes the training: parameters, ``.grad``, optimizer state, RNG states (CPU and CUDA),
BatchNorm statistics and train/eval flags are exactly as before (tested bit for bit), and no graph
is kept between calls (only the k warm-start eigenvectors, p x k float64).

Output (``out``): a standard run directory (config.toml with ``external`` kinds, see
:mod:`sgdlab.spec.external`; meta.json with the monitor's settings; runs.json; metrics.jsonl appended at
every measurement; summary.json at :meth:`Monitor.close`), so ``sgdlab plot``, ``sgdlab summary``
and ``sgdlab export`` work on it; ``loggers`` also logs live to TensorBoard / W&B (offline) / MLflow.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np
import torch

from sgdlab.core.config import dump_toml
from sgdlab.core.errors import ConfigError
from sgdlab.engine.train import RunSpec
from sgdlab.metrics.adaptive import is_adaptive
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.probes import PROBES, Prober, ProbeSettings
from sgdlab.metrics.user_objects import unwrap_optimizer
from sgdlab.spec.experiment import ArmConfig, ExperimentConfig
from sgdlab.spec.external import (
    ExternalData,
    ExternalModel,
    ExternalOptimizer,
    ExternalSchedule,
)
from sgdlab.store.metrics_rows import metrics_row
from sgdlab.store.runs import (
    CONFIG,
    META,
    METRICS,
    RunDir,
    atomic_write_text,
    dumps,
)
from sgdlab.store.summary import summarize
from sgdlab.workflows.monitor_sinks import sinks

__all__ = ["DEFAULT_METRICS", "Every", "LogSpaced", "Measurement", "Monitor"]

DEFAULT_METRICS = ("sharpness", "threshold")
# With Adam / AdamW / RMSprop the edge concerns the preconditioned sharpness (sgdlab.metrics.adaptive).
DEFAULT_ADAPTIVE_METRICS = ("preconditioned_sharpness", "threshold")
DEFAULT_EVERY = 100  # steps between measurements: sharpness costs tens of Hessian-vector products
# Readout: (metric, label) in this order when measured; per-layer sparsity follows.
_READOUT = (("train_loss", "loss"), ("sharpness", "sharpness"), ("preconditioned_sharpness", "P^-1 H sharpness"),
            ("batch_sharpness", "BS"), ("minibs", "MiniBS"), ("gni", "GNI"), ("step_sharpness", "step sharpness"),
            ("trace", "trace"), ("dead_fraction", "dead"), ("jacobian_rank", "rank"))
_DEVICES = ("cpu", "cuda", "mps")  # what ExperimentConfig.device records
_RELATIVE = {"sharpness", "batch_sharpness", "minibs"}  # also shown as a multiple of the threshold (SGD)
_RELATIVE_ADAPTIVE = {"preconditioned_sharpness"}  # ... of the adaptive optimizer's threshold


@dataclass(frozen=True)
class Every:
    """Steps 0, n, 2n, ..."""

    n: int

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"a measurement interval must be a positive integer of steps, got {self.n!r}")

    def __call__(self, step: int) -> bool:
        return step % self.n == 0


@dataclass(frozen=True)
class LogSpaced:
    """Step 0 and the steps round(10^(j / per_decade)), j = 0, 1, ... (dense early, sparse late)."""

    per_decade: int = 10

    def __post_init__(self):
        if isinstance(self.per_decade, bool) or not isinstance(self.per_decade, int) or self.per_decade < 1:
            raise ConfigError(f"per_decade must be a positive integer, got {self.per_decade!r}")

    def __call__(self, step: int) -> bool:
        if step <= 0:
            return step == 0
        j = round(self.per_decade * math.log10(step))
        return any(round(10 ** (i / self.per_decade)) == step for i in range(max(0, j - 1), j + 2))


def _schedule(spec) -> Callable[[int], bool]:
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Every(spec)
    if callable(spec):
        return spec
    raise ConfigError(f"a schedule is an int N (every N steps), LogSpaced(...) or a callable step -> bool, "
                      f"got {spec!r}")


def _fmt(x: float) -> str:
    return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e5 else f"{x:.3e}"


@dataclass(frozen=True)
class Measurement:
    """The values of one measurement; ``str()`` is a one-line readout for a progress bar."""

    step: int
    values: Mapping[str, float]
    adaptive: bool = False  # the threshold is an adaptive optimizer's (compares with preconditioned_sharpness)

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __str__(self) -> str:
        v = {k: x for k, x in self.values.items() if math.isfinite(x)}
        edge = v.get("threshold")
        parts = [f"step {self.step}"]
        relative, unit = (_RELATIVE_ADAPTIVE, "edge") if self.adaptive else (_RELATIVE, "2/lr")
        for key, label in _READOUT:
            if key in v:
                rel = f" ({v[key] / edge:.2f}x {unit})" if key in relative and edge else ""
                parts.append(f"{label} {_fmt(v[key])}{rel}")
        parts += [f"sparsity[{k[:-9]}] {_fmt(x)}" for k, x in v.items() if k.endswith("_sparsity")]
        return " | ".join(parts)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class Monitor:
    """Measures a user's ``model`` during their own training loop (module doc).

    Args:
        model: the ``nn.Module`` being trained (its trainable parameters are theta).
        loss_fn: ``(model(x), y) -> scalar`` mean loss, exactly the loss you train.
        data: the measurement set: tensors ``(x, y)``, a DataLoader or a list of batches, reduced
            once to a fixed subset of ``subset`` examples (``sgdlab.metrics.user_objects.measurement_set``).
        optimizer: read (never written) for the current step size and momentum (``threshold``).
        metrics: names (each on ``every``) or {name: schedule}; see ``sgdlab.metrics.probes.PROBES``.
        every: default schedule: an int N, ``LogSpaced(...)`` or a callable ``step -> bool``.
        out: run directory to write (None: in memory only); name: its experiment name;
            overwrite: replace an existing monitor run there; loggers: "tensorboard", "wandb", "mlflow"
            (the Monitor's own, next to the run directory);
        log_to: your own writers (a TensorBoard ``SummaryWriter``, an active W&B run, or a list):
            every measurement is sent to them too (:mod:`sgdlab.workflows.monitor_sinks`);
        resume: continue the record in ``out`` (a restart from your checkpoint): its rows before the
            first step measured now are kept, the rows from that step on are dropped (pass that
            step: ``step(t)``; without one the count continues after the last kept row);
        strict: re-raise a failing measurement (tests) instead of one warning and NaN;
        batch_size: the training batch size (batch metrics); layers: module names for sparsity and
            dead units (default every ReLU-like activation); probe: Jacobian-rank inputs or a count;
        bn_mode: "eval" | "train" (required with BatchNorm); settings: ``ProbeSettings`` (k, tol,
            dtype, rse_tol, max_batches, sparsity_tau, ...).
    """

    def __init__(self, model: torch.nn.Module, loss_fn, data, optimizer=None, *,
                 metrics: Sequence[str] | Mapping[str, object] | None = None, every=DEFAULT_EVERY,
                 out: str | Path | None = None, name: str = "monitor", overwrite: bool = False,
                 loggers: Sequence[str] = (), subset: int | None = None, batch_size: int | None = None,
                 layers: Sequence[str] | None = None, probe=None, bn_mode: str | None = None,
                 settings: ProbeSettings | None = None, log_to=None, resume: bool = False, strict: bool = False):
        if metrics is None:  # the default; without an optimizer there is no step size to read
            metrics = ([*DEFAULT_ADAPTIVE_METRICS] if is_adaptive(unwrap_optimizer(optimizer)) else
                       [m for m in DEFAULT_METRICS if optimizer is not None or m != "threshold"])
        if isinstance(metrics, str):
            raise ConfigError(f"metrics must be a list of names or a dict name -> schedule, got {metrics!r}")
        plan = dict(metrics) if isinstance(metrics, Mapping) else {m: every for m in metrics}
        for m in plan:
            PROBES.get(m)  # unknown names: ConfigError listing the valid ones
        self._when = {m: _schedule(s) for m, s in plan.items()}
        self.prober = Prober(model, loss_fn, data, ["train_loss", *self._when], optimizer=optimizer, subset=subset,
                             batch_size=batch_size, layers=layers, probe=probe, bn_mode=bn_mode, settings=settings,
                             strict=strict)
        self.names = self.prober.names()
        self._adaptive = is_adaptive(self.prober.optimizer)
        self._sinks = sinks(log_to)
        self._restored: list[tuple[int, dict[str, float]]] | None = None  # resume: rows until the first step
        self._versions: tuple[int, ...] | None = None  # parameter versions at the last step() call
        self.model, self.optimizer, self.name = model, optimizer, name
        # the record's "eta at the start" (a scheduler may move it; the `lr` metric follows it)
        self._lr_start = float(optimizer.param_groups[0]["lr"]) if optimizer is not None else 0.0
        self.history: list[tuple[int, dict[str, float]]] = []
        self.last: Measurement | None = None
        self.seconds = 0.0  # wall time spent measuring
        self.diverged_at: int | None = None
        self._next, self._seen = 0, -1
        self._t0 = time.monotonic()
        self._closed = False
        self.rd: RunDir | None = None
        self._loggers: list = []
        if loggers and out is None:
            raise ConfigError("loggers write next to the run directory: pass out=")
        if out is not None:  # the directory stays locked against other writers until close()
            if resume and (Path(out) / METRICS).is_file():
                self.rd = RunDir(out).open_writer()
                self._restored = self._read_back()
                meta = self.rd.meta()
                meta.pop("finished", None)  # running again: finished once close() has run
                atomic_write_text(self.rd.path / META, dumps(meta))
            else:
                self.rd = RunDir.create(out, self._config(1, loggers), [self._run()], overwrite=overwrite)
            try:
                self.rd.update_meta(monitor=self._record(plan, subset, layers))
                if loggers:
                    from sgdlab.store.loggers import Logger

                    self._loggers = [Logger(b, self.rd.path, [dataclasses.asdict(self._run())], name)
                                     for b in loggers]
            except BaseException:
                self.rd.release()
                raise

    # ----------------------------------------------------------------- measuring
    def step(self, step: int | None = None) -> Measurement | None:
        """Measure what is due at ``step`` (default: the call count); returns the Measurement or None."""
        if self._closed:
            raise ConfigError("this Monitor is closed")
        if self._restored is not None and step is None:  # resumed without a step: continue the record
            self._next = self._restored[-1][0] + 1 if self._restored else 0
        t = self._next if step is None else step
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise ConfigError(f"step must be an integer >= 0, got {step!r}")
        t = int(t)
        if self._restored is not None:
            self._continue_from(t)
        self._next = t + 1
        self._versions = self._param_versions()
        if t <= self._seen:
            return None  # already seen (e.g. gradient accumulation repeats an optimizer step)
        self._seen = t
        due = [m for m, when in self._when.items() if when(t)]
        if not due:
            return None
        return self._measure(t, due)

    def _measure(self, t: int, due: list[str], into_last: bool = False) -> Measurement:
        """Measure ``due`` at step t: a new row, or (into_last) the metrics missing from the last row."""
        t0 = time.perf_counter()
        vals = self.prober.measure(["train_loss", *due], t)
        self.seconds += time.perf_counter() - t0
        row = {k: float(vals.get(k, math.nan)) for k in self.names}
        if into_last:
            row = {k: v if k in vals else self.history[-1][1][k] for k, v in row.items()}
            self.history[-1] = (t, row)
        else:
            self.history.append((t, row))
        if self.diverged_at is None and not math.isfinite(row["train_loss"]):
            self.diverged_at = t
        self.last = Measurement(t, {k: v for k, v in row.items() if k in vals}, self._adaptive)
        if self.rd is not None:
            if into_last:
                self._rewrite()
            else:
                self.rd.append_metrics(t, {k: np.array([v]) for k, v in row.items()})
        for lg in self._loggers:
            lg.log(t, {k: np.array([v]) for k, v in row.items()})
        for sink in self._sinks:
            sink.write(t, self.last.values)
        return self.last

    def _param_versions(self) -> tuple[int, ...]:
        return tuple(q._version for q in self.prober.model.parameters())

    # ----------------------------------------------------------------- restarts
    def _read_back(self) -> list[tuple[int, dict[str, float]]]:
        """The record's rows (resume), as (step, {name: value}) over this Monitor's names."""
        steps, m = self.rd.metrics()
        return [(int(t), {k: float(m[k][i, 0]) if k in m else math.nan for k in self.names})
                for i, t in enumerate(steps)]

    def _continue_from(self, t: int) -> None:
        """First step after resume: keep the rows before t (the rest is measured again), once."""
        kept = [(s, r) for s, r in self._restored if s < t]
        self._restored = None
        self.history = kept
        self.diverged_at = next((s for s, r in kept if not math.isfinite(r["train_loss"])), None)
        self._rewrite()

    def _rewrite(self) -> None:
        self.rd.write_rows([metrics_row(s, {k: np.array([v]) for k, v in r.items()}) for s, r in self.history])

    __call__ = step

    def metrics(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(steps (E,), name -> (E,) float64 with NaN where not measured), from memory."""
        steps = np.array([t for t, _ in self.history], dtype=np.int64)
        return steps, {k: np.array([r[k] for _, r in self.history], dtype=np.float64) for k in self.names}

    def __str__(self) -> str:
        return str(self.last) if self.last is not None else "sgdlab.Monitor: no measurement yet"

    # ----------------------------------------------------------------- closing
    def close(self, step: int | None = None) -> dict | None:
        """Measure the final state, write summary.json (last finite value of every metric) and the
        figures, mark the run directory finished and release it; close the loggers.

        The final state is measured with every metric unless already measured: at ``step`` when
        given (a framework's global step); otherwise at the step after the last ``step()`` call if
        the parameters changed since it (the loop's last update), else the metrics missing from
        that call's measurement are added to it.
        """
        if self._closed:
            return None
        try:
            self.finish(step)
            if self.rd is not None:
                return self._finish()
            return None
        finally:
            self._closed = True
            for lg in self._loggers:
                lg.close()
            for sink in self._sinks:
                sink.flush()
            if self.rd is not None:
                self.rd.release()

    def finish(self, step: int | None = None) -> Measurement | None:
        """Measure the final state with every metric (the rule of :meth:`close`, which calls it);
        returns the new measurement or None when there was nothing left to measure."""
        if self._restored is not None:  # resumed and closed at once: the record stands as it was
            self.history, self._restored = self._restored, None
        if step is None:
            if self._versions is None:
                return None  # step() was never called: there is no loop to finish
            changed = self._param_versions() != self._versions
            step = self._next if changed else self._seen
        t = int(step)
        last = self.history[-1] if self.history else None
        if last is not None and last[0] == t:  # add what that measurement did not measure
            done = self.last.values if self.last is not None and self.last.step == t else {}
            missing = [m for m in self._when
                       if not all(k in done for k in self.prober.probes[m].outputs(self.prober))]
            return self._measure(t, missing, into_last=True) if missing else None
        if last is None or last[0] < t:
            self._seen = max(self._seen, t)
            return self._measure(t, list(self._when))
        return None

    def _finish(self) -> dict:
        # the engine's last step: figures, then "finished" in meta.json
        from sgdlab.workflows.api import draw_figures

        steps, m = self.metrics()
        last_step = int(steps[-1]) if len(steps) else 0
        cfg = self._config(max(1, last_step), tuple(lg.backend for lg in self._loggers))
        atomic_write_text(self.rd.path / CONFIG, dump_toml(cfg))  # the step count is known only now
        final, measured_at = {}, {}
        for k, v in m.items():
            ok = np.flatnonzero(np.isfinite(v))
            final[k] = np.array([[v[ok[-1]] if len(ok) else math.nan]])
            measured_at[k] = int(steps[ok[-1]]) if len(ok) else None
        diverged = np.array([-1 if self.diverged_at is None else self.diverged_at])
        wall = time.monotonic() - self._t0
        summary = summarize(cfg, [dataclasses.asdict(self._run())], steps[-1:], final, diverged, wall)
        summary["last_measured"] = measured_at
        summary["monitor_seconds"] = self.seconds
        self.rd.write_summary(summary)
        self.rd.update_meta(wall_seconds=wall, monitor_seconds=self.seconds)
        draw_figures(self.rd, quiet=True)
        return summary

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- the record
    def _run(self) -> RunSpec:
        opt = type(self.optimizer).__name__ if self.optimizer is not None else "none"
        lr = self._lr_start
        return RunSpec(0, self.name, self.prober.settings.seed, f"eta={lr:g} at the start" if lr else "-", opt, False)

    def _config(self, steps: int, loggers) -> ExperimentConfig:
        p = self.prober
        dt = next((q.dtype for q in p.model.parameters()), torch.float32)
        dev = next((q.device for q in p.model.parameters()), torch.device("cpu"))
        arm = ArmConfig(name=self.name, optimizer=ExternalOptimizer(
            name=type(self.optimizer).__name__ if self.optimizer is not None else "", batch_size=p.batch_size or 0),
            schedule=ExternalSchedule(lr=self._lr_start))
        loss = getattr(p.loss_fn, "__name__", type(p.loss_fn).__name__)
        return ExperimentConfig(
            name=self.name, description="recorded by sgdlab.Monitor from a user's training loop",
            data=ExternalData(description=f"{len(p.x)} examples, x {tuple(p.x.shape[1:])}", n=len(p.x)),
            model=ExternalModel(name=type(p.model).__name__, parameters=sum(q.numel() for q in p.model.parameters()
                                                                           if q.requires_grad),
                                loss=loss, bn_mode=p.bn_mode or ""),
            arms=(arm,), steps=steps, seeds=1, first_seed=p.settings.seed, metrics=MetricsConfig(names=tuple(self.names)),
            dtype="float64" if dt == torch.float64 else "float32",
            device=dev.type if dev.type in _DEVICES else "cpu",
            figure=("train_loss",), extra_figures=("monitor",), loggers=tuple(loggers))

    def _record(self, plan: dict, subset, layers) -> dict:
        s = self.prober.settings
        return {"metrics": {m: repr(spec) for m, spec in plan.items()}, "subset": subset,
                "batch_size": self.prober.batch_size, "layers": list(self.prober.layers) if layers is None else list(layers),
                "settings": {k: (str(v) if isinstance(v, torch.dtype) else v) for k, v in vars(s).items()}}
