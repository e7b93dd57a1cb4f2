"""Reproduction of the diagonal-net findings of Andriushchenko et al. (2023), across seeds.

Criteria, fixed before running and taken from the paper's claims (not tuned):
  (a) SGD with a long large-step phase (decay at 50%) ends sparser (median ||u*v||_0) than
      SGD eta=0.25 constant and than the small-step GD baseline;
  (b) it ends with a lower median test loss than both;
  (c) the longer the large-step phase, the sparser: median ||u*v||_0 at 50% <= 30% <= 10%;
  (d) divergences are reported, not hidden: every run is either finite or listed as diverged,
      and inside the stabilization window at most half of the seeds of an arm diverge.
Medians are over the non-diverged seeds of 8. The step sizes: eta=0.27 sits inside the
stabilization window measured on this data (0.25-0.28; docs/diag-net.md); the paper's 0.282 is
at its edge and is checked too, with the authors' 1e-50 threshold for ||u*v||_0.

Negative control (the same experiment with the effect-producing knob turned off): with the
"large" step of the decayed arms set to 0.1, below the window (the loss converges, it never
stabilizes), there is no large-step phase, so the finding must not appear: (a) and (b) fail --
no decayed arm ends sparser (||u*v||_0 at 1e-3) or with lower test loss than SGD eta=0.25.
"""

import numpy as np
import pytest

import sgdlab

pytestmark = pytest.mark.study("diag_net")

CONTROL_LR = 0.1  # below the stabilization window: the loss converges, no large-step phase


def run_paper_figure(large_lr):
    cfg = sgdlab.load_experiment("diag-net")
    sets = [f"arms.{i}.schedule.lr={large_lr}" for i in (1, 2, 3)]
    sets += ["eval.grid='log'", "eval.points=30"]  # only final values are judged: a coarse grid suffices
    return sgdlab.run(sgdlab.override(cfg, sets), progress=False, quiet=True)


def medians(res, metric):
    arms = res.summary["arms"]
    return {name: arms[name]["final"][metric]["median"] for name in arms}


def finding(res, l0_metric):
    """The criteria (a)-(c) of the module docstring, each True or False. Arms by position (the
    config's order: constant, decays at 10 / 30 / 50%, GD), since overrides may relabel them."""
    l0, test = medians(res, l0_metric), medians(res, "test_loss")
    const, d10, d30, d50, gd = res.summary["arms"]
    return {"a": l0[d50] < l0[const] and l0[d50] < l0[gd],
            "b": test[d50] < test[const] and test[d50] < test[gd],
            "c": l0[d50] <= l0[d30] <= l0[d10],
            "medians": {"l0": l0, "test": test}}


@pytest.mark.parametrize("large_lr,l0_metric", [(0.27, "l0_robust"), (0.282, "l0")])
def test_longer_large_step_phase_gives_sparser_and_better_solutions(large_lr, l0_metric):
    res = run_paper_figure(large_lr)
    f = finding(res, l0_metric)
    assert f["a"] and f["b"] and f["c"], f
    # (d)
    for name, arm in res.summary["arms"].items():
        idx = res.arm(name)
        finite = np.isfinite(res.final("test_loss")[idx]).sum()
        assert finite + arm["n_diverged"] == arm["n_runs"] == len(idx)
        assert len(arm["diverged_seeds"]) == arm["n_diverged"]
        if large_lr == 0.27:
            assert arm["n_diverged"] <= arm["n_runs"] // 2, (name, arm["n_diverged"])


def test_negative_control_no_large_step_phase_no_sparsity_gain():
    res = run_paper_figure(CONTROL_LR)
    f = finding(res, "l0_robust")
    assert not f["a"] and not f["b"], f
    l0, test = f["medians"]["l0"], f["medians"]["test"]
    const, *decayed, _gd = res.summary["arms"]
    for arm in decayed:  # no decayed arm beats the constant step on either measure
        assert l0[arm] >= l0[const] and test[arm] >= test[const], (arm, f)
