"""What the compiled diagonal-net kernel guarantees against the torch path (README, "How it is fast").

Both apply the same update law, u <- u - eta g*v, v <- v - eta g*u with g = (1/b) sum_i r_i x_i,
but they sum in different orders (the kernel loops over coordinates, torch calls BLAS), so they
agree to rounding per step, not bit for bit. Guaranteed and tested here:
  (a) from the same state, one chunk of steps agrees to a tight tolerance -- also in a chaotic
      large-step GD state (diag-net-n40, eta = 3.53), where longer runs decorrelate;
  (b) a non-chaotic run agrees over the whole run (small-step SGD and GD, every evaluation).
Not guaranteed: bit-identical trajectories under chaotic large-step dynamics, where a 1e-16
difference grows by orders of magnitude over thousands of steps (docs/diag-net.md quotes both
paths for the n = 40 GD arms).
"""

import numpy as np
import pytest

import sgdlab
from sgdlab.core.config import from_dict, to_dict
from sgdlab.engine.train import Engine, train
from sgdlab.optim.stepper import advance

pytestmark = pytest.mark.study("diag_net")

CHAOTIC_STEPS = 2000  # into the large-step phase of GD eta = 3.53 (decay at 10% of 1e5 steps)
CHUNK_STEPS = 5  # one chunk from the same state
PER_STEP_RTOL = 1e-12  # a few hundred ulps: different summation order, same law


def _lr(g, t0, n):
    return np.stack([np.broadcast_to(s(np.arange(t0, t0 + n)), (n,)) for s in g.schedules]).astype(np.float64)


def _advance(eng, params, t0, n, fused):
    """Advance copies of every group's parameters from step t0 by n steps; returns the copies."""
    out = []
    for g, p in zip(eng.groups, params):
        q = {k: v.clone() for k, v in p.items()}
        diverged, cap = np.full(len(g.runs), -1, dtype=np.int64), np.full(len(g.runs), np.inf)
        advance(eng.model, q, eng.data, g.opt, {}, g.seeds, _lr(g, t0, n), t0, diverged, cap, fused=fused)
        assert (diverged < 0).all()
        out.append(q)
    return out


@pytest.mark.parametrize("kind,lr", [("gd", 3.53), ("sgd", None)])
def test_one_chunk_from_the_same_state_agrees_even_when_chaotic(kind, lr):
    cfg = sgdlab.load_experiment("diag-net-n40")  # 1e5-step schedules: step CHAOTIC_STEPS is in the large phase
    d = to_dict(cfg)
    d["arms"] = [a for a in d["arms"] if a["optimizer"]["kind"] == kind and lr in (None, a["schedule"]["lr"])]
    assert d["arms"]
    d["seeds"] = 2
    eng = Engine(from_dict(type(cfg), d))
    start = _advance(eng, eng.initial_state().params, 0, CHAOTIC_STEPS, fused=True)
    compiled = _advance(eng, start, CHAOTIC_STEPS, CHUNK_STEPS, fused=True)
    torch_path = _advance(eng, start, CHAOTIC_STEPS, CHUNK_STEPS, fused=False)
    for pc, pt in zip(compiled, torch_path):
        for k in pc:
            err = float((pc[k] - pt[k]).abs().max() / pt[k].abs().max())
            assert err < PER_STEP_RTOL * CHUNK_STEPS, (k, err)


def test_non_chaotic_run_agrees_over_the_whole_run():
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net-surface"),
                          ["seeds=3", "extra_figures=[]", "snapshots=0", "eval.points=20",
                           "arms.1.schedule.lr=0.3", "arms.2.schedule.lr=0.1"])  # GF, small-step GD and SGD
    _, _, m1 = train(cfg)
    _, _, m2 = train(sgdlab.override(cfg, ["fused=false"]))
    for k in m1:
        np.testing.assert_allclose(m1[k], m2[k], rtol=1e-9, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("n", [80, 83])  # 83: the last n mod 4 examples take the one-at-a-time loop
def test_loss_metric_is_the_brute_force_loss_and_a_runs_bits_do_not_depend_on_its_batch(n):
    """half_mse_loss (the compiled per-run kernel) against ||X beta - y||^2 / (2n) summed example by
    example in float64, and each run's value bit for bit the same alone, in pieces or in the
    whole batch (what sharded runs rely on; a BLAS product over runs does not promise it)."""
    import torch

    from sgdlab.studies.diag_net.metrics import half_mse_loss

    rng = np.random.default_rng(1)
    x, y = torch.from_numpy(rng.standard_normal((n, 30))), torch.from_numpy(rng.standard_normal(n))
    beta = torch.from_numpy(rng.standard_normal((37, 30)) * 0.3)
    got = half_mse_loss(beta, x, y)
    brute = [sum((float(x[i] @ beta[r]) - float(y[i])) ** 2 for i in range(n)) / (2 * n) for r in range(37)]
    np.testing.assert_allclose(got.numpy(), brute, rtol=1e-13)
    for m in (1, 2, 3, 5, 8):
        for at in (0, 1, 3, 37 - m):
            assert torch.equal(half_mse_loss(beta[at:at + m], x, y), got[at:at + m]), (m, at)
