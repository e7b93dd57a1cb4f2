"""How a run's runs are cut into pieces, one per process (sgdlab.workflows.shard_pieces): every
run once, a group never left with one run in a piece, the arms spread, and the cuts following
measured costs and the calling process's own work."""

import collections

import numpy as np
import pytest
from shard_helpers import diag

import sgdlab
from sgdlab.engine.train import Engine
from sgdlab.workflows.shard_pieces import Measured, measured_costs
from sgdlab.workflows.shards import split

pytestmark = pytest.mark.study("diag_net")


def test_split_covers_every_run_spreads_the_arms_and_is_capped():
    for cfg in (diag(), sgdlab.override(sgdlab.load_experiment("label-noise-diag-net"), ["seeds=3"])):
        eng = Engine(cfg)
        for n in (1, 2, 3, 5, 40):
            parts = split(eng, n)
            assert 1 <= len(parts) <= min(n, eng.n_runs) and all(len(p) for p in parts)
            np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(eng.n_runs))
            for g in eng.all_groups:  # a piece holds all of a group, none, or at least 2 of its runs
                for p in parts:
                    assert len(set(p) & set(g.runs)) in {0, len(g.runs)} | set(range(2, len(g.runs) + 1))
    eng = Engine(diag())
    assert len(split(eng, 5)) == 5
    # weights: a batch-1 run 1 + 7/7 = 2, the full-batch GD run (n = 20) 1 + 26/7 = 4.7; half of
    # the 28.7 is 14.35: 7 runs, then 5 SGD runs and GD
    parts = split(eng, 2)
    assert [len(p) for p in parts] == [7, 6]
    # the 4 SGD arms' runs (one group, arm after arm) taken in bit-reversed order: each piece holds every arm,
    # within one run of an equal share
    eng = Engine(diag("seeds=8"))
    arm = {r.index: r.arm for r in eng.runs}
    sgd = eng.all_groups[0].runs
    for p in split(eng, 2):
        share = collections.Counter(arm[int(r)] for r in p if int(r) in sgd)
        assert set(share) == {arm[r] for r in sgd} and max(share.values()) - min(share.values()) <= 1


def test_split_follows_measured_costs_and_the_callers_own_work():
    eng = Engine(diag())
    even = split(eng, 2, {r: 1.0 for r in range(eng.n_runs)})
    assert [len(p) for p in even] == [6, 7]
    # the calling process's writing counts for piece 0: of 13 + 3, it keeps 8 - 3 runs
    assert [len(p) for p in split(eng, 2, {r: 1.0 for r in range(eng.n_runs)}, extra=3.0)] == [5, 8]
    # piece 0's runs measured twice as costly: it keeps fewer of them
    nothing = [np.zeros((2, len(eng.all_groups)))] * 2
    costs, extra = measured_costs(eng, even, Measured(10, 2, [2.0 * len(even[0]), 1.0 * len(even[1])], nothing),
                                  100, 20)
    assert extra == 0 and len(split(eng, 2, costs)[0]) < 6
    # per group: a group's advancing time per step and evaluating time per evaluation are its
    # runs', projected over the steps and evaluations left; the rest of a piece's time (per
    # evaluation) is shared by all its runs; the caller's writing per evaluation is its extra
    sgd, gd = eng.all_groups
    mine = [r for r in sgd.runs if r in set(even[1])]
    measured = Measured(steps=10, evals=2, seconds=[6.0, 4.0 + 0.7], extra=0.5,
                        group_seconds=[np.array([[4.0, 0.0], [2.0, 0.0]]), np.array([[2.0, 0.6], [1.0, 0.4]])])
    costs, extra = measured_costs(eng, even, measured, 100, 20)
    rest = 0.7 / 2 * 20 / len(even[1])
    assert costs[gd.runs[0]] == pytest.approx(0.6 / 10 * 100 + 0.4 / 2 * 20 + rest)
    assert costs[mine[0]] == pytest.approx((2.0 / 10 * 100 + 1.0 / 2 * 20) / len(mine) + rest)
    assert costs[int(even[0][0])] == pytest.approx((4.0 / 10 * 100 + 2.0 / 2 * 20) / len(even[0]))
    assert extra == pytest.approx(0.5 / 2 * 20)
