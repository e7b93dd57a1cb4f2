"""Does this experiment give each run the same bits in a piece of its group as in the whole group?

A sharded run (:mod:`sgdlab.workflows.shards`) is byte-identical to one process only if no run's
numbers depend on which runs share its batch. Where the BLAS passes the generic probe of
:func:`sgdlab.workflows.cores.blas_batch_invariance` that holds for every experiment; where it
fails (MKL on AMD EPYC CPUs with AVX-512 computes a product's last, partial tile of rows with other
code), whether it holds depends on the shapes of the experiment's own products. This module asks
the experiment itself: for every group and every phase, the first training step of that phase and
the evaluation after it, computed for pieces of the group's runs (every size a split or a re-cut
can give a group of up to 26 runs, a sample of sizes in larger ones; the runs taken in the order
``shard_pieces.split`` takes them) must give every run of the piece exactly the parameters,
optimizer state and metrics it gets in the whole group. Like the generic probe it is a check of
what the BLAS does on these shapes, not a proof: pieces in the middle of the order (3 or more
processes) are taken to behave as the outer ones of the same size.

The shapes of a run's products are those of its phase's batch and of the evaluation sets, which
do not change during training, so one step per phase covers every shape the training meets.
Evaluation that keeps state between steps (curvature warm starts, Monitor probes) is not probed:
such runs stay in one process, as in a sharded run they are never moved. Nor are metrics of the
user's own (``sgdlab.register_metric``): their code may count its calls or write files, and the
probe would run it dozens of times before the training. The probe works on
copies (``Engine.restricted``; the state cloned), so the run that follows is not changed by it.
"""

from __future__ import annotations

import numpy as np
import torch

from sgdlab.engine.train import Engine, TrainState
from sgdlab.workflows.shard_pieces import slice_state, spread_order

# Piece sizes probed in a group of n runs: every size 2..n-2 (a piece holds 2 or more runs of a
# group and leaves 2 or more to the others: ``shard_pieces.split``) up to this many sizes; past it
# 2..9 (every remainder of a BLAS tile of up to 8 rows) and sizes spread evenly over the rest. The
# probe costs about MAX_SIZES evaluations of the whole group: 0.6 s for a ReLU sweep's 112 runs.
MAX_SIZES = 24


def _sizes(n: int) -> list[int]:
    every = list(range(2, n - 1))
    if len(every) <= MAX_SIZES:
        return every
    small = list(range(2, 10))
    rest = np.unique(np.linspace(10, n - 2, MAX_SIZES - len(small)).round().astype(int))
    return small + [int(m) for m in rest]


def _pieces(n: int) -> list[np.ndarray]:
    """Positions (into a group of ``n`` runs) of the pieces probed: for each size, the first and
    the last runs in split order (the pieces of 2 processes; of more, the outer ones)."""
    order = spread_order(n)
    out, seen = [], set()
    for m in _sizes(n):
        for pos in (order[:m], order[-m:]):
            key = tuple(sorted(int(p) for p in pos))
            if key not in seen:
                seen.add(key)
                out.append(np.array(key, dtype=np.int64))
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, NaN where NaN (a diverged run's parameters)."""
    return a.dtype == b.dtype and np.array_equal(a.numpy(), b.numpy(), equal_nan=a.is_floating_point())


def _step(eng: Engine, state: TrainState, start: int) -> tuple[TrainState, dict[str, np.ndarray]]:
    """``state`` (cloned, put at step ``start``) advanced one step by ``eng``, and evaluated."""
    s = slice_state(eng, eng.members, state)
    s.step = start
    eng.advance_to(s, start + 1)
    return s, eng.evaluate(s)


def experiment_invariance(eng: Engine, state: TrainState) -> str | None:
    """None if every probed piece (module doc) gives its runs the same bits as the whole group,
    from ``state`` (the run's first state: its shapes are the run's); else why not, in one line.
    A probe that raises (a user's metric that needs more runs than a piece holds, say) is an
    answer too: the run then stays in one process, where it may well succeed."""
    try:
        return _probe(eng, state)
    except Exception as e:  # noqa: BLE001 - any failure of the probe only keeps one process
        return f"probing it raised {type(e).__name__}: {e}"


def _probe(eng: Engine, state: TrainState) -> str | None:
    if eng.keeps_eval_state:
        return "its evaluation keeps state between steps (curvature warm starts or Monitor probes), which is not probed"
    if mine := eng.user_metrics:
        # a metric of the user's may count its calls or write files: it is not run ahead of the training
        return f"it measures metrics of your own ({', '.join(mine)}), which are not run ahead of the training to probe"
    starts = sorted({p.start for g in eng.all_groups for p in g.phases if p.end > p.start})
    with torch.no_grad():
        for start in starts:
            whole, m_whole = _step(eng.restricted(np.arange(eng.n_runs)), state, start)
            for gi, g in enumerate(eng.all_groups):
                if not any(p.start == start for p in g.phases):
                    continue
                runs = np.asarray(g.runs, dtype=np.int64)
                for pos in _pieces(len(runs)):
                    piece = eng.restricted(runs[pos])
                    s, m = _step(piece, state, start)
                    why = _differs(eng, whole, m_whole, s, m, gi, runs[pos], pos)
                    if why is not None:
                        return f"{why} ({len(pos)} of the {len(runs)} runs of a group, first step at {start})"
    return None


def _differs(eng: Engine, whole: TrainState, m_whole: dict, s: TrainState, m: dict, gi: int,
             runs: np.ndarray, pos: np.ndarray) -> str | None:
    """What differs between the piece (state ``s``, metrics ``m``: runs ``runs``, positions
    ``pos`` in group ``gi``) and the same runs in the whole group, or None."""
    where = torch.as_tensor(pos)  # the piece holds runs of group gi only: its one state entry
    for kind, full, part in (("parameter", whole.params[gi], s.params[0]),
                             ("optimizer state", whole.opt_state[gi], s.opt_state[0])):
        for name, v in full.items():
            if not _same(v[where], part[name]):
                return f"its {kind} {name} after one step differs in a piece of the runs"
    for name, v in m_whole.items():
        a, b = v[runs], m.get(name, np.full(eng.n_runs, np.nan))[runs]
        if not np.array_equal(a, b, equal_nan=True):
            return f"its metric {name} differs in a piece of the runs"
    return None
