"""A worker process of a sharded run (:mod:`sgdlab.workflows.shards`): it holds a piece of the
runs and answers the calling process's messages until told to stop.

Messages (caller -> worker, each answered as said):

* ``("state", (step, params, diverged, max_loss, opt), runs)``: hold these runs from this state
  (at the start, and when the caller moves runs between processes) -> ``("ok", step)``;
* ``("to", t, push)``: advance to step ``t`` and evaluate -> ``("done", t, metrics, diverged,
  seconds, group_seconds)``: the time the step took here, in all and per group
  (``Engine.group_seconds``); with ``push`` also ``("state", t, params, opt)`` unasked (the
  caller gathers that step's state);
* ``("get", t)``: the state at step ``t``, the current one or one of the last ``window`` steps
  before it (a checkpoint of a step the caller is writing while this worker runs ahead) ->
  ``("state", t, params, opt)``; answered before any queued step, since the caller waits on it;
* ``("stop",)``: return.

An error is sent as ``("error", exception)``, after which the worker returns. Tensors cross the
pipe as NumPy arrays.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing as mp
import os
import signal
import time

import numpy as np
import torch

from sgdlab.core.config import from_dict
from sgdlab.core.errors import SgdlabError, WorkFailed
from sgdlab.engine.train import Engine, TrainState
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.workflows.children import die_with_parent, name_process


class WorkerError(SgdlabError):
    """A worker process of a sharded run died or failed."""


class WorkerDied(WorkerError, WorkFailed):
    """A worker process died (killed, out of memory): the run stops where its last checkpoint is,
    resumable (not bad input: exit code 3)."""


def to_numpy(d: dict) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in d.items()}


def to_torch(d: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in d.items()}


def state_message(state: TrainState, runs: np.ndarray) -> tuple:
    """The ``"state"`` message giving a worker ``runs`` at ``state`` (its piece's slice)."""
    return ("state", (state.step, [to_numpy(p) for p in state.params], state.diverged, state.max_loss,
                      [to_numpy(o) for o in state.opt_state]), runs)


def _copy(d: dict) -> dict:
    return {k: v.clone() for k, v in d.items()}


def _portable(e: BaseException) -> BaseException:
    """An exception that survives pickling (sgdlab's own keep their type: one-line errors)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return WorkerError(f"{type(e).__name__}: {e}")


# Why a spawned worker may lack something its caller has, and what to do.
SPAWN_HINT = ("spawned workers (macOS, Windows) rebuild the experiment from its config and know only what the "
              "experiment's `imports` modules, installed plugins and the top level of the main script "
              "register: register your kinds and metrics there, not inside `if __name__ == \"__main__\":`")


def rebuild(cfg: dict) -> Engine:
    """A spawned worker's engine, from the caller's config, passing the checks the caller's
    passed (``Engine.check_names``: a metric registered only in the caller would otherwise be
    missing, NaN, from this worker's runs)."""
    try:
        eng = Engine(from_dict(ExperimentConfig, cfg))
        eng.check_names()
    except SgdlabError as e:
        raise WorkerError(f"a worker process could not rebuild the experiment: {e} ({SPAWN_HINT})") from e
    return eng


def serve(conn, source, only, parent: int, close_fds: tuple[int, ...], window: int, kill_at: int | None) -> None:
    """A worker: build its restricted engine (``source``: the whole engine, forked, or its config,
    spawned: :func:`rebuild`), then answer the caller's messages (module doc) until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    die_with_parent(parent)
    name_process(mp.current_process().name)  # sgdlab-shard-K, as top and pgrep show it
    for fd in close_fds:  # the caller's directory lock: only the caller may hold it
        with contextlib.suppress(OSError):
            os.close(fd)
    torch.set_num_threads(1)
    try:
        full = source if isinstance(source, Engine) else rebuild(source)
        eng = full.restricted(only)
        conn.send(("ready", os.getpid()))
    except BaseException as e:  # noqa: BLE001
        conn.send(("error", _portable(e)))
        return
    state = None
    held: collections.deque = collections.deque(maxlen=window)  # (step, params, opt) before the current
    inbox: collections.deque = collections.deque()
    while True:
        try:
            if not inbox:
                inbox.append(conn.recv())
            while conn.poll():
                inbox.append(conn.recv())
        except (EOFError, OSError):  # the caller is gone
            return
        msg = next((m for m in inbox if m[0] in ("get", "stop")), inbox[0])
        inbox.remove(msg)
        try:
            if msg[0] == "stop":
                return
            if msg[0] == "state":
                (step, params, diverged, max_loss, opt), runs = msg[1], msg[2]
                if not np.array_equal(np.flatnonzero(eng.members), runs):  # runs: in run-index order
                    eng = full.restricted(runs)
                state = TrainState(step, [to_torch(p) for p in params], diverged, max_loss, [to_torch(o) for o in opt])
                held.clear()
                conn.send(("ok", step))
            elif msg[0] == "to":
                _, t, push = msg
                if kill_at is not None and t >= kill_at:  # test hook: die like a killed process
                    os.kill(os.getpid(), signal.SIGKILL)
                t0, g0 = time.perf_counter(), eng.group_seconds.copy()
                held.append((state.step, [_copy(p) for p in state.params], [_copy(o) for o in state.opt_state]))
                eng.advance_to(state, t)
                m = eng.evaluate(state)
                conn.send(("done", t, {k: v[eng.members] for k, v in m.items()}, state.diverged[eng.members],
                           time.perf_counter() - t0, eng.group_seconds - g0))
                if push:
                    conn.send(("state", t, [to_numpy(p) for p in state.params],
                               [to_numpy(o) for o in state.opt_state]))
            elif msg[0] == "get":
                step = msg[1]
                found = [(p, o) for s, p, o in (*held, (state.step, state.params, state.opt_state)) if s == step]
                if not found:
                    raise WorkerError(f"the state at step {step} is no longer held (the worker is at {state.step})")
                params, opt = found[-1]
                conn.send(("state", step, [to_numpy(p) for p in params], [to_numpy(o) for o in opt]))
        except BaseException as e:  # noqa: BLE001
            conn.send(("error", _portable(e)))
            return
