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
from sgdlab.spec.catalog import list_experiments, load_experiment, override
from sgdlab.core.config import to_dict
from sgdlab.core.errors import CheckpointError, ConfigError, SgdlabError, choices_message
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.workflows.inits import initial_params
from sgdlab.store.loggers import check_backends
from sgdlab.store.runs import RunDir, metrics_row, rows_to_arrays
from sgdlab.store.summary import summarize
from sgdlab.engine.train import Engine, TrainState
from sgdlab.workflows.run_loop import _execute

if TYPE_CHECKING:
    from sgdlab.workflows.cores import Parallelism

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

def draw_figures(rd: RunDir, quiet: bool) -> None:
    """Draw every figure, then record them in meta.json with "finished": only then is the run
    complete (a kill while drawing leaves it resumable, and resume draws them again)."""
    from sgdlab.plots import plot_run

    if not quiet:
        print("drawing figures ...", file=sys.stderr, flush=True)
    drawn, errors = [], []
    try:
        drawn = plot_run(rd.path, errors=errors)
    except (SgdlabError, OSError, ValueError) as e:  # a figure must never lose a finished run
        errors.append(f"{type(e).__name__}: {e}")
    for err in errors:
        print(f"warning: figure not drawn: {err}", file=sys.stderr)
    rd.update_meta(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   figures=[str(Path(p).relative_to(rd.path)) for p in drawn], figure_errors=errors)


def _finish(eng: Engine, rd: RunDir | None, state: TrainState, steps, metrics, wall: float, quiet: bool) -> dict:
    summary = summarize(eng.cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, state.diverged, wall)
    if rd is not None:
        rd.write_summary(summary)
        rd.update_meta(wall_seconds=wall)
        draw_figures(rd, quiet)
    if not quiet:
        from sgdlab.store.summary import format_table, table_columns

        print(format_table(summary, table_columns(eng.cfg)))
    return summary


def _interrupted(rd: RunDir | None, state: TrainState) -> None:
    if rd is not None:
        print(f"\ninterrupted at step {state.step}; resume with: sgdlab run --resume {rd.path}", file=sys.stderr)


def _parallelism(eng: Engine, workers: int | None, quiet: bool) -> Parallelism:
    """Processes and threads of this run (sgdlab.workflows.cores), said in one line when more than one."""
    from sgdlab.workflows.cores import choose

    par = choose(eng.cfg, eng.n_runs, workers, torch.get_num_threads())
    if par.workers > 1:  # the pieces the runs actually form (sgdlab.workflows.shards.split)
        from sgdlab.workflows.shards import split

        par = dataclasses.replace(par, workers=len(split(eng, par.workers)))
    if not quiet and (par.workers > 1 or workers is None or (workers or 1) > par.workers):
        print(f"{eng.cfg.name}: {eng.n_runs} runs over {par.workers} process(es), {par.threads} thread(s) each "
              f"({par.reason})", file=sys.stderr)
    return par


def _spread(eng: Engine, rd: RunDir | None, state: TrainState, par: Parallelism, execute, kill_at=None) -> TrainState:
    """``execute(engine, state)`` with the runs spread over ``par.workers`` processes and torch on
    ``par.threads`` threads; returns the final state (whole). Records the processes in meta.json."""
    from sgdlab.workflows.cores import torch_threads
    from sgdlab.workflows.shards import WorkerError, spread, whole

    fds = (rd.lock.fd,) if rd is not None and rd.lock is not None and rd.lock.fd is not None else ()
    with torch_threads(par.threads), spread(eng, state, par.workers, fds, kill_at) as (xeng, xstate):
        if rd is not None and xeng is not eng:  # sharded: which processes did the work
            rd.update_meta(workers=len(xeng.pids), worker_pids=xeng.pids)
        try:
            execute(xeng, xstate)
        except (KeyboardInterrupt, WorkerError):
            _interrupted(rd, xstate)
            raise
        return whole(xstate)


