"""Three-layer ReLU teacher-student (Andriushchenko et al. 2023): per-layer activation sparsity
decreases with the length of the large-step phase.

Criterion (the paper's claim, fixed before this test was written; medians over the 8 seeds of
the bundled experiment, diverged seeds excluded): in both hidden layers, the fraction of positive
activations is lower for every large-step arm than for eta=0.011 constant, and is non-increasing
in the length of the large-step phase (10% >= 30% >= 50%); the large-step arms also reach a lower
test loss than the small-step one.
"""

import sgdlab

SMALL = "SGD eta=0.011"
LARGE = ("SGD eta=0.04 warm-up, /3.5 at 10%", "SGD eta=0.04 warm-up, /2.5 at 30%", "SGD eta=0.04 warm-up, /5 at 50%")


def test_per_layer_sparsity_falls_with_the_large_step_phase():
    res = sgdlab.run("relu-3layer", progress=False, quiet=True)
    arms = res.summary["arms"]
    med = lambda arm, m: arms[arm]["final"][m]["median"]
    for layer in (1, 2):
        m = f"positive_fraction_l{layer}"
        small = med(SMALL, m)
        large = [med(a, m) for a in LARGE]
        assert all(x < small for x in large), (m, small, large)
        assert large[0] >= large[1] >= large[2], (m, large)
    assert all(med(a, "test_loss") < med(SMALL, "test_loss") for a in LARGE)
    for a in (SMALL,) + LARGE:
        assert arms[a]["n_runs"] - arms[a]["n_diverged"] >= 3
