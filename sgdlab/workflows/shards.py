"""One experiment's runs spread over processes (shards), with the results of one process.

The runs (arm x seed), in the engine's group order, are cut into ``workers`` contiguous pieces
of near-equal cost (:mod:`sgdlab.workflows.shard_pieces`). The calling process keeps piece 0 and
forks one single-threaded worker per other piece (:mod:`sgdlab.workflows.shard_worker`); each
advances and evaluates only its runs (``Engine.restricted``: the same groups, restricted, so
every run still batches with the runs of its group that share its piece).

Why the results are identical: every random draw of run ``seed`` at step ``t`` comes from a
counter-based stream keyed by ``(seed, t)`` (``optim.samplers``), a run's initial point from its
seed, and no computation mixes runs: the batched kernels and metrics treat each run on its own
(``tests/test_shards.py`` checks the bytes of whole run directories against one process, on a
diagonal-net and a ReLU experiment, for several splits, and with the runs moved between the
processes at every evaluation).

The caller stays the only writer of the run directory:

* every process advances and evaluates the same evaluation steps; the workers are sent up to
  ``window`` steps ahead (:data:`AHEAD_STEPS`), so a step that costs one piece more than the
  others, or the caller's writing, does not hold the others up. The caller merges each step's
  rows (each metric's values placed by run index, in the metric order of the piece holding the
  first group, i.e. that of one process) and writes them;
* **measured balance.** A metric's cost depends on the state (the diagonal net's exact Jacobian
  rank costs more once the features are sparse, sooner for some arms), so the pieces cut before
  training drift apart. About every :data:`REBALANCE_SECONDS` the caller stops sending steps
  ahead, and at the last step sent it compares the time each process was busy over those steps
  (the caller's own writing counted for its piece), cuts the runs again by these measured costs
  and moves the runs that change process (their state, gathered and sent). Only where evaluation
  keeps no state between steps (no curvature warm starts, no Monitor probes): a moved run would
  start those afresh;
* the caller holds the directory's lock, appends ``metrics.jsonl`` and writes checkpoints,
  snapshots, the summary and figures. A checkpoint is the whole training state, gathered from
  the workers when it is written, in the one-process layout: a sharded run resumes with any
  number of workers, and a run killed anywhere (the caller, or any worker: the caller then stops
  with an error naming it) resumes from its last checkpoint to the same bytes;
* workers die with the caller (Linux ``PR_SET_PDEATHSIG``; elsewhere at their next message) and
  ignore Ctrl-C, which the caller handles as for one process.

Workers are forked (Linux: no second start-up, they inherit the built engine and the compiled
kernels) or spawned elsewhere (:data:`START_METHOD`; they rebuild the engine from the config and
check its names as the caller did: ``shard_worker.rebuild``). Only CPU runs are sharded
(``sgdlab.workflows.cores``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import time
from typing import Self

import numpy as np
import torch

from sgdlab.core.config import to_dict
from sgdlab.engine.train import Engine, TrainState
from sgdlab.workflows.shard_pieces import (
    Measured,
    held_groups,
    mask,
    measured_costs,
    slice_state,
    split,
    state_bytes,
)
from sgdlab.workflows.shard_worker import (
    WorkerDied,
    WorkerError,
    serve,
    state_message,
    to_torch,
)

__all__ = ["AHEAD_STEPS", "ShardedEngine", "ShardedState", "WorkerDied", "WorkerError", "slice_state", "split", "spread", "whole"]

# Seconds a worker gets to exit after "stop" before it is killed.
JOIN_SECONDS = 5.0
# Evaluation steps a worker may run ahead of the caller. The pieces' costs vary from step to
# step and over stretches of steps; the slack lets the faster side go on. Each step ahead costs
# the worker one held copy of its state (a checkpoint may ask for any step not yet written),
# capped in bytes.
AHEAD_STEPS = 16
AHEAD_BYTES = 256 * 2**20
# Wall seconds between measured re-cuts of the pieces: short enough to follow the metrics' costs
# as they drift (on the diagonal net the pieces' costs swap order within a second), long enough
# that the price of each (the workers wait at one step; the state is gathered and sent: a few
# milliseconds on the toy models) stays small.
REBALANCE_SECONDS = 0.5
# How workers start: forked on Linux (they inherit the built engine and the loaded kernels);
# elsewhere spawned (fork is unsafe on macOS once system libraries have started threads), and
# they rebuild the engine from the config, importing its ``imports`` and installed plugins.
START_METHOD = "fork" if sys.platform.startswith("linux") else "spawn"


def ahead(state: TrainState, share: float) -> int:
    """Evaluation steps a worker holding ``share`` of the runs of ``state`` may run ahead: at most
    :data:`AHEAD_STEPS`, and no more held copies of its state than :data:`AHEAD_BYTES`."""
    return max(1, min(AHEAD_STEPS, int(AHEAD_BYTES // max(1.0, state_bytes(state) * share))))


class ShardedState:
    """The caller's view of a sharded run's state (what ``api`` reads of a ``TrainState``):
    ``step``, ``diverged`` and ``max_loss`` are kept current; ``params`` and ``opt_state`` are
    gathered from the shards when read (checkpoints, snapshots), once per step."""

    def __init__(self, owner: ShardedEngine, step: int, diverged: np.ndarray, max_loss: np.ndarray):
        self._owner, self.step, self.diverged, self.max_loss = owner, step, diverged, max_loss
        self._gathered: TrainState | None = None

    def full(self) -> TrainState:
        """The whole state in the one-process layout (per group, runs in group order)."""
        if self._gathered is None or self._gathered.step != self.step:
            self._gathered = self._owner.gather(self)
        return self._gathered

    @property
    def params(self) -> list[dict[str, torch.Tensor]]:
        return self.full().params

    @property
    def opt_state(self) -> list[dict[str, torch.Tensor]]:
        return self.full().opt_state

    def to_dict(self) -> dict:
        return self.full().to_dict()


def _placed(rows: list[torch.Tensor], where: torch.Tensor) -> torch.Tensor:
    """The rows of the pieces, concatenated, each row at its position ``where`` in the group."""
    cat = torch.cat(rows)
    out = torch.empty_like(cat)
    out[where] = cat
    return out


class _Busy:
    """What each piece (0: the caller's) took over the ``evals`` evaluations since training step
    ``step``: ``seconds`` (P,) computing, ``group_seconds`` (P, 2, G) of it per group
    (``Engine.group_seconds``); and the seconds the caller ``waited`` on the workers (its wall
    time less that is its compute and writing)."""

    def __init__(self, pieces: int, groups: int, step: int):
        self.since, self.step, self.evals, self.waited = time.perf_counter(), step, 0, 0.0
        self.seconds = np.zeros(pieces)
        self.group_seconds = np.zeros((pieces, 2, groups))


class ShardedEngine:
    """Runs an experiment over ``len(parts)`` processes; stands in for an :class:`Engine` where
    ``api`` runs one (``cfg``, ``runs``, ``n_runs``, ``groups``, ``eval_steps``,
    ``snapshot_steps``, ``params_by_run``, ``run``). Use as a context manager (stops the workers).
    ``rebalanced``: how many times runs moved between the processes."""

    def __init__(self, eng: Engine, state: TrainState, workers: int, close_fds: tuple[int, ...] = (),
                 _kill_at: int | None = None):
        self.eng, self.cfg, self.runs = eng, eng.cfg, eng.runs
        self.groups, self.eval_steps, self.snapshot_steps = eng.all_groups, eng.eval_steps, eng.snapshot_steps
        self.parts = split(eng, workers)  # piece 0 is this process's
        self.local = eng.restricted(self.parts[0])
        self.local_state = slice_state(eng, self.local.members, state)
        self.window = ahead(state, max(map(len, self.parts)) / eng.n_runs)
        self.pushed: set[int] = set()  # steps whose state the workers send unasked
        self.adaptive = not eng.keeps_eval_state
        self.rebalanced = 0
        self.busy = self._new_busy(state.step)
        self.procs: list = []
        self.conns: list = []
        self.early: list[list] = []  # per worker: replies that came before the one awaited
        ctx = mp.get_context(START_METHOD)
        # a forked worker inherits the caller's files (its lock among them) and closes them; a
        # spawned one inherits none, and the same numbers there may be its own pipe
        inherited = tuple(close_fds) if START_METHOD == "fork" else ()
        source = eng if START_METHOD == "fork" else to_dict(eng.cfg)
        try:
            for part in self.parts[1:]:
                here, there = ctx.Pipe()
                proc = ctx.Process(target=serve, args=(there, source, part, os.getpid(), inherited,
                                                       self.window, _kill_at),
                                   name=f"sgdlab-shard-{len(self.procs) + 1}")
                proc.start()
                there.close()
                self.procs.append(proc)
                self.conns.append(here)
                self.early.append([])
            pids = [self._recv(i, "start")[1] for i in range(len(self.conns))]
            self._give(state)
        except BaseException:
            self.close(kill=True)
            raise
        self.pids = [os.getpid(), *pids]
        self.state = ShardedState(self, state.step, state.diverged.copy(), state.max_loss.copy())

    @property
    def n_runs(self) -> int:
        return self.eng.n_runs

    def _new_busy(self, step: int) -> _Busy:
        return _Busy(len(self.parts), len(self.eng.all_groups), step)

    # ----------------------------------------------------------------- messages
    def _died(self, i: int, step) -> WorkerDied:
        """The error saying that worker ``i``, whose pipe broke, died (and how) at ``step``."""
        proc = self.procs[i]
        proc.join(JOIN_SECONDS)
        code = proc.exitcode
        how = (f"killed by signal {-code}" if code is not None and code < 0 else
               f"exited with status {code}" if code is not None else "stopped answering")
        return WorkerDied(f"worker process {proc.pid} ({len(self.parts[i + 1])} runs) {how} at step {step}")

    def _send(self, i: int, msg: tuple, step) -> None:
        try:
            self.conns[i].send(msg)
        except OSError:  # a broken pipe: the worker is gone (sending may notice before receiving)
            raise self._died(i, step) from None

    def _recv(self, i: int, step) -> tuple:
        t0 = time.perf_counter()
        try:
            msg = self.conns[i].recv()
        except (EOFError, OSError):
            raise self._died(i, step) from None
        finally:
            self.busy.waited += time.perf_counter() - t0
        if msg[0] == "error":
            raise msg[1]
        return msg

    def _reply(self, i: int, kind: str, step: int) -> tuple:
        """Worker ``i``'s reply of ``kind`` ("done", "state" or "ok") for ``step``; other replies
        that arrive first are kept for when they are awaited."""
        if kind == "done":  # a state sent unasked for an earlier step was not gathered: drop it
            self.early[i] = [m for m in self.early[i] if m[0] != "state" or m[1] >= step]
        for j, msg in enumerate(self.early[i]):
            if msg[:2] == (kind, step):
                return self.early[i].pop(j)
        while True:
            msg = self._recv(i, step)
            if msg[:2] == (kind, step):
                return msg
            self.early[i].append(msg)

    def _give(self, state: TrainState) -> None:
        """Give each worker its piece (``parts[1:]``) from the whole ``state``."""
        for i, part in enumerate(self.parts[1:]):
            self._send(i, state_message(slice_state(self.eng, mask(self.eng, part), state), part), state.step)
        for i in range(len(self.conns)):
            self._reply(i, "ok", state.step)

    def gather(self, s: ShardedState) -> TrainState:
        if s.step not in self.pushed:
            for i in range(len(self.conns)):
                self._send(i, ("get", s.step), s.step)
        got = [(self.local_state.params, self.local_state.opt_state)]
        for i in range(len(self.conns)):
            _, _, params, opt = self._reply(i, "state", s.step)
            got.append(([to_torch(p) for p in params], [to_torch(o) for o in opt]))
        masks = [mask(self.eng, part) for part in self.parts]
        held = [held_groups(self.eng, m) for m in masks]  # a piece's state: one entry per group it holds
        params, opt = [], []
        for gi, g in enumerate(self.eng.all_groups):
            holders = [k for k in range(len(masks)) if gi in held[k]]
            pieces = [(got[k][0][held[k].index(gi)], got[k][1][held[k].index(gi)]) for k in holders]
            # each piece's rows go back to their runs' positions in the group
            where = torch.as_tensor(np.concatenate([np.flatnonzero(masks[k][g.runs]) for k in holders]))
            params.append({n: _placed([p[n] for p, _ in pieces], where) for n in pieces[0][0]})
            opt.append({n: _placed([o[n] for _, o in pieces], where) for n in pieces[0][1]})
        return TrainState(s.step, params, s.diverged.copy(), s.max_loss.copy(), opt)

    def params_by_run(self, s: ShardedState) -> dict[int, dict[str, torch.Tensor]]:
        return self.eng.params_by_run(s.full())

    def _send_to(self, t: int, push: bool = False) -> None:
        """Send every worker step ``t``; ``push``: it sends its state of ``t`` unasked too."""
        if push:
            self.pushed.add(t)
        for i in range(len(self.conns)):
            self._send(i, ("to", t, push), t)

    # ----------------------------------------------------------------- stepping
    def _advance_and_evaluate(self, t: int) -> dict[str, np.ndarray]:
        """Step ``t`` here (the workers were sent it already), merged with the workers' rows."""
        t0, g0 = time.perf_counter(), self.local.group_seconds.copy()
        self.local.advance_to(self.local_state, t)
        first = self.local.evaluate(self.local_state)  # the piece with group 0: the metric order
        self.busy.seconds[0] += time.perf_counter() - t0
        self.busy.group_seconds[0] += self.local.group_seconds - g0
        self.busy.evals += 1
        R = self.n_runs
        out = {k: np.full(R, np.nan) for k in first}
        diverged = self.state.diverged
        mask = self.local.members
        for k, v in first.items():
            out[k][mask] = v[mask]
        diverged[mask] = self.local_state.diverged[mask]
        for i, part in enumerate(self.parts[1:]):
            _, _, m, div, secs, per_group = self._reply(i, "done", t)
            self.busy.seconds[i + 1] += secs
            self.busy.group_seconds[i + 1] += per_group
            for k, v in m.items():  # the worker's values come in run-index order, as its piece
                out.setdefault(k, np.full(R, np.nan))[part] = v
            diverged[part] = div
        return out

    def _rebalance(self, state: ShardedState) -> None:
        """Cut the runs again by the time each process was busy since the last cut (module doc)
        and move those that change process; ``state`` is at a step no worker has gone past."""
        b = self.busy
        load = time.perf_counter() - b.since - b.waited  # the caller's compute and writing
        measured = Measured(state.step - b.step, b.evals, b.seconds, b.group_seconds, extra=load - b.seconds[0])
        costs, extra = measured_costs(self.eng, self.parts, measured, self.cfg.steps - state.step,
                                      int(np.sum(self.eval_steps > state.step)))
        parts = split(self.eng, len(self.parts), costs, extra=extra)
        if len(parts) == len(self.parts) and not all(map(np.array_equal, parts, self.parts)):
            whole_state = state.full()
            self.parts = parts
            self.local = self.eng.restricted(parts[0])
            self.local_state = slice_state(self.eng, self.local.members, whole_state)
            self._give(whole_state)
            self.rebalanced += 1
        self.busy = self._new_busy(state.step)  # measured afresh; the move itself is not a piece's work

    def run(self, state: ShardedState, on_eval=None, on_progress=None, after_eval=None,
            evaluate_start: bool = True) -> ShardedState:
        """As :meth:`Engine.run`, every shard advancing and evaluating the same steps; the workers
        run up to ``window`` evaluation steps ahead of this process."""
        steps = [int(t) for t in self.eval_steps if t > state.step or (t == state.step and evaluate_start)]
        # States gathered for sure: snapshots, and the first step (the run loop checkpoints it), which
        # a "get" would wait for behind the worker's next step (the first one loads its kernels).
        gathered = self.snapshot_steps | set(steps[:1])
        sent = 0
        barrier = None  # the step index at which the pieces are cut again

        def send_up_to(k: int) -> None:
            nonlocal sent
            while sent < min(k, len(steps)):
                self._send_to(steps[sent], steps[sent] in gathered)
                sent += 1

        send_up_to(self.window)
        self.busy = self._new_busy(state.step)
        for k, t in enumerate(steps):
            before = state.step
            metrics = self._advance_and_evaluate(t)
            if barrier is None and self.adaptive and time.perf_counter() - self.busy.since >= REBALANCE_SECONDS:
                barrier = sent - 1  # no worker goes past the last step sent
            if barrier is None:
                send_up_to(k + 1 + self.window)
            state.step = max(state.step, t)
            if on_progress:
                on_progress(state.step - before)
            if on_eval:
                on_eval(t, metrics)
            if after_eval:
                after_eval(state)
            if k == barrier:
                if k + 1 < len(steps):  # none after the last step
                    self._rebalance(state)
                barrier = None
                send_up_to(k + 1 + self.window)
        return state

    # ----------------------------------------------------------------- shutdown
    def close(self, kill: bool = False) -> None:
        """Stop the workers (``kill``: at once, e.g. after an error or Ctrl-C)."""
        for c in self.conns:
            if not kill:
                with contextlib.suppress(OSError):
                    c.send(("stop",))
        for p in self.procs:
            if kill:
                p.kill()
            p.join(JOIN_SECONDS)
            if p.is_alive():
                p.kill()
                p.join()
        for c in self.conns:
            c.close()
        self.procs, self.conns, self.early = [], [], []

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(kill=exc_type is not None)


@contextlib.contextmanager
def spread(eng: Engine, state: TrainState, workers: int, close_fds: tuple[int, ...] = (),
           _kill_at: int | None = None):
    """``(engine, state)`` to run: ``eng`` and ``state`` themselves for one worker, else a
    :class:`ShardedEngine` and its :class:`ShardedState` (workers stopped at the end)."""
    if workers <= 1 or len(split(eng, workers)) <= 1:
        yield eng, state
        return
    with ShardedEngine(eng, state, workers, close_fds, _kill_at) as sh:
        yield sh, sh.state


def whole(state) -> TrainState:
    """The full training state of what :func:`spread` yielded."""
    return state.full() if isinstance(state, ShardedState) else state
