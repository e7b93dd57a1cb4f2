"""Support identification by SGD on a two-layer linear net v^T W x (Beneventano, Pinto & Poggio 2024).

Data: y = x_0 + x_1 + x_0 x_1, x ~ N(0, I_20), n = 200 (not linearly realizable: per-example
residuals stay ~1). irrelevant_norm = RMS norm of the 18 irrelevant columns of W / initial.
Criteria, from the paper's claims (the effect is second order, grows with eta/b, absent under
GD, and GD needs explicit regularization), fixed before this test was first run; per seed (the
init depends on the seed only, so arms are paired), 3 seeds, T = 2500 steps:
  (a) GD keeps the irrelevant columns: irrelevant_norm > 0.9 at T and changes by < 1e-3
      between T/2 and T (GD only moves W along the current v: the rest of W is never touched);
  (b) with the same eta, smaller batches shrink them more: b=1 < b=4 < b=16 < GD at T;
  (c) at equal eta*t, the larger step shrinks more: b=1 eta at t = T/2 < b=1 eta/2 at t = T;
  (d) GD + L2 shrinks the irrelevant columns too (< 0.5 x GD at T) but also the relevant ones
      (relevant_norm below GD's), while SGD b=1 keeps the relevant ones (>= GD's).
Negative controls (the finding must not appear): GD itself, criterion (a); and the same SGD code
with the noise turned off, batch b = n = 200 (every step draws all examples: GD up to the order
of the sum): its irrelevant columns behave as GD's, > 0.9 at T and unchanged (< 1e-3) from T/2.
"""

import numpy as np
import pytest

import sgdlab
from sgdlab.core.config import from_dict, to_dict
from sgdlab.studies.related.metrics import value_at_time

pytestmark = pytest.mark.study("related")

T = 2500


def test_sgd_removes_irrelevant_first_layer_columns():
    cfg = sgdlab.override(sgdlab.load_experiment("support-identification"),
                          [f"steps={T}", "seeds=3", "eval.points=51", "extra_figures=[]"])
    d = to_dict(cfg)
    d["arms"].append({"name": "control: SGD b=n", "optimizer": {"kind": "sgd", "batch_size": cfg.data.n},
                      "schedule": d["arms"][0]["schedule"]})
    cfg = from_dict(type(cfg), d)
    res = sgdlab.run(cfg, progress=False, quiet=True)
    m, steps = res.metrics, res.steps
    arm = {getattr(a, "label", a.name): a for a in cfg.arms}  # names may hold {schedule.lr}-style placeholders
    eta = cfg.arms[0].schedule.lr
    gd, l2 = res.arm(f"GD eta={eta:g}"), res.arm(f"GD eta={eta:g} + L2 1e-2")
    b16, b4, b1 = (res.arm(f"SGD b={b} eta={eta:g}") for b in (16, 4, 1))
    half = res.arm(f"SGD b=1 eta={eta / 2:g}")
    assert arm[f"SGD b=1 eta={eta / 2:g}"].schedule.lr == eta / 2
    irr, rel = m["irrelevant_norm"], m["relevant_norm"]
    assert np.isfinite(irr[-1]).all(), "no run may diverge"
    mid = int(np.nonzero(steps == T // 2)[0][0])
    # (a), and the negative control: SGD with b = n behaves as GD
    for runs in (gd, res.arm("control: SGD b=n")):
        assert np.all(irr[-1, runs] > 0.9) and np.all(np.abs(irr[-1, runs] - irr[mid, runs]) < 1e-3), irr[:, runs]
    # (b)
    assert np.all(irr[-1, b1] < irr[-1, b4]) and np.all(irr[-1, b4] < irr[-1, b16]), (irr[-1, b1], irr[-1, b4], irr[-1, b16])
    assert np.all(irr[-1, b16] < irr[-1, gd]), (irr[-1, b16], irr[-1, gd])
    # (c) equal eta * t = eta * T / 2
    big = value_at_time(steps, irr[:, b1], np.full(len(b1), eta), eta * T / 2)
    small = value_at_time(steps, irr[:, half], np.full(len(half), eta / 2), eta * T / 2)
    assert np.all(big < small), (big, small)
    # (d)
    assert np.all(irr[-1, l2] < 0.5 * irr[-1, gd])
    assert np.all(rel[-1, l2] < rel[-1, gd]) and np.all(rel[-1, b1] >= rel[-1, gd]), (rel[-1, l2], rel[-1, b1], rel[-1, gd])
