"""Reproduction (CPU-sized) of the deep-network claim of Andriushchenko et al. (2023): the
longer the large-step phase, the sparser the features of the top block.

Setting: the bundled ``deep-demo-digits`` experiment reduced for CI -- VGG-11-BN at width 4
instead of 8 and 500 steps instead of 1000 (the schedules are fractions of the run, so the step
sizes are the same: eta = 0.02 constant vs 0.3 * 1.05^(100 t/T), /10 at p = 10 / 30 / 50%, then
/100 at 90%), on scikit-learn's digits. The settings were chosen from scans on seeds 0-2; this
test runs the held-out seeds 3, 4, 5.

Criteria, fixed before running these seeds (medians over the 3 seeds, values at the last step):
  (a) the top block's (block5) merged feature sparsity coefficient of the p = 50% arm is below
      the small-step baseline and below the p = 10% arm, each by at least MARGIN;
  (b) it does not increase with the length of the large-step phase:
      s(50%) <= s(30%) <= s(10%) + TOLERANCE (p = 10% and 30% barely leave the small-step regime
      at this scale: on seeds 0-2 they sat within 0.02 of the baseline);
  (c) the loss stabilizes during the large-step phase: at 40% of the run the train loss of the
      p = 50% arm is above STABILIZED_RATIO x that of the small-step arm, which keeps decreasing.
Test error is not judged: on digits it does not separate the arms reliably at this scale.

Negative control (slow; the same reduced demo with the large step turned off): the warm-up arms'
base step 0.02 / 1.05^50, so that even the p = 50% arm peaks at the small step 0.02; then (a) must
not appear: the p = 50% arm is not below both the baseline and the p = 10% arm by MARGIN.
"""

import numpy as np
import pytest
import torch

import sgdlab

pytestmark = pytest.mark.study("deep_nets")

SEEDS = 3  # seeds 3, 4, 5 (first_seed = 3)
MARGIN = 0.05  # absolute, on the merged coefficient in [0, 1]
TOLERANCE = 0.02  # seed noise of the p = 10% / 30% arms on seeds 0-2
STABILIZED_RATIO = 2.0
TOP = "block5_sparsity"


REDUCED = ["model.width=4", "steps=500", f"seeds={SEEDS}", "first_seed=3", "eval.points=6"]
CONTROL_LR = 0.02 / 1.05 ** 50  # exp warm-up 1.05^(100 t/T) peaks at 1.05^50 at p = 50%


def _run(sets):
    cfg = sgdlab.override(sgdlab.load_experiment("deep-demo-digits"), sets)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is fastest and deterministic
    try:
        return sgdlab.run(cfg, progress=False, quiet=True)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def result():
    return _run(REDUCED)


def sparser_top_block(res):
    """Criterion (a) of the module docstring."""
    small, p10, _p30, p50 = [getattr(a, "label", a.name) for a in res.config.arms]
    s = {a: _median(res, TOP, a) for a in (small, p10, p50)}
    return s[p50] < s[small] - MARGIN and s[p50] < s[p10] - MARGIN, s


@pytest.mark.slow
def test_negative_control_no_large_step_no_sparser_top_block():
    res = _run(REDUCED + [f"arms.{i}.schedule.lr={CONTROL_LR}" for i in (1, 2, 3)])
    found, s = sparser_top_block(res)
    assert not found, s


def _median(res, metric, arm, step_index=-1):
    return float(np.median(res.metrics[metric][step_index, res.arm(arm)]))


def test_longer_large_step_phase_gives_sparser_top_block(result):
    names = [getattr(a, "label", a.name) for a in result.config.arms]
    small, p10, p30, p50 = names
    s = {a: _median(result, TOP, a) for a in names}
    assert all(np.isfinite(v) for v in s.values()), s
    # (a)
    assert sparser_top_block(result)[0], s
    # (b)
    assert s[p50] <= s[p30] <= s[p10] + TOLERANCE, s
    # (c)
    i40 = int(np.searchsorted(result.steps, 0.4 * result.config.steps))
    loss_small, loss_p50 = (_median(result, "train_loss", a, i40) for a in (small, p50))
    assert loss_p50 > STABILIZED_RATIO * loss_small, (loss_p50, loss_small)
