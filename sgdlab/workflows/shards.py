"""One experiment's runs spread over processes (shards), with the results of one process.

The runs (arm x seed), in the engine's group order, are cut into ``workers`` contiguous pieces
of near-equal size. The calling process keeps piece 0 and forks one single-threaded worker per
other piece; each advances and evaluates only its runs (``Engine.restricted``: the same groups,
restricted, so every run still batches with the runs of its group that share its piece).

Why the results are identical: every random draw of run ``seed`` at step ``t`` comes from a
counter-based stream keyed by ``(seed, t)`` (``optim.samplers``), a run's initial point from its
seed, and no computation mixes runs: the batched kernels and metrics treat each run on its own
(``tests/test_shards.py`` checks the bytes of whole run directories against one process, on a
diagonal-net and a ReLU experiment, for several splits).

The workers run in lock step with the caller, which stays the only writer of the run directory:

* at each evaluation step the caller sends "advance to t and evaluate" to every worker, does its
  own piece meanwhile, then merges the rows (each metric's values placed by run index, the
  metric order of the piece holding the first group, i.e. that of one process). As soon as the
  workers' rows of step t are in, they are sent the next step, so they compute it while the
  caller writes t's rows (a worker keeps its state at t until then, for a checkpoint of t);
* the caller holds the directory's lock, appends ``metrics.jsonl`` and writes checkpoints,
  snapshots, the summary and figures. A checkpoint is the whole training state, gathered from
  the workers when it is written, in the one-process layout: a sharded run resumes with any
  number of workers, and a run killed anywhere (the caller, or any worker: the caller then stops
  with an error naming it) resumes from its last checkpoint to the same bytes;
* workers die with the caller (Linux ``PR_SET_PDEATHSIG``; elsewhere at their next message) and
  ignore Ctrl-C, which the caller handles as for one process.

Workers are forked (Linux: no second start-up, they inherit the built engine and the compiled
kernels) or spawned elsewhere (they rebuild the engine from the config). Tensors cross the pipes
as NumPy arrays. Only CPU runs are sharded (``sgdlab.workflows.cores``).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
from typing import Self

import numpy as np
import torch

from sgdlab.core.config import from_dict, to_dict
from sgdlab.core.errors import SgdlabError
from sgdlab.engine.train import Engine, TrainState
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.workflows.children import die_with_parent

# A run-step's cost beyond its batch, in examples: on the diagonal net's kernel a full-batch step
# (80 examples) costs 12.4 batch-1 steps, so (80 + c) / (1 + c) = 12.4, c ~ 6.
STEP_OVERHEAD_EXAMPLES = 6.0
# Seconds a worker gets to exit after "stop" before it is killed.
JOIN_SECONDS = 5.0


class WorkerError(SgdlabError):
    """A worker process of a sharded run died or failed."""


def run_weights(eng: Engine) -> dict[int, float]:
    """Relative cost of each run: one evaluation's worth plus its steps, a step costing
    (batch size + STEP_OVERHEAD_EXAMPLES) examples (averaged over the run's phases)."""
    out = {}
    for g in eng.all_groups:
        span = sum(p.end - p.start for p in g.phases) or 1
        b = sum((p.opt.sampler.n if p.opt.sampler.full else p.opt.sampler.b) * (p.end - p.start)
                for p in g.phases) / span
        for r in g.runs:
            out[r] = 1.0 + (b + STEP_OVERHEAD_EXAMPLES) / (1 + STEP_OVERHEAD_EXAMPLES)
    return out


def split(eng: Engine, workers: int) -> list[np.ndarray]:
    """The runs of each shard: the run indices in group order (the order of the checkpoint's
    groups) cut into at most ``workers`` contiguous, non-empty pieces of near-equal cost
    (:func:`run_weights`). A group is never cut so that a piece holds exactly one of its runs: a
    batch of one run may take another code path than the same run among others (the deep-net
    stepper steps one run without ``vmap``), and results must not depend on the split."""
    groups = [np.asarray(g.runs, dtype=np.int64) for g in eng.all_groups]
    order = np.concatenate(groups)
    N = len(order)
    n = max(1, min(workers, N))
    w = run_weights(eng)
    cum = np.cumsum([w[int(r)] for r in order])  # cum[i]: cost of the runs at positions 0..i
    bounds = np.cumsum([0] + [len(g) for g in groups])
    gi = np.searchsorted(bounds, np.arange(N), side="right") - 1  # group of each position
    cuts: list[int] = []
    for k in range(1, n):
        prev = cuts[-1] if cuts else 0
        ok = [p for p in range(prev + 1, N) if _may_cut(p, prev, gi, bounds)]
        if ok:
            target = k * cum[-1] / n
            cuts.append(min(ok, key=lambda p, t=target: abs(cum[p - 1] - t)))
    return np.split(order, cuts)


def _may_cut(p: int, prev: int, gi: np.ndarray, bounds: np.ndarray) -> bool:
    """May a piece start at position ``p`` when the previous one starts at ``prev``? At a group
    boundary, or inside a group leaving at least 2 of its runs on each side."""
    if gi[p] != gi[p - 1]:
        return True
    gs, ge = bounds[gi[p]], bounds[gi[p] + 1]
    return p - max(gs, prev) >= 2 and ge - p >= 2


def _np(d: dict) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def _copy(d: dict) -> dict:
    return {k: v.clone() for k, v in d.items()}


def _torch(d: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in d.items()}


def slice_state(full: Engine, part: Engine, state: TrainState) -> TrainState:
    """The state of ``part`` (a restriction of ``full``) cut from the whole ``state``."""
    params, opt = [], []
    for g, p, o in zip(full.all_groups, state.params, state.opt_state):
        pos = [j for j, r in enumerate(g.runs) if part.members[r]]
        if pos:
            params.append({k: v[pos].clone() for k, v in p.items()})
            opt.append({k: v[pos].clone() for k, v in o.items()})
    return TrainState(state.step, params, state.diverged.copy(), state.max_loss.copy(), opt)


def _held(full: Engine, members: np.ndarray) -> list[int]:
    """Indices of the groups of ``full`` that a shard with run mask ``members`` holds a part of."""
    return [i for i, g in enumerate(full.all_groups) if members[g.runs].any()]


def _portable(e: BaseException) -> BaseException:
    """An exception that survives pickling (sgdlab's own keep their type: one-line errors)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return WorkerError(f"{type(e).__name__}: {e}")


def _serve(conn, source, only, parent: int, close_fds: tuple[int, ...], kill_at: int | None) -> None:
    """A worker: build its restricted engine, then answer the caller's messages until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    die_with_parent(parent)
    for fd in close_fds:  # the caller's directory lock: only the caller may hold it
        with contextlib.suppress(OSError):
            os.close(fd)
    torch.set_num_threads(1)
    try:
        full = source if isinstance(source, Engine) else Engine(from_dict(ExperimentConfig, source))
        eng = full.restricted(only)
        conn.send(("ready", os.getpid()))
    except BaseException as e:  # noqa: BLE001
        conn.send(("error", _portable(e)))
        return
    state = None
    before = None  # the state at the previous evaluation step: the caller may ask for it after
    # sending the next step (it writes a step's rows while the workers compute the next one)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the caller is gone
            return
        try:
            if msg[0] == "stop":
                return
            if msg[0] == "state":
                step, params, diverged, max_loss, opt = msg[1]
                state = TrainState(step, [_torch(p) for p in params], diverged, max_loss, [_torch(o) for o in opt])
                conn.send(("ok",))
            elif msg[0] == "to":
                t = msg[1]
                if kill_at is not None and t >= kill_at:  # test hook: die like a killed process
                    os.kill(os.getpid(), signal.SIGKILL)
                before = (state.step, [_copy(p) for p in state.params], [_copy(o) for o in state.opt_state])
                eng.advance_to(state, t)
                m = eng.evaluate(state)
                conn.send(("done", t, {k: v[eng.members] for k, v in m.items()}, state.diverged[eng.members]))
            elif msg[0] == "get":
                step = msg[1]
                params, opt = ((state.params, state.opt_state) if state.step == step else
                               before[1:] if before is not None and before[0] == step else (None, None))
                if params is None:
                    raise WorkerError(f"the state at step {step} is no longer held (the worker is at {state.step})")
                conn.send(("state", step, [_np(p) for p in params], [_np(o) for o in opt]))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", _portable(e)))
            return


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


class ShardedEngine:
    """Runs an experiment over ``len(parts)`` processes; stands in for an :class:`Engine` where
    ``api`` runs one (``cfg``, ``runs``, ``n_runs``, ``groups``, ``eval_steps``,
    ``snapshot_steps``, ``params_by_run``, ``run``). Use as a context manager (stops the workers)."""

    def __init__(self, eng: Engine, state: TrainState, workers: int, close_fds: tuple[int, ...] = (),
                 _kill_at: int | None = None):
        self.eng, self.cfg, self.runs = eng, eng.cfg, eng.runs
        self.groups, self.eval_steps, self.snapshot_steps = eng.all_groups, eng.eval_steps, eng.snapshot_steps
        self.parts = split(eng, workers)
        self.local = eng.restricted(self.parts[0])
        self.local_state = slice_state(eng, self.local, state)
        self.procs: list = []
        self.conns: list = []
        self.early: list[list] = []  # per worker: replies that came before the one awaited
        self.held = [_held(eng, self.local.members)]
        fork = sys.platform.startswith("linux")
        ctx = mp.get_context("fork" if fork else "spawn")
        source = eng if fork else to_dict(eng.cfg)
        try:
            for part in self.parts[1:]:
                here, there = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(there, source, part, os.getpid(), tuple(close_fds), _kill_at),
                                   name=f"sgdlab-shard-{len(self.procs) + 1}")
                proc.start()
                there.close()
                self.procs.append(proc)
                self.conns.append(here)
                self.early.append([])
            pids = [self._recv(i, "start")[1] for i in range(len(self.conns))]
            for i, part in enumerate(self.parts[1:]):
                sub = eng.restricted(part)
                self.held.append(_held(eng, sub.members))
                s = slice_state(eng, sub, state)
                self.conns[i].send(("state", (s.step, [_np(p) for p in s.params], s.diverged, s.max_loss,
                                              [_np(o) for o in s.opt_state])))
            for i in range(len(self.conns)):
                self._recv(i, "start")
        except BaseException:
            self.close(kill=True)
            raise
        self.pids = [os.getpid(), *pids]
        self.state = ShardedState(self, state.step, state.diverged.copy(), state.max_loss.copy())

    @property
    def n_runs(self) -> int:
        return self.eng.n_runs

    # ----------------------------------------------------------------- messages
    def _recv(self, i: int, step) -> tuple:
        try:
            msg = self.conns[i].recv()
        except (EOFError, OSError):
            proc = self.procs[i]
            proc.join(JOIN_SECONDS)
            code = proc.exitcode
            how = (f"killed by signal {-code}" if code is not None and code < 0 else
                   f"exited with status {code}" if code is not None else "stopped answering")
            part = self.parts[i + 1]
            raise WorkerError(f"worker process {proc.pid} (runs {part[0]}..{part[-1]}) {how} at step {step}; "
                              f"the run directory keeps its last checkpoint") from None
        if msg[0] == "error":
            raise msg[1]
        return msg

    def _reply(self, i: int, kind: str, step: int) -> tuple:
        """Worker ``i``'s reply of ``kind`` ("done" or "state") for ``step``; replies of the other
        kind that arrive first are kept for when they are awaited."""
        for j, msg in enumerate(self.early[i]):
            if msg[:2] == (kind, step):
                return self.early[i].pop(j)
        while True:
            msg = self._recv(i, step)
            if msg[:2] == (kind, step):
                return msg
            self.early[i].append(msg)

    def gather(self, s: ShardedState) -> TrainState:
        for c in self.conns:
            c.send(("get", s.step))
        got = [(self.local_state.params, self.local_state.opt_state)]
        for i in range(len(self.conns)):
            _, _, params, opt = self._reply(i, "state", s.step)
            got.append(([_torch(p) for p in params], [_torch(o) for o in opt]))
        params, opt = [], []
        for gi in range(len(self.eng.all_groups)):
            pieces = [(got[k][0][held.index(gi)], got[k][1][held.index(gi)])
                      for k, held in enumerate(self.held) if gi in held]
            params.append({n: torch.cat([p[n] for p, _ in pieces]) for n in pieces[0][0]})
            opt.append({n: torch.cat([o[n] for _, o in pieces]) for n in pieces[0][1]})
        return TrainState(s.step, params, s.diverged.copy(), s.max_loss.copy(), opt)

    def params_by_run(self, s: ShardedState) -> dict[int, dict[str, torch.Tensor]]:
        return self.eng.params_by_run(s.full())

    def _send_to(self, t: int) -> None:
        for c in self.conns:
            c.send(("to", t))

    def _advance_and_evaluate(self, t: int, nxt: int | None = None) -> dict[str, np.ndarray]:
        """Step ``t`` everywhere (the workers were sent it already); ``nxt``: the step the workers
        are sent as soon as their rows of ``t`` are in, so they compute it while this process
        merges and writes."""
        self.local.advance_to(self.local_state, t)
        first = self.local.evaluate(self.local_state)  # the piece with group 0: the metric order
        R = self.n_runs
        out = {k: np.full(R, np.nan) for k in first}
        diverged = self.state.diverged
        mask = self.local.members
        for k, v in first.items():
            out[k][mask] = v[mask]
        diverged[mask] = self.local_state.diverged[mask]
        for i, part in enumerate(self.parts[1:]):
            _, _, m, div = self._reply(i, "done", t)
            sub = np.sort(part)  # the worker's values come in run-index order
            for k, v in m.items():
                out.setdefault(k, np.full(R, np.nan))[sub] = v
            diverged[sub] = div
        if nxt is not None:
            self._send_to(nxt)
        return out

    def run(self, state: ShardedState, on_eval=None, on_progress=None, after_eval=None,
            evaluate_start: bool = True) -> ShardedState:
        """As :meth:`Engine.run`, every shard advancing and evaluating in lock step."""
        steps = [int(t) for t in self.eval_steps if t > state.step or (t == state.step and evaluate_start)]
        if steps:
            self._send_to(steps[0])
        snapshots = {int(t) for t in self.snapshot_steps}
        for k, t in enumerate(steps):
            before = state.step
            nxt = steps[k + 1] if k + 1 < len(steps) else None
            # A step whose parameters are saved is gathered from the workers right after it: they
            # get the next step only then (sent early, the gather would wait for it).
            early = t not in snapshots
            metrics = self._advance_and_evaluate(t, nxt if early else None)
            state.step = max(state.step, t)
            if on_progress:
                on_progress(state.step - before)
            if on_eval:
                on_eval(t, metrics)
            if after_eval:
                after_eval(state)
            if nxt is not None and not early:
                self._send_to(nxt)
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
