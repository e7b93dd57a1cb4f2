"""The training engine: all runs of an experiment advance together, batched over runs.

Runs = arms x seeds. Runs whose optimizers draw batches the same way (same sampler kind
and batch size) form a *group* whose parameters carry one leading run dimension; a
group advances with one call per chunk of steps (a compiled kernel where the model has
one). Every group stops at the same evaluation steps, where metrics of all runs are
computed at once. State is plain tensors + the step: checkpoints are small and a resumed
run regenerates exactly the same batches (counter-based sampling, see optim.samplers).

Multi-phase arms (``sgdlab.spec.phases``): a group's runs share their whole phase structure (the
same optimizer group key in every phase and the same boundaries); the group holds one optimizer
runtime per phase, chunks never cross a boundary, and the optimizer state is started afresh at
the first update of each phase. A plain arm is a group with one phase over the whole run.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from sgdlab.core.errors import ConfigError, SgdlabError
from sgdlab.data.checks import check_model_data, data_source
from sgdlab.engine.probes import EngineProbes
from sgdlab.metrics.config import curvature_advice
from sgdlab.metrics.registry import METRIC_SPECS, unknown_metric
from sgdlab.metrics.tracking import CurvatureTracker, RunBatching
from sgdlab.optim.config import Optimizer
from sgdlab.optim.samplers import STREAM_INIT, Sampler
from sgdlab.optim.stepper import advance, kernel_path
from sgdlab.spec.experiment import ExperimentConfig

# Steps advanced per call between evaluations: bounds the pre-drawn batch indices
# (R x CHUNK x b int64) and the step-size table.
CHUNK = 8192
# Metric of multi-phase experiments: index of the phase in effect per run (Group.phase_at).
PHASE_METRIC = "phase"
# Floor of the initial loss used to scale the explosion threshold (a zero initial loss
# would otherwise make every positive loss an "explosion").
MIN_LOSS_SCALE = 1e-12


@dataclass(frozen=True)
class RunSpec:
    """One run of the experiment: an arm with a seed."""

    index: int
    arm: str
    seed: int
    schedule: str
    optimizer: str
    deterministic: bool  # no randomness at all: a single run stands for every seed


@dataclass(frozen=True)
class Phase:
    """The runtime of one phase of a group: its updates ``[start, end)`` and its optimizer (built
    over the phase's length, its schedules counted from ``start``)."""

    start: int
    end: int
    opt: Optimizer


@dataclass
class Group:
    runs: list[int]
    seeds: np.ndarray
    phases: list[Phase]
    schedules: list[Callable]  # per run: step size at every absolute step of the run
    index: int = 0  # its position in the engine's ``all_groups`` (kept by a restricted copy)

    @property
    def opt(self) -> Optimizer:
        """The optimizer of the first phase (the only one of a plain arm)."""
        return self.phases[0].opt

    @property
    def sampler(self) -> Sampler:
        return self.opt.sampler

    def phase_of_update(self, t: int) -> int:
        """Index of the phase that makes update ``t`` (the last phase for ``t >= T``)."""
        return next((k for k, p in enumerate(self.phases) if t < p.end), len(self.phases) - 1)

    def phase_at(self, step: int) -> int:
        """The phase in effect at ``step``: the one whose update produced the state (of update
        ``step - 1``; the first at step 0). Its optimizer state is the one held there."""
        return self.phase_of_update(step - 1) if step > 0 else 0


@dataclass
class TrainState:
    step: int
    params: list[dict[str, torch.Tensor]]  # per group
    diverged: np.ndarray  # (R,) int64, -1 while alive
    max_loss: np.ndarray  # (R,) explosion threshold of each run
    opt_state: list[dict[str, torch.Tensor]] = field(default_factory=list)  # per group: momentum, EMA

    def to_dict(self):
        return {"step": self.step, "params": self.params, "diverged": self.diverged.copy(),
                "max_loss": self.max_loss.copy(), "opt_state": self.opt_state}

    @classmethod
    def from_dict(cls, d):
        return cls(int(d["step"]), d["params"], np.asarray(d["diverged"], dtype=np.int64),
                   np.asarray(d["max_loss"], dtype=np.float64),
                   d.get("opt_state") or [{} for _ in d["params"]])


def check_device(device: str) -> torch.device:
    """The torch device, refusing one this machine does not have (one line, not a CUDA trace)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this machine has no CUDA device (torch "
                              f"{torch.__version__}, cuda build: {torch.version.cuda or 'no'}); use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here "
                              f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device {device!r}: MPS is not available on this machine; use device='cpu'")
    return dev


def plan_runs(cfg: ExperimentConfig, data_n: int, random_init: bool) -> list[RunSpec]:
    runs = []
    for arm in cfg.arms:
        stochastic = any(p.optimizer.build(data_n, e - s).stochastic
                         for p, (s, e) in zip(arm.phase_list, arm.bounds(cfg.steps)))
        deterministic = not random_init and arm.init is None and not stochastic
        seeds = arm.seeds or range(cfg.first_seed, cfg.first_seed + cfg.seeds)
        seeds = [seeds[0]] if deterministic else seeds
        schedule, optimizer = arm.describe()
        for s in seeds:
            runs.append(RunSpec(len(runs), arm.label, s, schedule, optimizer, deterministic))
    return runs


class Engine:
    """Builds data, model and run groups from a config; advances and evaluates a state."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.dtype = getattr(torch, cfg.dtype)
        self.device = check_device(cfg.device)
        self.data = cfg.data.build().to(dtype=self.dtype, device=self.device)
        check_model_data(cfg.model, self.data, data_source(cfg.data))
        self.model = cfg.model.build(self.data)
        self.runs = plan_runs(cfg, self.data.n, self.model.random_init)
        self.eval_steps = cfg.eval.steps(cfg.steps)
        self.snapshot_steps: set[int] = set()
        if cfg.snapshots > 0:
            pick = np.unique(np.round(np.linspace(0, len(self.eval_steps) - 1, cfg.snapshots + 2)).astype(int))
            self.snapshot_steps = {int(self.eval_steps[i]) for i in pick}
        arm_of = {a.label: a for a in cfg.arms}
        bounds = {a.label: a.bounds(cfg.steps) for a in cfg.arms}
        by_key: dict[tuple, list[RunSpec]] = {}
        for r in self.runs:  # same optimizer key and boundaries in every phase: one batched job
            key = tuple((p.optimizer.group_key(), b) for p, b in zip(arm_of[r.arm].phase_list, bounds[r.arm]))
            by_key.setdefault(key, []).append(r)
        self.groups = []
        sched = {a.label: a.step_size(cfg.steps) for a in cfg.arms}  # one function per arm
        for members in by_key.values():
            arm = members[0].arm
            self.groups.append(Group(
                runs=[r.index for r in members],
                seeds=np.array([r.seed for r in members], dtype=np.int64),
                phases=[Phase(s, e, p.optimizer.build(self.data.n, e - s).starting_at(s))
                        for p, (s, e) in zip(arm_of[arm].phase_list, bounds[arm])],
                schedules=[sched[r.arm] for r in members],
                index=len(self.groups),
            ))
        # Multi-phase arms log the phase of every run, and every boundary is an evaluation step
        # (the state at the switch).
        self.phased = any(len(g.phases) > 1 for g in self.groups)
        self.all_groups = self.groups  # every run's group (a restricted copy keeps them for names, batching)
        self.members = np.ones(self.n_runs, dtype=bool)  # the runs this engine advances and evaluates
        # seconds spent advancing (row 0) and evaluating (row 1) each group (column Group.index):
        # what a sharded run balances its processes by (sgdlab.workflows.shard_pieces.measured_costs)
        self.group_seconds = np.zeros((2, len(self.all_groups)))
        if self.phased:
            starts = [p.start for g in self.groups for p in g.phases[1:]]
            self.eval_steps = np.union1d(self.eval_steps, np.array(starts, dtype=np.int64))
        self.curvature = CurvatureTracker.for_engine(self)  # holds the warm starts (metrics.curvature.every)
        self.probes = EngineProbes.for_engine(self)  # Monitor probes named in metrics.names

    def restricted(self, only) -> Engine:
        """A copy that advances and evaluates only the runs ``only`` (run indices; one shard of
        ``sgdlab.workflows.shards``), sharing data and model. Run indices, metric names and (R,) arrays stay
        those of the whole experiment; the other runs' values are NaN and they never diverge. Its
        groups are the non-empty restrictions of this engine's, in the same order."""
        eng = copy.copy(self)
        eng.members = np.zeros(self.n_runs, dtype=bool)
        eng.members[np.asarray(only, dtype=np.int64)] = True
        eng.groups = [g for g in (_restrict(g, eng.members) for g in self.all_groups) if g.runs]
        eng.curvature = CurvatureTracker.for_engine(eng)  # its own warm starts
        eng.group_seconds = np.zeros((2, len(self.all_groups)))
        return eng

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def keeps_eval_state(self) -> bool:
        """Whether evaluating keeps per-run state from one evaluation to the next (curvature
        tracking's and Monitor probes' warm starts), which a restricted copy starts afresh."""
        return self.curvature.enabled or bool(self.probes.probes)

    @property
    def batch_invariant(self) -> bool:
        """Are each run's numbers independent of the runs batched with it, whatever the BLAS? When
        the model says so of its kernels and own metrics (``BatchedModel.batch_invariant``), every
        phase of every group steps on those kernels (``optim.stepper.kernel_path``) on the CPU in
        float64, and nothing else is measured (curvature, Monitor probes, a user's metrics).
        Otherwise runs are spread over processes only where the BLAS probe passes
        (``sgdlab.workflows.cores.blas_batch_invariance``)."""
        return (getattr(self.model, "batch_invariant", False) and self.cfg.fused and self.device.type == "cpu"
                and self.dtype == torch.float64
                and all(kernel_path(self.model, p.opt, self.data) for g in self.all_groups for p in g.phases)
                and not self.curvature.enabled and not self.probes.names()
                and not self.user_metrics)

    @property
    def user_metrics(self) -> list[str]:
        """The metrics of the user's own (``sgdlab.register_metric`` with ``compute``) this experiment measures."""
        return [n for n in self.cfg.metrics.names if METRIC_SPECS.computed(n)]

    def metric_names(self) -> list[str]:
        """Every metric this experiment can log: the model family's, EMA copies, user metrics
        (sgdlab.register_metric), curvature, Monitor probes named in metrics.names, phase."""
        names = set(self.model.metric_names(self.data, self.cfg.metrics, self.dtype))
        if self.has_ema:
            names |= {"ema_" + k for k in names}
        names |= set(METRIC_SPECS.computed_names()) | set(self.probes.names())
        if self.curvature.enabled:
            names |= set(self.curvature.names())
        if self.phased:
            names.add(PHASE_METRIC)
        return sorted(names)

    @property
    def has_ema(self) -> bool:
        return any(p.opt.ema for g in self.all_groups for p in g.phases)

    def run_batching(self, step: int) -> list[RunBatching]:
        """How every run draws batches at ``step`` (its phase then): curvature tracking's input."""
        runs = {}
        for g in self.all_groups:
            opt = g.phases[g.phase_at(step)].opt
            b = None if opt.sampler.full else int(opt.sampler.b)
            for r, s in zip(g.runs, g.seeds):
                runs[r] = RunBatching(r, int(s), b, float(opt.weight_decay))
        return [runs[i] for i in sorted(runs)]

    def check_names(self) -> None:
        """Refuse metric names (``metrics.names``) and figure panels (``figure``) that this
        experiment does not log, listing the ones it does, before anything is trained."""
        if not self.cfg.metrics.names and not self.cfg.figure:
            return
        self._check_user_metric_names()
        valid = self.metric_names()
        logged = set(valid) - set(METRIC_SPECS.computed_names())  # user metrics are logged when named
        if self.cfg.metrics.names:  # the model's metrics are filtered; curvature and phase always logged
            logged = set(self.cfg.metrics.names) | {"train_loss"} | set(self.probes.names()) | (
                set(self.curvature.names()) if self.curvature.enabled else set()) | (
                {PHASE_METRIC} if self.phased else set())
        for key, asked in (("metrics.names", self.cfg.metrics.names), ("figure", self.cfg.figure)):
            for name in asked:
                if name not in valid and not (key == "metrics.names" and name in self.probes.probes):
                    err = unknown_metric(name, valid, key)
                    raise ConfigError(f"{err}{curvature_advice(name, self.cfg.metrics)}")
                if key == "figure" and name not in logged:
                    raise ConfigError(f"figure: panel {name!r} is not in metrics.names, so it is never logged; "
                                      f"add it there or drop the panel")

    def _check_user_metric_names(self) -> None:
        """A user metric named like one this model computes would replace it: refused, naming both."""
        from sgdlab.core.registry import source_of

        user = set(METRIC_SPECS.computed_names()) & set(self.cfg.metrics.names)
        if not user:
            return
        own = set(self.model.metric_names(self.data, self.cfg.metrics, self.dtype))
        own |= {"ema_" + k for k in own} | set(self.curvature.names() if self.curvature.enabled else ())
        for name in sorted(user & own):
            raise ConfigError(f"metric {name!r}: {source_of(METRIC_SPECS.get(name).compute)} registers it, but model "
                              f"{self.cfg.model.kind!r} computes a built-in metric of that name; rename yours")

    def params_by_run(self, state: TrainState) -> dict[int, dict[str, torch.Tensor]]:
        """{run index: {name: tensor}} (copies, on CPU)."""
        out = {}
        for g, p in zip(self.groups, state.params):
            for j, r in enumerate(g.runs):
                out[r] = {k: v[j].detach().cpu().clone() for k, v in p.items()}
        return out

    def params_of(self, state: TrainState, run: int) -> dict[str, torch.Tensor]:
        """Parameters of one run (views into the batched tensors)."""
        for g, p in zip(self.groups, state.params):
            if run in g.runs:
                j = g.runs.index(run)
                return {k: v[j] for k, v in p.items()}
        raise IndexError(f"run {run} not in 0..{self.n_runs - 1}")

    def init_seeds(self, g: Group) -> list[int]:
        # Parameters of run s come from stream STREAM_INIT of seed s: independent of batches.
        return [int(np.random.SeedSequence([int(s), STREAM_INIT]).generate_state(1)[0]) for s in g.seeds]

    def initial_state(self, overrides: dict[int, dict[str, torch.Tensor]] | None = None) -> TrainState:
        """Step 0: every run's parameters from its seed, except ``overrides`` ({run index:
        {name: tensor}}, e.g. an arm's ``init`` from a file or another run), which must have the
        model's names and shapes."""
        params = []
        for g in self.groups:
            p = self.model.init_params(self.init_seeds(g), dtype=self.dtype)
            for j, r in enumerate(g.runs):
                for k, v in (overrides or {}).get(r, {}).items():
                    if k not in p or tuple(v.shape) != tuple(p[k].shape[1:]):
                        want = {n: tuple(t.shape[1:]) for n, t in p.items()}
                        got = "absent from the model" if k not in p else f"shape {tuple(v.shape)}"
                        raise ConfigError(f"initial parameters of run {r} ({self.runs[r].arm}, seed "
                                          f"{self.runs[r].seed}): {k!r} is {got}; the model has {want}")
                    p[k][j] = v.to(p[k].dtype)
            params.append({k: v.to(self.device).contiguous() for k, v in p.items()})
        R = self.n_runs
        opt_state = [g.opt.init_state(p, self.model.trainable(p)) for g, p in zip(self.groups, params)]
        state = TrainState(0, params, np.full(R, -1, dtype=np.int64), np.full(R, np.inf), opt_state)
        # Only the initial train loss (the explosion scale): the full evaluation of step 0 (rank,
        # curvature tracking, ...) happens once, in run().
        loss0 = np.full(R, np.nan)
        with torch.no_grad():
            for g, p in zip(self.groups, params):
                m = self.model.metrics(p, self.data, self.cfg.metrics, {"train_loss"})
                loss0[g.runs] = m["train_loss"].double().cpu().numpy()
        state.max_loss = self.cfg.divergence_factor * np.maximum(np.nan_to_num(loss0, nan=np.inf), MIN_LOSS_SCALE)
        return state

    def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
        """Metrics of every run at the current state: name -> (R,) float64 (NaN once diverged)."""
        out: dict[str, np.ndarray] = {}
        names = set(self.cfg.metrics.names) | {"train_loss"} if self.cfg.metrics.names else None
        with torch.no_grad():
            for g, p, st in zip(self.groups, state.params, state.opt_state):
                t0 = time.perf_counter()
                m = self.model.metrics(p, self.data, self.cfg.metrics, names)
                m.update(self._custom_metrics(p, names))
                if g.phases[g.phase_at(state.step)].opt.ema:  # the EMA weights, own BatchNorm statistics
                    pe = self.model.with_weights(p, {k[4:]: v for k, v in st.items() if k.startswith("ema:")},
                                                 self.data)
                    m.update({"ema_" + k: v for k, v in self.model.metrics(pe, self.data, self.cfg.metrics,
                                                                           names).items()})
                for k, v in m.items():
                    out.setdefault(k, np.full(self.n_runs, np.nan))[g.runs] = v.detach().double().cpu().numpy()
                self.group_seconds[1, g.index] += time.perf_counter() - t0
        if self.has_ema:  # a phase without EMA: its runs' (or every run's) EMA metrics are NaN
            for k in [k for k in out if not k.startswith("ema_")]:
                out.setdefault("ema_" + k, np.full(self.n_runs, np.nan))
        if self.phased:
            out[PHASE_METRIC] = np.full(self.n_runs, np.nan)
            for g in self.groups:
                out[PHASE_METRIC][g.runs] = g.phase_at(state.step)
        out.update(self.curvature.measure(state.step, self.groups, state.params, state.diverged,
                                          runs=self.run_batching(state.step)))
        out.update(self.probes.measure(state.step, self.groups, state.params, state.diverged,
                                       runs=self.run_batching(state.step)))
        # Divergence seen at evaluation (covers models without a per-step check).
        exploded = ~(out["train_loss"] <= state.max_loss) & (state.diverged < 0) & self.members
        state.diverged[exploded] = state.step
        dead = (state.diverged >= 0) & (state.diverged <= state.step)
        for v in out.values():
            v[dead] = np.nan
        return out

    def _custom_metrics(self, params, names) -> dict[str, torch.Tensor]:
        """The user-registered metrics (sgdlab.register_metric: specs with ``compute``) the config
        names, (R,) each."""
        out = {}
        for name in names or ():
            spec = METRIC_SPECS.computed(name)
            if spec is not None:
                try:
                    v = torch.as_tensor(spec.compute(self.model, params, self.data)).reshape(-1)
                except SgdlabError:
                    raise
                except Exception as e:  # the user's code: one line naming its file and line (--debug: all)
                    from sgdlab.core.user_modules import exception_line

                    fn = spec.compute
                    raise ConfigError(f"metric {name!r} (module {getattr(fn, '__module__', '?')}) raised "
                                      f"{exception_line(e, fn)}") from e
                R = next(iter(params.values())).shape[0]
                if v.numel() != R:
                    raise ConfigError(f"metric {name!r} returned {v.numel()} values for {R} runs; it must "
                                      f"return one value per run, shape (R,)")
                out[name] = v
        return out

    def advance_to(self, state: TrainState, target: int) -> None:
        """Advance all groups from state.step to ``target`` (in chunks of at most CHUNK, never
        across a phase boundary; a phase's first update starts its optimizer state afresh)."""
        for i, (g, p) in enumerate(zip(self.groups, state.params)):
            t = state.step
            t0 = time.perf_counter()
            while t < target:
                k = g.phase_of_update(t)
                phase = g.phases[k]
                if k != g.phase_at(t):
                    state.opt_state[i] = phase.opt.init_state(p, self.model.trainable(p))
                t1 = min(target, t + CHUNK, phase.end)
                steps = np.arange(t, t1)
                uniq = {id(s): s for s in g.schedules}  # one schedule function per arm: evaluate once
                per_fn = {key: np.broadcast_to(s(steps), steps.shape) for key, s in uniq.items()}
                lr = np.stack([per_fn[id(s)] for s in g.schedules]).astype(np.float64)
                div = np.ascontiguousarray(state.diverged[g.runs])
                advance(self.model, p, self.data, phase.opt, state.opt_state[i], g.seeds, np.ascontiguousarray(lr),
                        t, div, np.ascontiguousarray(state.max_loss[g.runs]), fused=self.cfg.fused)
                state.diverged[g.runs] = div
                t = t1
            self.group_seconds[0, g.index] += time.perf_counter() - t0
        state.step = max(state.step, target)

    def run(self, state: TrainState, on_eval: Callable[[int, dict], None] | None = None,
            on_progress: Callable[[int], None] | None = None,
            after_eval: Callable[[TrainState], None] | None = None, evaluate_start: bool = True) -> TrainState:
        """Advance to the end, evaluating at every eval step after state.step, and at state.step
        itself when ``evaluate_start`` (a fresh run; a resumed one has logged it already)."""
        for t in self.eval_steps:
            if t < state.step or (t == state.step and not evaluate_start):
                continue
            before = state.step
            self.advance_to(state, int(t))
            if on_progress:
                on_progress(state.step - before)
            metrics = self.evaluate(state)
            if on_eval:
                on_eval(int(t), metrics)
            if after_eval:
                after_eval(state)
        return state


def _restrict(g: Group, members: np.ndarray) -> Group:
    """The runs of group ``g`` that are ``members`` (a bool mask over run indices), in order."""
    keep = [j for j, r in enumerate(g.runs) if members[r]]
    return Group([g.runs[j] for j in keep], g.seeds[keep], g.phases, [g.schedules[j] for j in keep], g.index)


def train(cfg: ExperimentConfig) -> tuple[Engine, TrainState, dict[str, np.ndarray]]:
    """Run an experiment in memory (no run directory, no output).

    Returns (engine, final state, metrics name -> (E, R)) with E = len(engine.eval_steps).
    """
    eng = Engine(cfg)
    rows: list[dict] = []
    state = eng.run(eng.initial_state(), on_eval=lambda t, m: rows.append(m))
    return eng, state, {k: np.stack([r[k] for r in rows]) for k in rows[0]}
