"""Python API: everything the CLI does, one call away (no argument parsing involved)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sgdlab.core import config as _config
from sgdlab.core.config import to_dict
from sgdlab.core.errors import (
    CheckpointError,
    ConfigError,
    SgdlabError,
    choices_message,
)
from sgdlab.core.startup import collector_paused
from sgdlab.engine.train import Engine, TrainState
from sgdlab.spec.catalog import list_experiments, load_experiment, override
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.store.loggers import check_backends
from sgdlab.store.metrics_rows import metrics_row, rows_to_arrays
from sgdlab.store.runs import INPUTS, RunDir
from sgdlab.store.summary import summarize
from sgdlab.store.trust import adopt_edits, check_trusted, remember
from sgdlab.workflows.inits import initial_params
from sgdlab.workflows.run_loop import _execute

if TYPE_CHECKING:
    from sgdlab.workflows.cores import Parallelism
    from sgdlab.workflows.plotter import Plotter

__all__ = [
    "ExperimentConfig",
    "RunResult",
    "export_run",
    "list_experiments",
    "load_experiment",
    "load_run",
    "override",
    "resume",
    "run",
]


@dataclass
class RunResult:
    """What a finished (or partial) run produced.

    steps: (E,) evaluation steps; metrics: name -> (E, R) array (NaN after divergence);
    runs: one dict per run (index, arm, seed, schedule, ...); summary: summary.json content.
    """

    path: Path | None
    config: ExperimentConfig
    runs: list[dict]
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    summary: dict | None
    # In-memory runs (no directory) keep their parameters here: {step: {run: {name: tensor}}}.
    _params: dict | None = None

    def snapshots(self) -> list[tuple[int, dict[int, dict[str, torch.Tensor]]]]:
        """Saved parameters, ``[(step, {run index: {name: tensor}})]`` sorted by step: the steps the
        config's ``snapshots`` chose, and the final state."""
        if self.path is None:
            return sorted((self._params or {}).items())
        return sorted(RunDir(self.path).saved_params().items())

    @property
    def saved_steps(self) -> list[int]:
        """Steps whose parameters :meth:`params` can return."""
        return [t for t, _ in self.snapshots()]

    def params(self, step: int | None = None, run: int | None = None) -> dict[str, torch.Tensor]:
        """Parameters at a saved ``step`` (default: the last): ``{name: tensor (R, ...)}`` over all
        runs in run-index order, or ``{name: tensor (...)}`` of one ``run``."""
        snaps = dict(self.snapshots())
        if not snaps:
            raise CheckpointError("this run saved no parameters (a run directory without checkpoint; set "
                                  "snapshots > 0 to keep parameters during training)")
        step = max(snaps) if step is None else int(step)
        if step not in snaps:
            raise ConfigError(f"no parameters saved at step {step}; saved steps: {sorted(snaps)} "
                              f"(set snapshots = N to keep N more)")
        by_run = snaps[step]
        if run is not None:
            if run not in by_run:
                raise ConfigError(f"run {run} not in 0..{len(by_run) - 1}")
            return dict(by_run[run])
        order = sorted(by_run)
        return {k: torch.stack([by_run[r][k] for r in order]) for k in by_run[order[0]]}

    def final(self, name: str) -> np.ndarray:
        """Last logged value of a metric per run, (R,)."""
        return self.metrics[name][-1]

    def arm(self, name: str) -> np.ndarray:
        """Indices of the runs of one arm, by its label (or by its name as written in the config,
        placeholders included)."""
        labels = {a.name: a.label for a in self.config.arms}
        label = name if any(r["arm"] == name for r in self.runs) else labels.get(name, name)
        idx = [r["index"] for r in self.runs if r["arm"] == label]
        if not idx:
            raise ConfigError(choices_message("arm", name, {r["arm"] for r in self.runs}))
        return np.array(idx)

    def to_frame(self):
        """Long-format pandas DataFrame (step, run, arm, seed, metric columns); needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("RunResult.to_frame needs pandas: pip install pandas") from None
        rows = []
        for e, t in enumerate(self.steps):
            for r in self.runs:
                row = {"step": int(t), "run": r["index"], "arm": r["arm"], "seed": r["seed"]}
                row.update({k: v[e, r["index"]] for k, v in self.metrics.items()})
                rows.append(row)
        return pd.DataFrame(rows)


# --------------------------------------------------------------------------- experiments

# --------------------------------------------------------------------------- running

def draw_figures(rd: RunDir, quiet: bool, plotter: Plotter | None = None) -> None:
    """Draw every figure, then record them in meta.json with "finished": only then is the run
    complete (a kill while drawing leaves it resumable, and resume draws them again). ``plotter``:
    draws the panel figure (the same file; :mod:`sgdlab.workflows.plotter`)."""
    from sgdlab.plots import plot_run

    if not quiet:
        print("drawing figures ...", file=sys.stderr, flush=True)
    drawn, errors = [], []
    try:
        drawn = plot_run(rd, errors=errors, draw_panels=plotter.draw if plotter is not None else None)
    except (SgdlabError, OSError, ValueError) as e:  # a figure must never lose a finished run
        errors.append(f"{type(e).__name__}: {e}")
    for err in errors:
        print(f"warning: figure not drawn: {err}", file=sys.stderr)
    rd.update_meta(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   figures=[str(Path(p).relative_to(rd.path)) for p in drawn], figure_errors=errors)


def _finish(eng: Engine, rd: RunDir | None, state: TrainState, steps, metrics, wall: float, quiet: bool,
            plotter: Plotter | None = None) -> dict:
    summary = summarize(eng.cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, state.diverged, wall)
    if rd is not None:
        rd.write_summary(summary)
        rd.update_meta(wall_seconds=wall, failed=None)  # a resumed run that failed before has finished
        rd.remember_metrics(steps, metrics)
        draw_figures(rd, quiet, plotter)
    if not quiet:
        from sgdlab.core.config import to_dict
        from sgdlab.spec.references import matching
        from sgdlab.store.summary import format_table, table_columns

        print(format_table(summary, table_columns(eng.cfg), matching(to_dict(eng.cfg))))
    return summary


def _failed(rd: RunDir, rows: list, e: Exception) -> None:
    """A run that raised: before its first evaluation it holds no result, and its directory is
    removed (an overwritten run is put back); after it, meta.json says it failed and why (it can be
    resumed from its last checkpoint once the cause is fixed, or replaced with --overwrite)."""
    if not rows:
        rd.discard()
        return
    try:
        rd.update_meta(failed=f"{type(e).__name__}: {' '.join(str(e).split())}")
    except (SgdlabError, OSError):  # e.g. the disk is full: the error being raised says so already
        pass


def _worker_died(e: BaseException) -> bool:
    """A worker process of a sharded run died or could not start (not the run's own error): a
    directory holding results stays resumable, never marked failed or removed."""
    from sgdlab.workflows.shards import WorkerError

    return isinstance(e, WorkerError)


def _interrupted(rd: RunDir | None, state: TrainState) -> None:
    if rd is not None:
        print(f"\ninterrupted at step {state.step}; resume with: sgdlab run --resume {rd.path}", file=sys.stderr)


def _parallelism(eng: Engine, workers: int | None, quiet: bool, first_state=None) -> Parallelism:
    """Processes and threads of this run (sgdlab.workflows.cores), said in one line when more than
    one. ``first_state()``: the state the run starts from (default: the engine's initial state),
    for the probe of the experiment's own products where the BLAS fails the generic one
    (sgdlab.workflows.shard_probe)."""
    from sgdlab.workflows.cores import available_cpus, choose
    from sgdlab.workflows.shard_probe import experiment_invariance

    par = choose(eng.cfg, eng.n_runs, workers, torch.get_num_threads(), invariant=eng.batch_invariant,
                 probe=lambda: experiment_invariance(eng, (first_state or eng.initial_state)()))
    if par.workers > 1:  # the pieces the runs actually form (sgdlab.workflows.shards.split)
        from sgdlab.workflows.shards import split

        pieces = len(split(eng, par.workers))
        why = par.reason
        if pieces < par.workers:
            why += (f"; {pieces} pieces: no process holds a single run of a group (a batch of one may "
                    f"take another code path)")
        if pieces > (cpus := available_cpus()):
            why += f"; more processes than the {cpus} usable CPU(s): they take turns on them"
        par = dataclasses.replace(par, workers=pieces, reason=why)
    if not quiet and (par.workers > 1 or workers is None or (workers or 1) > par.workers):
        print(f"{eng.cfg.name}: {eng.n_runs} runs over {par.workers} process(es), {par.threads} thread(s) each "
              f"({par.reason})", file=sys.stderr)
    return par


def _spread(eng: Engine, rd: RunDir | None, state: TrainState, par: Parallelism, execute, kill_at=None) -> TrainState:
    """``execute(engine, state)`` with the runs spread over ``par.workers`` processes and torch on
    ``par.threads`` threads; returns the final state (whole). Records the processes in meta.json."""
    from sgdlab.workflows.cores import run_threads
    from sgdlab.workflows.shards import WorkerDied, spread, whole

    fds = (rd.lock.fd,) if rd is not None and rd.lock is not None and rd.lock.fd is not None else ()
    with run_threads(par.threads), spread(eng, state, par.workers, fds, kill_at) as (xeng, xstate):
        if rd is not None and xeng is not eng:  # sharded: which processes did the work
            rd.update_meta(workers=len(xeng.pids), worker_pids=xeng.pids)
        try:
            execute(xeng, xstate)
        except KeyboardInterrupt:
            _interrupted(rd, xstate)
            raise
        except WorkerDied as e:  # one line: what died, and how to go on
            if rd is None:
                raise
            raise WorkerDied(f"{e}; the run directory keeps its last checkpoint, from which it resumes "
                             f"(sgdlab run --resume {rd.path})") from None
        if rd is not None and xeng is not eng:
            rd.update_meta(rebalanced=xeng.rebalanced)
        return whole(xstate)


def preflight(cfg: ExperimentConfig) -> tuple[Engine, dict]:
    """Every check made before any training, shared by ``run`` and ``sgdlab run --dry-run`` (so a
    config passes one exactly when it passes the other): figure names, logger backends, data (files and functions,
    checked against the model), metric names, exact initial parameters. Returns the engine and
    the initial parameters (:func:`sgdlab.workflows.inits.initial_params`)."""
    from sgdlab.plots import FIGURES

    for fig in cfg.extra_figures:
        FIGURES.get(fig)
    check_backends(cfg.loggers)
    with collector_paused():  # loading the kernels (numba's import among it): sgdlab.core.startup
        eng = Engine(cfg)
        eng.check_names()
        return eng, initial_params(cfg, eng)


def run(cfg: ExperimentConfig | str, out: str | Path | None = None, *, progress: bool = True, quiet: bool = False,
        overwrite: bool = False, workers: int | None = 1, plotter: Plotter | None = None,
        _stop_after: int | None = None, _kill_worker_at: int | None = None) -> RunResult:
    """Train every run of ``cfg`` (a config or an experiment name) and return the result.

    With ``out`` the run directory is written as it goes (resumable; locked against a second
    writer); without, runs in memory. ``overwrite`` replaces an existing run directory.
    ``workers``: processes the runs are spread over (``sgdlab.workflows.shards``: the same results as one
    process; None = one per physical core, capped by the runs; see ``sgdlab.workflows.cores``).
    ``plotter``: a process started before torch was imported that draws the panel figure
    (:class:`sgdlab.workflows.plotter.Plotter`; the ``sgdlab`` command starts one).
    """
    if isinstance(cfg, (str, Path)):
        cfg = load_experiment(cfg)
    if out is not None:
        RunDir.check_target(out, overwrite)
    t0 = time.monotonic()
    eng, start = preflight(cfg)  # a bad config, data or init fails here, before the run directory exists
    par = _parallelism(eng, workers, quiet, lambda: eng.initial_state(start))
    remember(to_dict(cfg))  # the modules this user runs are theirs: reading the run later imports them
    rd = RunDir.create(out, cfg, eng.runs, overwrite=overwrite, keep_replaced=True) if out is not None else None
    rows: list = []
    try:
        state = eng.initial_state(start)
        snaps: dict = {}
        try:
            state = _spread(eng, rd, state, par, lambda e, s: _execute(e, rd, s, progress, rows,
                                                                        stop_after=_stop_after, snaps=snaps),
                            _kill_worker_at)
        except KeyboardInterrupt:
            raise  # _spread said where to resume
        except Exception as e:
            if rd is not None and (not rows or not _worker_died(e)):  # nothing to resume: removed
                _failed(rd, rows, e)
            raise
        steps = np.array([t for t, _ in rows])
        metrics = {k: np.stack([m[k] for _, m in rows]) for k in rows[0][1]}
        summary = _finish(eng, rd, state, steps, metrics, time.monotonic() - t0, quiet, plotter)
    finally:
        if rd is not None:
            rd.release()
    kept = None if rd is not None else {**snaps, state.step: eng.params_by_run(state)}
    return RunResult(rd.path if rd else None, cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics,
                     summary, kept)


def _from_checkpoint(rd: RunDir, eng: Engine, cfg: ExperimentConfig) -> tuple[TrainState, list, float]:
    """(state, metric rows so far, wall seconds so far) of a checkpointed run: the rows are
    checked against the checkpoint, and the row of its step recomputed if it was torn."""
    ckpt = rd.load_checkpoint()
    try:  # re-read through today's dataclasses: fields added since (with defaults) still match
        same = to_dict(_config.from_dict(ExperimentConfig, ckpt.get("config") or {})) == to_dict(cfg)
    except ConfigError:
        same = False
    if not same:
        raise CheckpointError(f"checkpoint in {str(rd.path)!r} was written by a different config than "
                              f"config.toml; restore the original config.toml or start a new run")
    state = TrainState.from_dict(ckpt["state"])
    keep, redo = rd.validated_rows(eng.eval_steps, state.step, eng.n_runs)
    if redo is not None:  # the row of the checkpoint step was torn: recompute it from the state
        keep.append(metrics_row(redo, eng.evaluate(state)))
    rd.write_rows(keep)
    rd.update_meta(resumed_from_step=state.step)
    steps0, metrics0 = rows_to_arrays(keep)
    rows = [(int(t), {k: v[i] for k, v in metrics0.items()}) for i, t in enumerate(steps0)]
    return state, rows, float(ckpt.get("wall_seconds", 0.0))


def resume(path: str | Path, *, progress: bool = True, quiet: bool = False, lock_wait: float = 0.0,
           workers: int | None = 1, trust_imports: bool = False, accept_changed_inputs: bool = False,
           plotter: Plotter | None = None, _stop_after: int | None = None,
           _kill_worker_at: int | None = None) -> RunResult:
    """Continue a killed run from its last checkpoint (from step 0 if it was killed before its
    first one); the result equals an uninterrupted run. ``lock_wait``: seconds to wait for the
    directory's lock while another process holds it (a requeued cluster task waits for its
    predecessor's lock to go stale).

    The metrics written so far are checked against the checkpoint (one row per evaluation step up
    to it; a corrupt row that cannot be recomputed is an error naming its line); a run killed
    while drawing its figures gets them drawn. ``workers``: as in :func:`run` (any number: a
    checkpoint does not depend on how many processes wrote it); ``plotter``: as in :func:`run`.

    Before anything runs, the run must be the same experiment: the content hashes of its input
    files and of runs.json recorded when it started (:mod:`sgdlab.store.inputs`) must match, else a
    CheckpointError names what changed (``accept_changed_inputs``: continue with today's files and
    record them). Its modules must be the caller's own or ``trust_imports`` (:mod:`sgdlab.store.trust`).
    """
    rd = RunDir(path, trust_imports=trust_imports)
    table = rd.config_table()
    changed = rd.input_changes()
    if changed and not accept_changed_inputs:
        raise CheckpointError(f"run directory {str(rd.path)!r} is not the experiment it started as: "
                              f"{'; '.join(changed)}. Resuming would mix two experiments in one run: restore "
                              f"them, start a new run, or pass --accept-changed-inputs (accept_changed_inputs=True) "
                              f"to continue with today's files")
    if changed:
        adopt_edits(rd.meta().get(INPUTS) or {})
    if not trust_imports:
        check_trusted(table, f"run directory {str(rd.path)!r}", "resuming it")
    cfg = rd.config()
    rd.open_writer(lock_wait)
    try:
        if rd.complete():
            if not quiet:
                print(f"{rd.path} is already complete; nothing to resume", file=sys.stderr)
            return load_run(rd.path, trust_imports=True)  # checked above
        if rd.summary() is not None:  # trained and summarized; killed while drawing figures
            draw_figures(rd, quiet, plotter)
            return load_run(rd.path, trust_imports=True)
        t0 = time.monotonic()
        eng = Engine(cfg)
        if changed:  # accepted: today's inputs become the run's, and the change is on record
            rd.accept_inputs(eng.runs)
            rd.update_meta(inputs_accepted=changed)
        if rd.has_checkpoint():
            state, rows, wall0 = _from_checkpoint(rd, eng, cfg)
            fresh = False
        else:  # killed before its first checkpoint (its first seconds): start again from step 0
            rd.restart(eng.runs)
            state, rows, wall0, fresh = eng.initial_state(initial_params(cfg, eng)), [], 0.0, True
        par = _parallelism(eng, workers, quiet, lambda: state)
        try:
            state = _spread(eng, rd, state, par, lambda e, s: _execute(e, rd, s, progress, rows, stop_after=_stop_after,
                                                                        fresh=fresh, wall0=wall0), _kill_worker_at)
        except KeyboardInterrupt:
            raise  # _spread said where to resume
        except Exception as e:
            if not _worker_died(e):
                _failed(rd, [None], e)  # never removed: it holds the earlier segments' results
            raise
        steps, metrics = rd.metrics()
        summary = _finish(eng, rd, state, steps, metrics, wall0 + time.monotonic() - t0, quiet, plotter)
    finally:
        rd.release()
    return RunResult(rd.path, cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, summary)


def export_run(run_dir: str | Path, backend: str) -> Path:
    """Replay a run directory's metrics into ``RUN_DIR/<backend>`` (TensorBoard, W&B offline,
    MLflow local); returns that folder. Reads the config's name only: nothing is imported."""
    from sgdlab.store.loggers import Logger

    rd = RunDir(run_dir)
    steps, metrics = rd.metrics()
    name = rd.config_table().get("name", "experiment")
    lg = Logger(backend, rd.path, rd.runs(), str(name))
    try:
        for e, t in enumerate(steps):
            lg.log(int(t), {k: v[e] for k, v in metrics.items()})
    finally:
        lg.close()
    return lg.out


def load_run(path: str | Path, trust_imports: bool = False) -> RunResult:
    """Read a run directory (finished or not) from disk. Its config's modules are imported only
    if they are the caller's own or ``trust_imports`` (:mod:`sgdlab.store.trust`): a run directory from
    elsewhere is code, not data."""
    rd = RunDir(path, trust_imports=trust_imports)
    steps, metrics = rd.metrics()
    return RunResult(rd.path, rd.config(), rd.runs(), steps, metrics, rd.summary())
