"""Python API: everything the CLI does, one call away (no argument parsing involved)."""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from . import config as _config
from .config import to_dict
from .errors import CheckpointError, ConfigError, choices_message
from .experiment import ExperimentConfig
from .runs import RunDir
from .summary import summarize
from .train import Engine, TrainState

__all__ = [
    "ExperimentConfig",
    "RunResult",
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

def _experiments_dir():
    return resources.files("sgdlab.experiments")


def list_experiments() -> list[str]:
    """Names of the bundled experiment configs (experiments/*.toml)."""
    return sorted(p.name[:-5] for p in _experiments_dir().iterdir() if p.name.endswith(".toml"))


def load_experiment(name_or_path: str | Path) -> ExperimentConfig:
    """A bundled experiment by name (e.g. "diag-net") or any config TOML file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.is_file():
        return _config.load_toml(ExperimentConfig, p)
    if p.is_dir() and (p / "config.toml").exists():
        return _config.load_toml(ExperimentConfig, p / "config.toml")
    res = _experiments_dir() / f"{name_or_path}.toml"
    if not res.is_file():
        raise ConfigError(choices_message("experiment", str(name_or_path), list_experiments())
                          + " (or give a path to a .toml config)")
    with resources.as_file(res) as f:
        return _config.load_toml(ExperimentConfig, f)


def override(cfg: ExperimentConfig, assignments) -> ExperimentConfig:
    """cfg with ``key.path=value`` assignments applied (validated), e.g. ["seeds=4"]."""
    return _config.override(cfg, list(assignments))


# --------------------------------------------------------------------------- running

def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", unit_scale=True, dynamic_ncols=True, mininterval=0.5,
                file=sys.stderr)


def _execute(eng: Engine, rd: RunDir | None, state: TrainState, progress: bool, rows: list,
             stop_after: int | None = None, fresh: bool = True):
    cfg = eng.cfg
    bar = _progress(cfg.steps, state.step, f"{cfg.name} ({eng.n_runs} runs)", progress)
    ex_per_step = sum(len(g.runs) * g.sampler.b for g in eng.groups)  # throughput in examples (images)
    last_ckpt = [-np.inf]

    loggers = []
    if rd is not None and cfg.loggers:
        from .loggers import Logger

        loggers = [Logger(b, rd.path, [dataclasses.asdict(r) for r in eng.runs], cfg.name) for b in cfg.loggers]

    def on_eval(t, m):
        rows.append((t, m))
        if rd is not None:
            rd.append_metrics(t, m)
        for lg in loggers:
            lg.log(t, m)
        if bar is not None:
            alive = int((state.diverged < 0).sum())
            rate = bar.format_dict.get("rate")  # steps/s of the whole batch of runs
            thru = f", {rate * ex_per_step:,.0f} examples/s" if rate else ""
            bar.set_postfix_str(f"{alive}/{eng.n_runs} alive{thru}", refresh=False)

    def after_eval(s: TrainState):
        if rd is not None and s.step in eng.snapshot_steps:
            rd.save_snapshot(s.step, eng.params_by_run(s))
        now = time.monotonic()
        if rd is not None and (now - last_ckpt[0] >= cfg.checkpoint_seconds or s.step >= cfg.steps):
            rd.save_checkpoint({"state": s.to_dict(), "config": to_dict(cfg)})
            last_ckpt[0] = now
        if stop_after is not None and s.step >= stop_after:
            raise KeyboardInterrupt  # test hook: behaves like Ctrl-C right after this evaluation

    try:
        eng.run(state, on_eval=on_eval, on_progress=(bar.update if bar is not None else None), after_eval=after_eval,
                evaluate_start=fresh)
    finally:
        if bar is not None:
            bar.close()
        for lg in loggers:
            lg.close()
    return state


def _finish(eng: Engine, rd: RunDir | None, state: TrainState, steps, metrics, wall: float, quiet: bool) -> dict:
    summary = summarize(eng.cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, state.diverged, wall)
    if rd is not None:
        rd.write_summary(summary)
        rd.update_meta(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), wall_seconds=wall)
        try:
            from .plots import plot_run

            plot_run(rd.path)
        except Exception as e:  # a figure must never lose a finished run  # noqa: BLE001
            print(f"warning: figure not drawn: {type(e).__name__}: {e}", file=sys.stderr)
    if not quiet:
        from .summary import format_table

        print(format_table(summary))
    return summary


def run(cfg: ExperimentConfig | str, out: str | Path | None = None, *, progress: bool = True, quiet: bool = False,
        overwrite: bool = False, _stop_after: int | None = None) -> RunResult:
    """Train every run of ``cfg`` (a config or an experiment name) and return the result.

    With ``out`` the run directory is written as it goes (resumable); without, runs in memory.
    """
    if isinstance(cfg, (str, Path)):
        cfg = load_experiment(cfg)
    from .plots import FIGURES

    for fig in cfg.extra_figures:
        FIGURES.get(fig)  # unknown figure names fail before any training
    t0 = time.monotonic()
    eng = Engine(cfg)
    rd = RunDir.create(out, cfg, eng.runs, overwrite=overwrite) if out is not None else None
    state = eng.initial_state()
    rows: list = []
    try:
        _execute(eng, rd, state, progress, rows, stop_after=_stop_after)
    except KeyboardInterrupt:
        if rd is not None:
            print(f"\ninterrupted at step {state.step}; resume with: sgdlab run --resume {rd.path}", file=sys.stderr)
        raise
    steps = np.array([t for t, _ in rows])
    metrics = {k: np.stack([m[k] for _, m in rows]) for k in rows[0][1]}
    summary = _finish(eng, rd, state, steps, metrics, time.monotonic() - t0, quiet)
    return RunResult(rd.path if rd else None, cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, summary)


def resume(path: str | Path, *, progress: bool = True, quiet: bool = False,
           _stop_after: int | None = None) -> RunResult:
    """Continue a killed run from its last checkpoint; the result equals an uninterrupted run."""
    rd = RunDir(path)
    if not rd.path.is_dir():
        raise CheckpointError(f"run directory {str(rd.path)!r} does not exist")
    cfg = rd.config()
    if rd.summary() is not None:
        if not quiet:
            print(f"{rd.path} is already complete; nothing to resume", file=sys.stderr)
        return load_run(rd.path)
    ckpt = rd.load_checkpoint()
    try:  # re-read through today's dataclasses: fields added since (with defaults) still match
        same = to_dict(_config.from_dict(ExperimentConfig, ckpt.get("config") or {})) == to_dict(cfg)
    except ConfigError:
        same = False
    if not same:
        raise CheckpointError(f"checkpoint in {str(rd.path)!r} was written by a different config than config.toml; "
                              f"restore the original config.toml or start a new run")
    t0 = time.monotonic()
    eng = Engine(cfg)
    state = TrainState.from_dict(ckpt["state"])
    rd.truncate_metrics(state.step)
    rd.update_meta(resumed_from_step=state.step)
    steps0, metrics0 = rd.metrics()
    rows = [(int(t), {k: v[i] for k, v in metrics0.items()}) for i, t in enumerate(steps0)]
    try:
        _execute(eng, rd, state, progress, rows, stop_after=_stop_after, fresh=False)
    except KeyboardInterrupt:
        print(f"\ninterrupted at step {state.step}; resume with: sgdlab run --resume {rd.path}", file=sys.stderr)
        raise
    steps, metrics = rd.metrics()
    summary = _finish(eng, rd, state, steps, metrics, time.monotonic() - t0, quiet)
    return RunResult(rd.path, cfg, [dataclasses.asdict(r) for r in eng.runs], steps, metrics, summary)


def load_run(path: str | Path) -> RunResult:
    """Read a run directory (finished or not) from disk."""
    rd = RunDir(path)
    if not rd.path.is_dir():
        raise CheckpointError(f"run directory {str(rd.path)!r} does not exist")
    steps, metrics = rd.metrics()
    return RunResult(rd.path, rd.config(), rd.runs(), steps, metrics, rd.summary())
