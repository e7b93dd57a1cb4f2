"""SGD with vs without replacement on a finite-sum quadratic (Beneventano 2023, arXiv 2312.16143).

Linear regression, n = 32, d = 8, label noise 0.5, batch 1, theta_0 = 0. Measured: |theta - theta*|^2
at every epoch end of the second half of the run, averaged over those epoch ends and 6 seeds.
Criteria, from the theory of constant-step SGD (fixed before this test was first run): with
replacement the stationary mean squared deviation is Theta(eta) (slope of log MSD vs log eta in
[0.7, 1.3]); without replacement (random reshuffling) at epoch ends it is O(eta^2) (slope >= 1.5),
hence smaller at small eta: RR < WR at every eta of the grid (eta * n * mu <= 0.3 here, mu ~ 0.25
the smallest Hessian eigenvalue), and for every seed at the smallest eta.
Negative control (the same code with the sampling noise turned off): at batch b = n = 32 both
samplers take every example at every step (GD up to the order of the sum), so the gap must not
appear: the two mean deviations at eta = 0.01 agree to 1e-6 relative (the finding is a ratio ~0.02).
"""

import numpy as np
import pytest

import sgdlab
from sgdlab.core.config import from_dict, to_dict
from sgdlab.studies.related.metrics import late_mean, loglog_slope

pytestmark = pytest.mark.study("related")

ETAS = (0.01, 0.02, 0.04)
STEPS = 8000  # 250 epochs; 2nd half starts after >= 10 relaxation times 1/(eta mu) at eta = 0.01


def test_reshuffling_has_smaller_epoch_end_deviation_at_small_eta():
    cfg = sgdlab.load_experiment("replacement-quadratic")
    d = to_dict(cfg)
    d.update(steps=STEPS, seeds=6, extra_figures=[], eval={"grid": "linear", "points": STEPS // 32 + 1})
    d["arms"] = [{"name": f"{'SGD' if rep else 'RR'} eta={e:g}", "schedule": {"kind": "constant", "lr": e},
                      "optimizer": {"kind": "sgd", "batch_size": 1, "replacement": rep}}
                 for e in ETAS for rep in (True, False)]
    d["arms"] += [{"name": f"control b=n {'SGD' if rep else 'RR'}", "schedule": {"kind": "constant", "lr": ETAS[0]},
                   "optimizer": {"kind": "sgd", "batch_size": 32, "replacement": rep}} for rep in (True, False)]
    cfg = from_dict(type(cfg), d)
    res = sgdlab.run(cfg, progress=False, quiet=True)
    assert np.all(res.steps % 32 == 0)  # evaluations at epoch ends only
    late = late_mean(res.steps, res.metrics["dist_opt"], STEPS // 2)
    wr = np.array([late[res.arm(f"SGD eta={e:g}")].mean() for e in ETAS])
    rr = np.array([late[res.arm(f"RR eta={e:g}")].mean() for e in ETAS])
    assert np.all(rr < wr), (wr, rr)
    assert np.all(late[res.arm(f"RR eta={ETAS[0]:g}")] < late[res.arm(f"SGD eta={ETAS[0]:g}")])
    s_wr, s_rr = loglog_slope(np.array(ETAS), wr), loglog_slope(np.array(ETAS), rr)
    assert 0.7 <= s_wr <= 1.3, (s_wr, wr)
    assert s_rr >= 1.5, (s_rr, rr)
    c_wr, c_rr = (late[res.arm(f"control b=n {k}")].mean() for k in ("SGD", "RR"))
    assert abs(c_rr / c_wr - 1) < 1e-6, (c_wr, c_rr)
