"""Three-layer ReLU teacher-student (Andriushchenko et al. 2023): per-layer activation sparsity
decreases with the length of the large-step phase.

Criterion (the paper's claim, fixed before this test was written; medians over the 8 seeds of
the bundled experiment, diverged seeds excluded): in both hidden layers, the fraction of positive
activations is lower for every large-step arm than for eta=0.011 constant; the large-step arms
also reach a lower test loss than the small-step one. The paper's ordering among the decays
(10% >= 30% >= 50%, one seed) is not asserted: at 16 seeds the three decays are within each
other's IQRs in both layers and the layer-1 medians are not monotone (0.315 / 0.317 / 0.311,
docs/relu-nets.md), so whether it held on these 8 seeds would be chance, not the finding.

Negative control (the same schedules with the large step turned off): base step 0.011 / (1 + 5
sqrt(0.5)) = 0.0024, so the warm-up never exceeds the small step 0.011; then the finding must not
appear: not every warm-up arm has fewer positive activations than eta = 0.011 in both layers.
"""

import pytest

import sgdlab

pytestmark = pytest.mark.study("relu_nets")

SMALL = "SGD eta=0.011"
LARGE = ("SGD eta=0.04 warm-up, /3.5 at 10%", "SGD eta=0.04 warm-up, /2.5 at 30%", "SGD eta=0.04 warm-up, /5 at 50%")


CONTROL_LR = 0.011 / (1 + 5 * 0.5 ** 0.5)  # the warm-up's peak (at 50%) equals the small step


def fewer_positive(arms, large):
    med = lambda arm, m: arms[arm]["final"][m]["median"]
    return all(med(a, f"block{layer}_active") < med(SMALL, f"block{layer}_active")
               for a in large for layer in (1, 2))


def test_negative_control_no_large_step_no_sparser_layers():
    cfg = sgdlab.override(sgdlab.load_experiment("relu-3layer"),
                          [f"arms.{i}.schedule.lr={CONTROL_LR}" for i in (1, 2, 3)] + ["eval.points=6"])
    res = sgdlab.run(cfg, progress=False, quiet=True)
    arms = res.summary["arms"]  # by position: the override may relabel the warm-up arms
    assert not fewer_positive(arms, list(arms)[1:]), arms


def test_per_layer_sparsity_falls_with_the_large_step_phase():
    res = sgdlab.run("relu-3layer", progress=False, quiet=True)
    arms = res.summary["arms"]
    med = lambda arm, m: arms[arm]["final"][m]["median"]
    assert fewer_positive(arms, LARGE), {a: arms[a]["final"] for a in (SMALL,) + LARGE}
    assert all(med(a, "test_loss") < med(SMALL, "test_loss") for a in LARGE)
    for a in (SMALL,) + LARGE:
        assert arms[a]["n_runs"] - arms[a]["n_diverged"] >= 3