def run(cfg: ExperimentConfig | str, out: str | Path | None = None, *, progress: bool = True, quiet: bool = False,
        overwrite: bool = False, workers: int | None = 1, _stop_after: int | None = None,
        _kill_worker_at: int | None = None) -> RunResult:
    """Train every run of ``cfg`` (a config or an experiment name) and return the result.

    With ``out`` the run directory is written as it goes (resumable; locked against a second
    writer); without, runs in memory. ``overwrite`` replaces an existing run directory.
    ``workers``: processes the runs are spread over (``sgdlab.workflows.shards``: the same results as one
    process; None = one per physical core, capped by the runs; see ``sgdlab.workflows.cores``).
    """
    if isinstance(cfg, (str, Path)):
        cfg = load_experiment(cfg)
    from sgdlab.plots import FIGURES

    for fig in cfg.extra_figures:
        FIGURES.get(fig)  # unknown figure names fail before any training
    check_backends(cfg.loggers)
    if out is not None:
        RunDir.check_target(out, overwrite)
    t0 = time.monotonic()
    eng = Engine(cfg)
    eng.check_names()
    start = initial_params(cfg, eng)  # a bad init fails here, before the run directory exists
    par = _parallelism(eng, workers, quiet)
    rd = RunDir.create(out, cfg, eng.runs, overwrite=overwrite) if out is not None else None
    try:
        state = eng.initial_state(start)
        rows: list = []
        snaps: dict = {}
        state = _spread(eng, rd, state, par, lambda e, s: _execute(e, rd, s, progress, rows, stop_after=_stop_after,
                                                                    snaps=snaps), _kill_worker_at)
        steps = np.array([t for t, _ in rows])
        metrics = {k: np.stack([m[k] for _, m in rows]) for k in rows[0][1]}
        summary = _finish(eng, rd, state, steps, metrics, time.monotonic() - t0, quiet)
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
           workers: int | None = 1, _stop_after: int | None = None, _kill_worker_at: int | None = None) -> RunResult:
    """Continue a killed run from its last checkpoint (from step 0 if it was killed before its
    first one); the result equals an uninterrupted run. ``lock_wait``: seconds to wait for the
    directory's lock while another process holds it (a requeued cluster task waits for its
    predecessor's lock to go stale).

    The metrics written so far are checked against the checkpoint (one row per evaluation step up
    to it; a corrupt row that cannot be recomputed is an error naming its line); a run killed
    while drawing its figures gets them drawn. ``workers``: as in :func:`run` (any number: a
    checkpoint does not depend on how many processes wrote it).
    """
    rd = RunDir(path)
    cfg = rd.config()
    rd.open_writer(lock_wait)
    try:
        if rd.complete():
            if not quiet:
                print(f"{rd.path} is already complete; nothing to resume", file=sys.stderr)
            return load_run(rd.path)
        if rd.summary() is not None:  # trained and summarized; killed while drawing figures
            draw_figures(rd, quiet)
            return load_run(rd.path)
        t0 = time.monotonic()
        eng = Engine(cfg)
        if rd.has_checkpoint():
            state, rows, wall0 = _from_checkpoint(rd, eng, cfg)
            fresh = False
        else:  # killed before its first checkpoint (its first seconds): start again from step 0
            rd.restart(eng.runs)
            state, rows, wall0, fresh = eng.initial_state(initial_params(cfg, eng)), [], 0.0, True
        par = _parallelism(eng, workers, quiet)
        state = _spread(eng, rd, state, par, lambda e, s: _execute(e, rd, s, progress, rows, stop_after=_stop_after,
                                                                    fresh=fresh, wall0=wall0), _kill_worker_at)
        steps, metrics = rd.metrics()
        summary = _finish(eng, rd, state, steps, metrics, wall0 + time.monotonic() - t0, quiet)
    finally:
        rd.release()
    return RunResult(rd.path, cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, summary)


def export_run(run_dir: str | Path, backend: str) -> Path:
    """Replay a run directory's metrics into ``RUN_DIR/<backend>`` (TensorBoard, W&B offline,
    MLflow local); returns that folder."""
    from sgdlab.store.loggers import Logger

    rd = RunDir(run_dir)
    steps, metrics = rd.metrics()
    lg = Logger(backend, rd.path, rd.runs(), rd.config().name)
    try:
        for e, t in enumerate(steps):
            lg.log(int(t), {k: v[e] for k, v in metrics.items()})
    finally:
        lg.close()
    return lg.out


def load_run(path: str | Path) -> RunResult:
    """Read a run directory (finished or not) from disk."""
    rd = RunDir(path)
    steps, metrics = rd.metrics()
    return RunResult(rd.path, rd.config(), rd.runs(), steps, metrics, rd.summary())
