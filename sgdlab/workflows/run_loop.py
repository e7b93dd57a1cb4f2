"""The run loop around the engine: advance every run to the end, logging each evaluation row,
checkpointing (atomically, every ``checkpoint_seconds`` and at the end), buffering snapshots, and
drawing the progress bar. :func:`sgdlab.run` and :func:`sgdlab.resume` (:mod:`sgdlab.workflows.api`)
call it for a fresh and a resumed run alike."""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import partial

import numpy as np

from sgdlab.core.config import to_dict
from sgdlab.engine.train import Engine, TrainState
from sgdlab.store.runs import RunDir

__all__ = ["SNAPSHOT_BUFFER_BYTES"]

# Snapshots are buffered until the next checkpoint, or until they hold this many bytes.
SNAPSHOT_BUFFER_BYTES = 256 * 2**20


def _nbytes(params_by_run: dict) -> int:
    """Bytes of one snapshot, ``{run: {name: tensor}}``."""
    return sum(v.numel() * v.element_size() for p in params_by_run.values() for v in p.values())


# The progress bar shows no time estimate until this share of the steps is done and this many
# seconds have passed: the first steps of a run (kernel compilation, the dense early evaluation
# grid) say nothing about the rest, and an estimate from them reads as days.
ETA_MIN_FRACTION = 0.02
ETA_MIN_SECONDS = 3.0
NO_ETA_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, estimating{postfix}]"


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", unit_scale=True, dynamic_ncols=True,
                mininterval=0.5, file=sys.stderr, bar_format=NO_ETA_FORMAT)


def _advance_bar(bar, steps: int) -> None:
    bar.update(steps)
    if bar.bar_format == NO_ETA_FORMAT and bar.n >= ETA_MIN_FRACTION * bar.total \
            and bar.format_dict["elapsed"] >= ETA_MIN_SECONDS:
        bar.bar_format = None  # tqdm's default format, with the remaining time


def _execute(eng: Engine, rd: RunDir | None, state: TrainState, progress: bool, rows: list,
             stop_after: int | None = None, fresh: bool = True, wall0: float = 0.0, snaps: dict | None = None):
    """Advance to the end, logging every evaluation and checkpointing; ``wall0`` is the wall time
    of earlier segments (a resumed run), carried in every checkpoint. Snapshots are buffered in
    ``snaps`` ({step: {run: params}}) and written with each checkpoint."""
    snaps = {} if snaps is None else snaps
    cfg = eng.cfg
    t_start = time.monotonic()
    bar = _progress(cfg.steps, state.step, f"{cfg.name} ({eng.n_runs} runs)", progress)
    # throughput in examples (images): batch size per step averaged over the phases of each group
    ex_per_step = sum(len(g.runs) * sum(p.opt.sampler.b * (p.end - p.start) for p in g.phases)
                      for g in eng.groups) / max(cfg.steps, 1)
    last_ckpt = [-np.inf]
    buffered = [sum(map(_nbytes, snaps.values()))]  # bytes in ``snaps``, counted as snapshots are added

    loggers = []
    if rd is not None and cfg.loggers:
        from sgdlab.store.loggers import Logger

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
        if s.step in eng.snapshot_steps:
            snaps[s.step] = eng.params_by_run(s)
            buffered[0] += _nbytes(snaps[s.step])
        now = time.monotonic()
        if rd is not None and (now - last_ckpt[0] >= cfg.checkpoint_seconds or s.step >= cfg.steps
                               or buffered[0] > SNAPSHOT_BUFFER_BYTES):
            # snapshots first: a kill between the two writes repeats (identical) snapshots on
            # resume, never loses any
            rd.save_snapshots(snaps)
            snaps.clear()
            buffered[0] = 0
            rd.save_checkpoint({"state": s.to_dict(), "config": to_dict(cfg), "wall_seconds": wall0 + now - t_start,
                                "groups": [g.runs for g in eng.groups]})
            last_ckpt[0] = now
        if stop_after is not None and s.step >= stop_after:
            raise KeyboardInterrupt  # test hook: behaves like Ctrl-C right after this evaluation

    try:
        eng.run(state, on_eval=on_eval, on_progress=(partial(_advance_bar, bar) if bar is not None else None),
                after_eval=after_eval, evaluate_start=fresh)
    finally:
        if bar is not None:
            bar.close()
        for lg in loggers:
            lg.close()
    return state
