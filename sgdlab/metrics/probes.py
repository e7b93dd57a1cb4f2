"""Named measurements of any ``nn.Module`` during training, the engine behind ``sgdlab.Monitor``.

A :class:`Prober` holds a model, the loss exactly as trained (``loss_fn(output, y)`` = the mean
over the batch), a fixed measurement set and, optionally, the optimizer; ``measure(names, step)``
returns ``{metric: value}`` for the named :data:`PROBES` entries and leaves parameters, ``.grad``,
buffers (BatchNorm statistics), train/eval flags, the optimizer and every RNG (CPU and CUDA)
exactly as they were. Curvature goes through :mod:`sgdlab.metrics.measure`, the implementation the
engine's tracking uses. Nothing is kept between calls except the warm-start eigenvectors.

Measurement set: :func:`sgdlab.metrics.user_objects.measurement_set`, taken once.

Which mode. Loss and Hessian quantities use a functional copy with dropout off and BatchNorm as
``bn_mode`` says (required when the model has BatchNorm; see :mod:`sgdlab.metrics.curvature.hvp`).
Forward-only metrics (sparsity, dead units, Jacobian rank) use the model as evaluated: dropout
off, BatchNorm with its running statistics.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from sgdlab.core.config import check
from sgdlab.core.errors import ConfigError
from sgdlab.core.registry import Registry
from sgdlab.metrics.adaptive import PreconditionedOperator, adaptive_edge, is_adaptive
from sgdlab.metrics.curvature import QUANTITIES, HessianOperator, hutchinson_trace
from sgdlab.metrics.curvature.batch import (
    DEFAULT_MAX_BATCHES,
    DEFAULT_MIN_BATCHES,
    DEFAULT_RSE_TOL,
)
from sgdlab.metrics.curvature.hvp import FunctionalLoss
from sgdlab.metrics.features import layer_features, resolve_layers
from sgdlab.metrics.jacobian import DEFAULT_RTOL, matrix_rank, per_example_jacobian
from sgdlab.metrics.measure import (
    BATCH_SUBSTREAM,
    WarmStart,
    batch_estimates,
    dead_fraction,
    eig_names,
    measurement_generator,
    stability_thresholds,
)
from sgdlab.metrics.sparsity import DEEP_MAX_NEURONS, TAU_SHALLOW, feature_sparsity
from sgdlab.metrics.user_objects import (
    math_attention,
    measurement_set,
    optimizer_hparams,
    unwrap_model,
    unwrap_optimizer,
)

__all__ = ["PROBES", "Probe", "ProbeSettings", "Prober", "measurement_set", "optimizer_hparams", "unwrap_model",
           "unwrap_optimizer"]

# Jacobian rank: default probe size keeps phi ((n k) x p) under this many entries (128 MiB in float64).
JACOBIAN_MAX_ENTRIES = 2**24
# ... and at most this many inputs (the paper uses as many as there are parameters; an SVD of more
# rows than this costs more than the rest of a measurement).
JACOBIAN_MAX_INPUTS = 256
# Batch metrics: a measurement set of fewer than this many batches is too small for an unbiased
# estimate. Batches drawn without replacement from n examples have (n - b)/(n - 1) of the gradient
# noise variance of batches from the population, so the batch estimates move toward the full-batch
# value; at n = 10 b the noise variance is 90% of the population's.
MIN_BATCHES_PER_SET = 10
# Hutchinson trace: Rademacher probes per estimate and the relative standard error called converged.
TRACE_SAMPLES = 30
TRACE_RSE_TOL = 0.05


@dataclass(frozen=True)
class ProbeSettings:
    """How precisely to measure (what to measure is the probe names)."""

    # top-k Hessian eigenvalues: 1 for watching a run (the cheapest); k >= 2 keeps the warm start
    # on lambda_1 when the top two cross (papers, spectra)
    k: int = 1
    # Lanczos: relative residual bound ||H v - theta v|| <= tol |theta|, which bounds the relative
    # error of the eigenvalue by tol (1e-3: what watching a run needs; its actual error is ~tol^2 x
    # lambda/gap, far smaller)
    tol: float = 1e-3
    dtype: torch.dtype | None = None  # functional copy for the Hessian; None = the model's dtype
    chunk_size: int | None = None  # examples per forward pass; None = one chunk (its graph serves every HVP)
    # Keep every chunk's gradient graph for the HVPs of one measurement (freed after it): None = only
    # when there is a single chunk; True trades memory (the whole set's graph) for 1 backward per HVP.
    cache_graph: bool | None = None
    rse_tol: float = DEFAULT_RSE_TOL  # batch metrics: stop at relative standard error < this (the paper's)
    max_batches: int = DEFAULT_MAX_BATCHES  # ... or after this many batches (the paper's cap)
    min_batches: int = DEFAULT_MIN_BATCHES  # a standard error from fewer draws is too noisy to stop on
    sparsity_tau: float = TAU_SHALLOW  # merge neurons with |corr| > tau (paper: 0.99 small nets, 0.95 deep)
    normalize_features: bool = False  # L2-normalise each example's features first (the paper's toy nets)
    max_neurons: int = DEEP_MAX_NEURONS  # sparsity: above this many units a fixed random subset (paper: 1000)
    rank_rtol: float = DEFAULT_RTOL  # Jacobian rank: singular value / largest > rank_rtol (paper: 1e-4)
    trace_samples: int = TRACE_SAMPLES  # Hutchinson probes per trace estimate (one HVP each)
    trace_rse_tol: float = TRACE_RSE_TOL  # trace_converged = stderr/|trace| below this
    seed: int = 0  # random stream of the measurements (start vectors, batches, unit subsets)

    def __post_init__(self):
        check(self.k >= 1, f"k must be >= 1, got {self.k}")
        check(0 < self.tol < 1, f"tol must be in (0, 1), got {self.tol}")
        check(self.chunk_size is None or self.chunk_size >= 1, f"chunk_size must be >= 1 or None, got {self.chunk_size}")
        check(0 <= self.rse_tol < 1, f"rse_tol must be in [0, 1), got {self.rse_tol}")
        check(1 <= self.min_batches <= self.max_batches,
              f"need 1 <= min_batches <= max_batches, got {self.min_batches}, {self.max_batches}")
        check(0 < self.sparsity_tau <= 1, f"sparsity_tau must be in (0, 1], got {self.sparsity_tau}")
        check(self.max_neurons >= 2, f"max_neurons must be >= 2, got {self.max_neurons}")
        check(self.trace_samples >= 2, f"trace_samples must be >= 2, got {self.trace_samples}")
        check(0 < self.trace_rse_tol < 1, f"trace_rse_tol must be in (0, 1), got {self.trace_rse_tol}")
        check(0 < self.rank_rtol < 1, f"rank_rtol must be in (0, 1), got {self.rank_rtol}")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class Probe:
    """A named measurement: ``doc`` (its formula), the metric names it writes, and how to measure."""

    doc: str
    outputs: Callable[[Prober], list[str]]
    run: Callable[[_Moment], dict[str, float]]
    needs_finite: bool = True  # skipped (NaN) when the loss on the measurement set is not finite
    needs_optimizer: bool = False


PROBES: Registry[Probe] = Registry("monitor metric")


# --------------------------------------------------------------------------- measurement set

def _check_set_size(n: int, b: int) -> None:
    """Warn when n examples are too few for unbiased batch estimates at batch size b (see
    MIN_BATCHES_PER_SET): the estimates then read between the population's and the full batch's."""
    if b >= n or n >= MIN_BATCHES_PER_SET * b:
        return  # b >= n: the one full batch, exact by definition
    kept = (n - b) / (n - 1)
    warnings.warn(
        f"the measurement set has {n} examples, {n / b:.1f} batches of {b}: batches drawn from it carry "
        f"{kept:.0%} of the gradient noise variance of training batches, so batch sharpness, GNI and MiniBS "
        f"move toward the full-batch value and vary with which examples were drawn (docs/curvature.md); "
        f"pass at least {MIN_BATCHES_PER_SET * b} examples "
        f"({MIN_BATCHES_PER_SET} batches)", RuntimeWarning, stacklevel=4)


# --------------------------------------------------------------------------- the prober

class Prober:
    """Measures :data:`PROBES` entries of ``model`` on a fixed measurement set (module doc).

    data: see :func:`measurement_set`; optimizer: read (never written) for lr and momentum;
    batch_size: the training batch size of the batch metrics (default: the DataLoader's);
    layers: module names for sparsity / dead units (default every ReLU-like activation);
    probe: inputs of the Jacobian rank, or how many of the first measurement inputs (default:
    as many as keep phi under JACOBIAN_MAX_ENTRIES, at most JACOBIAN_MAX_INPUTS);
    bn_mode: "eval" | "train", required for the loss and Hessian when the model has BatchNorm.
    """

    def __init__(self, model: torch.nn.Module, loss_fn, data, probes: Sequence[str], *, optimizer=None,
                 subset: int | None = None, batch_size: int | None = None, layers: Sequence[str] | None = None,
                 probe: torch.Tensor | int | None = None, bn_mode: str | None = None,
                 settings: ProbeSettings | None = None, strict: bool = False):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model = unwrap_model(model)
        optimizer = unwrap_optimizer(optimizer) if optimizer is not None else None
        self.model, self.loss_fn, self.optimizer, self.bn_mode = model, loss_fn, optimizer, bn_mode
        self.strict = strict
        self._failed: set[str] = set()  # metrics that already warned about a failure
        self.settings = settings or ProbeSettings()
        self.probes = {name: PROBES.get(name) for name in dict.fromkeys(probes)}
        for name, p in self.probes.items():
            if p.needs_optimizer and optimizer is None:
                raise ConfigError(f"metric {name!r} reads the step size from the optimizer: pass optimizer=")
        if "preconditioned_sharpness" in self.probes and not is_adaptive(optimizer):
            raise ConfigError(f"preconditioned_sharpness reads an adaptive optimizer's preconditioner (Adam, AdamW, "
                              f"RMSprop), got {type(optimizer).__name__}: use sharpness")
        self.x, self.y = measurement_set(data, subset, self.settings.seed)
        self.batch_size = batch_size if batch_size is not None else getattr(data, "batch_size", None)
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if any(n in QUANTITIES for n in self.probes) and self.batch_size is None:
            raise ConfigError("batch metrics need the training batch size: pass batch_size= (or a DataLoader)")
        if any(n in QUANTITIES for n in self.probes):
            _check_set_size(len(self.x), self.batch_size)
        self.warm = WarmStart()
        # wall seconds per probe; the first probe that needs the Hessian's gradient graph builds it
        self.seconds: dict[str, float] = dict.fromkeys(self.probes, 0.0)
        has_bn = any(isinstance(m, _BatchNorm) for m in model.modules())
        self._eval_bn = "eval" if has_bn else None
        with self.preserved():
            self._check_loss()  # a bad loss_fn or bn_mode fails here, not at the first measurement
            self.layers = resolve_layers(model, layers) if {"sparsity", "dead_units"} & set(self.probes) else []
            self.feature_keys = list(self._features(self.x[:2])) if self.layers else []
            self.probe_x = self._probe_inputs(probe) if "jacobian_rank" in self.probes else None

    # ----------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def preserved(self):
        """Forks every RNG (CPU and all CUDA devices) for the duration of a measurement, with
        attention on its math kernel (:func:`math_attention`; the caller's choice is restored)."""
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=cuda), math_attention():
            yield

    def functional(self, *, evaluated: bool = False, dtype=None) -> FunctionalLoss:
        """Snapshot of the current parameters: for the loss (bn_mode) or as evaluated (running BN)."""
        return FunctionalLoss(self.model, self.loss_fn, bn_mode=self._eval_bn if evaluated else self.bn_mode,
                              dtype=dtype)

    def _check_loss(self) -> None:
        self.functional(dtype=self.settings.dtype).value(self.x[:2], self.y[:2])

    def _features(self, x: torch.Tensor):
        s = self.settings
        return layer_features(self.functional(evaluated=True), x, self.layers, max_neurons=s.max_neurons,
                              seed=s.seed, chunk_size=s.chunk_size)

    def _probe_inputs(self, probe) -> torch.Tensor:
        if isinstance(probe, torch.Tensor):
            return probe
        if probe is not None and (isinstance(probe, bool) or not isinstance(probe, int) or probe < 1):
            raise ConfigError(f"probe must be input tensors or a positive number of examples, got {probe!r}")
        if probe is None:
            fn = self.functional(evaluated=True)
            with fn.context(), torch.no_grad():
                x1 = self.x[:1]
                out = fn.output(fn.theta, x1.to(fn.device, fn.dtype) if x1.is_floating_point() else x1.to(fn.device))
            outputs = out.numel() if isinstance(out, torch.Tensor) else 1
            probe = max(1, min(JACOBIAN_MAX_INPUTS, JACOBIAN_MAX_ENTRIES // max(1, outputs * fn.dim)))
        return self.x[:probe]

    # ----------------------------------------------------------------- interface
    def names(self) -> list[str]:
        """Metric names the probes write, in probe order (each once)."""
        return list(dict.fromkeys(n for p in self.probes.values() for n in p.outputs(self)))

    def measure(self, due: Sequence[str], step: int) -> dict[str, float]:
        """{metric: value} of the probes in ``due`` at ``step``; NaN where skipped (module doc)."""
        out: dict[str, float] = {}
        with self.preserved():
            moment = _Moment(self, step, due)
            t0 = time.perf_counter()
            try:
                finite = math.isfinite(moment.loss())  # with sharpness due, this builds its gradient graph
            except Exception as e:  # noqa: BLE001 - the model cannot be measured now: every metric is missing
                self._failure("train_loss", step, e)
                moment.release()
                return {k: math.nan for name in due for k in self.probes[name].outputs(self)}
            self.seconds["train_loss"] = self.seconds.get("train_loss", 0.0) + time.perf_counter() - t0
            for name in due:
                probe = self.probes[name]
                if probe.needs_finite and not finite:
                    out.update({k: math.nan for k in probe.outputs(self)})
                    continue
                t0 = time.perf_counter()
                try:
                    out.update(probe.run(moment))
                except Exception as e:  # noqa: BLE001 - a measurement never stops the training it watches
                    self._failure(name, step, e)
                    out.update({k: math.nan for k in probe.outputs(self) if k not in out})
                self.seconds[name] += time.perf_counter() - t0
            moment.release()
        return out

    def _failure(self, name: str, step: int, e: Exception) -> None:
        """Re-raise (strict) or warn once per metric, naming the cause; the value is recorded missing."""
        if self.strict:
            raise e
        if isinstance(e, FloatingPointError):  # a diverging model: expected, said at every occurrence
            warnings.warn(f"metric {name!r} at step {step}: {e}", RuntimeWarning, stacklevel=3)
            return
        if name in self._failed:
            return
        self._failed.add(name)
        warnings.warn(f"sgdlab.Monitor: metric {name!r} failed at step {step} ({type(e).__name__}: {e}); "
                      f"recorded as missing (NaN) and training continues; later failures of {name!r} are not "
                      f"repeated (strict=True raises instead)", RuntimeWarning, stacklevel=3)


class _Moment:
    """One measurement: lazily built operator, features and batch estimates, shared by probes."""

    def __init__(self, prober: Prober, step: int, due: Sequence[str]):
        self.p, self.step = prober, step
        self.gen = measurement_generator(prober.settings.seed, step)
        self.batch_names = [n for n in due if n in QUANTITIES]
        self.curvature = bool({"sharpness", "preconditioned_sharpness", "trace"} & set(due))
        self._op: HessianOperator | None = None
        self._feats = None
        self._batch = None
        self._loss: float | None = None

    def operator(self) -> HessianOperator:
        if self._op is None:
            s = self.p.settings
            self._op = HessianOperator(self.p.model, self.p.loss_fn, (self.p.x, self.p.y), bn_mode=self.p.bn_mode,
                                       dtype=s.dtype, chunk_size=s.chunk_size, cache_graph=s.cache_graph)
        return self._op

    def loss(self) -> float:
        if self._loss is None:
            op = self.operator()
            if self.curvature and op.cache_graph:
                op.gradient()  # builds the graph the eigensolver needs anyway: the loss comes free with it
            self._loss = op.loss()
        return self._loss

    def preconditioned(self):
        """S^1/2 (H + W) S^1/2 of the optimizer's preconditioner (sgdlab.metrics.adaptive) and the
        edge, or (None, edge) before the optimizer's first step."""
        op = self.operator()
        edge = adaptive_edge(self.p.optimizer, [(n, q) for n, q in self.p.model.named_parameters() if q.requires_grad])
        if edge.scale is None:
            return None, edge
        return PreconditionedOperator(op, edge.scale, edge.decay), edge

    def features(self):
        if self._feats is None:
            self._feats = self.p._features(self.p.x)
        return self._feats

    def batch(self) -> dict[str, float]:
        if self._batch is None:
            s = self.p.settings
            self._batch = batch_estimates(self.p.model, self.p.loss_fn, (self.p.x, self.p.y), self.p.batch_size,
                                          self.batch_names, rse_tol=s.rse_tol, max_batches=s.max_batches,
                                          min_batches=s.min_batches, dtype=s.dtype, bn_mode=self.p.bn_mode,
                                          generator=measurement_generator(s.seed, self.step, BATCH_SUBSTREAM))
        return self._batch

    def release(self) -> None:
        """Drop the operator (and its gradient graph) and the features: memory stays bounded."""
        self._op = self._feats = None


# --------------------------------------------------------------------------- the registry

def _one(name: str) -> Callable[[Prober], list[str]]:
    return lambda _p: [name]


PROBES.add("train_loss", Probe(
    "L = sum_b n_b loss_fn(model(x_b), y_b) / N over the measurement set (dropout off, BatchNorm per bn_mode)",
    _one("train_loss"), lambda m: {"train_loss": m.loss()}, needs_finite=False))

PROBES.add("sharpness", Probe(
    "lambda_1 >= ... >= lambda_k of the Hessian of L (Lanczos, relative residual <= tol, warm-started from the "
    "previous k eigenvectors); hessian_cond = lambda_1 / lambda_k; curvature_hvps = products used",
    lambda p: eig_names(p.settings.k),
    lambda m: m.p.warm.measure(m.operator(), m.p.settings.k, m.p.settings.tol, m.gen)))


def _thresholds(m: _Moment) -> dict[str, float]:
    opt = m.p.optimizer
    if is_adaptive(opt):
        edge = adaptive_edge(opt, [])
        return {"lr": edge.lr, "momentum": edge.beta1, "threshold": edge.threshold,
                "threshold_momentum": edge.threshold}
    hp = optimizer_hparams(opt)
    if hp is None:  # another optimizer with betas: no known edge
        return {"lr": float(opt.param_groups[0]["lr"]), "momentum": math.nan, "threshold": math.nan,
                "threshold_momentum": math.nan}
    if not hp["lr"] > 0:  # warm-up from 0, decay to 0: nothing moves (inf); a negative step: undefined (NaN)
        edge = math.inf if hp["lr"] == 0 else math.nan
        return {"lr": hp["lr"], "momentum": hp["momentum"], "threshold": edge, "threshold_momentum": edge}
    t = stability_thresholds(hp["lr"], hp["momentum"], dampening=hp["dampening"], nesterov=bool(hp["nesterov"]),
                             weight_decay=hp["weight_decay"])
    return {"lr": t.lr, "momentum": t.momentum, "threshold": t.gd, "threshold_momentum": t.momentum_edge}


PROBES.add("threshold", Probe(
    "lr and momentum of the optimizer now; SGD: threshold = 2/lr, threshold_momentum = (2 + 2 mu)/lr (heavy ball; "
    "Nesterov (2 + 2 mu)/(lr (1 + 2 mu)); dampening d divides by 1 - d), both minus SGD's coupled weight decay, "
    "for the param group with the lowest edge; Adam/AdamW: both = (2 + 2 beta1)/((1 - beta1) lr), RMSprop: "
    "(2 + 2 mu)/lr, the edge of preconditioned_sharpness (momentum = beta1); lr 0: inf, lr < 0: NaN",
    lambda _p: ["lr", "momentum", "threshold", "threshold_momentum"], _thresholds,
    needs_finite=False, needs_optimizer=True))


def _preconditioned(m: _Moment) -> dict[str, float]:
    op, _edge = m.preconditioned()
    if op is None:  # before the optimizer's first step it has no second moments
        return {"preconditioned_sharpness": math.nan, "preconditioned_hvps": 0.0}
    s = m.p.settings
    res = m.p.warm.eigs(op, 1, s.tol, m.gen, key="preconditioned")
    return {"preconditioned_sharpness": float(res.eigenvalues[0]), "preconditioned_hvps": float(res.n_hvp)}


PROBES.add("preconditioned_sharpness", Probe(
    "lambda_max(P^-1 (H + wd I)) with P = the adaptive optimizer's preconditioner now (Adam/AdamW: "
    "sqrt(v_hat) + eps; RMSprop: sqrt(square_avg) + eps), param groups reduced to one threshold "
    "(sgdlab.metrics.adaptive); compare with threshold; NaN before the first step; preconditioned_hvps = products",
    lambda _p: ["preconditioned_sharpness", "preconditioned_hvps"], _preconditioned, needs_optimizer=True))


def _trace(m: _Moment) -> dict[str, float]:
    s = m.p.settings
    res = hutchinson_trace(m.operator(), s.trace_samples, generator=m.gen)
    rse = res.stderr / abs(res.estimate) if res.estimate else math.inf
    return {"trace": res.estimate, "trace_stderr": res.stderr, "trace_converged": float(rse < s.trace_rse_tol)}


PROBES.add("trace", Probe(
    "tr(H) by Hutchinson (trace_samples Rademacher probes, one HVP each); trace_stderr = std/sqrt(samples); "
    "trace_converged = 1 when trace_stderr/|trace| < trace_rse_tol",
    lambda _p: ["trace", "trace_stderr", "trace_converged"], _trace))

def _batch_probe(q: str, formula: str) -> Probe:
    cols = [q, f"{q}_stderr", f"{q}_converged", "batch_draws"]
    return Probe(f"{formula} over batches B of batch_size drawn without replacement from the measurement set; "
                 f"Monte Carlo stopped at relative standard error < rse_tol (at most max_batches); "
                 f"{q}_stderr = its standard error, {q}_converged = 1 when the stopping rule was met "
                 f"(0: max_batches ran out); batch_draws = batches used", lambda _p: cols,
                 lambda m: {c: m.batch()[c] for c in cols})


for _q, _formula in QUANTITIES.items():
    PROBES.add(_q, _batch_probe(_q, _formula))


def _sparsity(m: _Moment) -> dict[str, float]:
    s, out = m.p.settings, {}
    for key, f in m.features().items():
        out[f"{key}_active"] = f.positive_fraction
        out[f"{key}_sparsity"] = float(feature_sparsity(f.sample, s.sparsity_tau, normalize=s.normalize_features,
                                                        with_effective_rank=False).coefficient)
    return out


PROBES.add("sparsity", Probe(
    "per layer: <layer>_active = mean_ij 1[A_ij > 0] (raw positive fraction, all units), <layer>_sparsity = the "
    "merged feature sparsity coefficient (sgdlab.metrics.sparsity, |corr| > sparsity_tau merged, at most "
    "max_neurons units) of its output A (n x units) on the measurement set",
    lambda p: [f"{k}_{w}" for k in p.feature_keys for w in ("active", "sparsity")], _sparsity))

PROBES.add("dead_units", Probe(
    "dead_fraction = fraction of the hooked layers' units whose mean |activation| over the measurement set "
    "is < DEAD_THRESHOLD = 1e-3 (Jastrzebski et al. 2018)", _one("dead_fraction"),
    lambda m: {"dead_fraction": float(dead_fraction([f.mean_abs[None] for f in m.features().values()]))}))


def _jacobian_rank(m: _Moment) -> dict[str, float]:
    fn = m.p.functional(evaluated=True)
    x = m.p.probe_x
    x = x.to(fn.device, fn.dtype) if x.is_floating_point() else x.to(fn.device)
    with fn.context():
        phi = per_example_jacobian(lambda prm, xb: functional_call(fn.model, {**prm, **fn.constants}, (xb,)),
                                   fn.unflatten(fn.theta), x)
    return {"jacobian_rank": float(matrix_rank(phi, m.p.settings.rank_rtol))}


PROBES.add("jacobian_rank", Probe(
    "rank of phi = the per-example Jacobian d model(x_i) / d theta ((n k) x p) on the probe inputs: singular "
    "values > rank_rtol x the largest (sgdlab.metrics.jacobian)", _one("jacobian_rank"), _jacobian_rank))
