"""Which runs each process of a sharded run holds (:mod:`sgdlab.workflows.shards`).

The runs (arm x seed) are cut into pieces of near-equal cost (:func:`split`). Before training
the cost of a run is a model of its work (:func:`run_weights`); during training it is measured
(:func:`measured_costs`): a metric's cost depends on the state a run is in (the diagonal net's
Jacobian rank is exact, and its cost grows as the features become sparse, sooner for some seeds
and arms than for others), which no model known before training captures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sgdlab.engine.train import Engine, TrainState

# A run-step's cost beyond its batch, in examples: on the diagonal net's kernel a full-batch step
# (80 examples) costs 12.4 batch-1 steps, so (80 + c) / (1 + c) = 12.4, c ~ 6.
STEP_OVERHEAD_EXAMPLES = 6.0


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


@dataclass(frozen=True)
class Measured:
    """What the pieces of a sharded run took over the same stretch of training: ``steps``
    training steps and ``evals`` evaluations. Per piece: ``seconds`` in all and ``group_seconds``
    ((2, G): advancing, evaluating each group; ``Engine.group_seconds``); ``extra``: the calling
    process's own work besides its piece (writing the rows), seconds."""

    steps: int
    evals: int
    seconds: Sequence[float]
    group_seconds: Sequence[np.ndarray]
    extra: float = 0.0


def measured_costs(eng: Engine, parts: Sequence[np.ndarray], m: Measured, steps_left: int,
                   evals_left: int) -> tuple[dict[int, float], float]:
    """Each run's cost over the rest of the training (``steps_left`` steps, ``evals_left``
    evaluations), and the calling process's extra work over it, predicted from ``m``: a group's
    advancing time per step and evaluating time per evaluation, shared by its runs in the piece
    (a run of a one-run group costs what that group's batch costs, however few examples it
    steps); the rest of a piece's time (messages, copies, metrics measured over all groups) per
    evaluation, by all its runs. Rates, not totals: the first evaluations come one step apart
    and the later ones hundreds, so the mix of advancing and evaluating ahead is not the one
    measured."""
    per_step = 1.0 / max(m.steps, 1)
    per_eval = 1.0 / max(m.evals, 1)
    out = {}
    for part, secs, per_group in zip(parts, m.seconds, m.group_seconds):
        members = mask(eng, part)
        rest = max(0.0, secs - float(np.sum(per_group))) * per_eval * evals_left / len(part)
        for g in eng.all_groups:
            mine = [r for r in g.runs if members[r]]
            adv, ev = (max(0.0, float(x)) for x in per_group[:, g.index])
            share = (adv * per_step * steps_left + ev * per_eval * evals_left) / max(len(mine), 1)
            for r in mine:
                out[r] = share + rest
    return out, max(0.0, m.extra) * per_eval * evals_left


def split(eng: Engine, workers: int, cost: dict[int, float] | None = None, extra: float = 0.0) -> list[np.ndarray]:
    """The runs of each shard: at most ``workers`` non-empty pieces of near-equal cost (``cost``:
    run -> cost, by default :func:`run_weights`), the first piece carrying ``extra`` besides its
    runs (the calling process's own work: writing the rows).

    The groups, in order, are cut into contiguous pieces, each group's runs taken in
    :func:`spread_order`: a group's runs are its arms one after the other, and in that order any
    stretch of them is spread over the whole group, so a piece holds every arm's runs in about
    equal shares, and so do the runs that move when the pieces are cut again. The pieces' costs
    then stay alike as the arms' costs drift apart during training. A group is never cut so that
    a piece holds exactly one of its runs: a batch of one run may take another code path than the
    same run among others (the deep-net stepper steps one run without ``vmap``), and results must
    not depend on the split."""
    N = eng.n_runs
    n = max(1, min(workers, N))
    groups = [np.asarray(g.runs, dtype=np.int64) for g in eng.all_groups]
    groups = [g[spread_order(len(g))] for g in groups]
    order = np.concatenate(groups)
    w = run_weights(eng) if cost is None else cost
    cum = np.cumsum([w[int(r)] for r in order])  # cum[i]: cost of the runs at positions 0..i
    total = cum[-1] + extra
    bounds = np.cumsum([0] + [len(g) for g in groups])
    gi = np.searchsorted(bounds, np.arange(N), side="right") - 1  # group of each position
    cuts: list[int] = []
    for k in range(1, n):
        prev = cuts[-1] if cuts else 0
        ok = [p for p in range(prev + 1, N) if _may_cut(p, prev, gi, bounds)]
        if ok:
            target = k * total / n - extra
            cuts.append(min(ok, key=lambda p, t=target: abs(cum[p - 1] - t)))
    return [np.sort(p) for p in np.split(order, cuts)]  # each piece's runs in run-index order


def spread_order(n: int) -> np.ndarray:
    """The positions 0..n-1 in the order of their bit-reversed indices (van der Corput): for
    n = 8, 0 4 2 6 1 5 3 7. Every stretch of this order is spread evenly over 0..n-1 (its first
    half is the even positions, its first quarter every fourth one, ...)."""
    bits = max(1, (n - 1).bit_length())
    rev = [int(f"{j:0{bits}b}"[::-1], 2) for j in range(n)]
    return np.argsort(rev, kind="stable")


def _may_cut(p: int, prev: int, gi: np.ndarray, bounds: np.ndarray) -> bool:
    """May a piece start at position ``p`` when the previous one starts at ``prev``? At a group
    boundary, or inside a group leaving at least 2 of its runs on each side."""
    if gi[p] != gi[p - 1]:
        return True
    gs, ge = bounds[gi[p]], bounds[gi[p] + 1]
    return p - max(gs, prev) >= 2 and ge - p >= 2


def mask(eng: Engine, runs: np.ndarray) -> np.ndarray:
    """The (R,) bool mask of the runs ``runs`` (run indices)."""
    out = np.zeros(eng.n_runs, dtype=bool)
    out[runs] = True
    return out


def slice_state(full: Engine, members: np.ndarray, state: TrainState) -> TrainState:
    """The state of the runs ``members`` ((R,) bool mask) cut from the whole ``state`` of ``full``."""
    params, opt = [], []
    for g, p, o in zip(full.all_groups, state.params, state.opt_state):
        pos = np.flatnonzero(members[g.runs])
        if pos.size:
            params.append({k: v[pos].clone() for k, v in p.items()})
            opt.append({k: v[pos].clone() for k, v in o.items()})
    return TrainState(state.step, params, state.diverged.copy(), state.max_loss.copy(), opt)


def held_groups(full: Engine, members: np.ndarray) -> list[int]:
    """Indices of the groups of ``full`` that a shard with run mask ``members`` holds a part of."""
    return [i for i, g in enumerate(full.all_groups) if members[g.runs].any()]


def state_bytes(state: TrainState) -> int:
    """Bytes of a training state's tensors (parameters and optimizer state)."""
    return sum(v.numel() * v.element_size() for d in (*state.params, *state.opt_state) for v in d.values())
