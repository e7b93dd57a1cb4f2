"""Large-step GD on the depth-2 linear network 1/2 (a^T b - Phi)^2 (Beneventano & Woodworth 2025).

Criteria, written before the test was first run, from the paper's claims and exact algebra
(GD: a' = a - eta eps b, b' = b - eta eps a; eps = a^T b - Phi):
  (a) exact algebra: along every GD run Q_{t+1} = (1 - eta^2 eps_t^2) Q_t (checked on consecutive
      logged steps to 1e-9 relative), so GD shrinks the imbalance while |eta eps| < sqrt(2);
      gradient flow conserves Q (|Q_GF - Q_0| < 1e-7);
  (b) at every converged GD limit (train loss <= 1e-12) the sharpness equals the norm lambda
      (to 1e-6 relative) and is linearly stable: sharpness <= 2/eta (1 + 1e-6);
  (c) every converged GD limit is flatter and of lower norm than gradient flow's from the same
      init: lambda_GD < lambda_GF; for eta > 2/lambda_GF by the factor (b) implies,
      lambda_GD <= 2/eta < lambda_GF;
  (d) GD still converges for some eta > 2/lambda_GF, for every seed;
  (e) beyond linear stability of every minimum (eta >= 1/Phi: lambda >= 2 Phi at any minimum)
      no run converges.
Negative control: the regularization is a large-step effect (GD shrinks Q by a factor
prod (1 - eta^2 eps_t^2) = 1 - O(eta)), so at a small step it must not appear: at eta = 0.01 the
converged limit's norm is within 1% of gradient flow's (the finding (c) needs lambda_GD clearly
below lambda_GF; (e) is the other control: no convergence where no minimum is stable).
Checked for d = 1 (4 seeds: random signs) and d = 3 (3 seeds), Phi = 1, |a_0| = 2.5, |b_0| = 0.25.
"""

import numpy as np
import pytest
import torch

import sgdlab
from sgdlab.engine.train import Engine
from sgdlab.studies.related.metrics import (
    CONVERGED_LOSS,
    depth2_flow_limit,
    steps_to_converge,
)

pytestmark = pytest.mark.study("related")

SMALL_ETA = 0.01  # negative control: the implicit regularization vanishes as eta -> 0
ETAS = (SMALL_ETA, 0.05, 0.2, 0.3, 0.4, 0.5, 0.6, 1.05)


def run(width, seeds):
    cfg = sgdlab.load_experiment("linear2-large-step")
    sets = [f"model.width={width}", f"seeds={seeds}", "steps=1000", "eval.points=150", "snapshots=0", "extra_figures=[]"]
    cfg = sgdlab.override(cfg, sets)
    arms = [{"name": f"GD eta={e:g}", "optimizer": {"kind": "gd"}, "schedule": {"kind": "constant", "lr": e}} for e in ETAS]
    from sgdlab.core.config import from_dict, to_dict

    d = to_dict(cfg)
    d["arms"] = arms
    cfg = from_dict(type(cfg), d)
    eng = Engine(cfg)
    p0 = eng.initial_state().params[0]  # all GD runs form one group; init depends on the seed only
    res = sgdlab.run(cfg, progress=False, quiet=True)
    return cfg, eng, p0, res


@pytest.mark.parametrize("width,seeds", [(1, 4), (3, 3)])
def test_large_step_gd_finds_flatter_lower_norm_minima(width, seeds):
    cfg, _eng, p0, res = run(width, seeds)
    m, steps = res.metrics, res.steps
    eta = np.array([next(a for a in cfg.arms if a.name == r["arm"]).schedule.lr for r in res.runs])
    seed = np.array([r["seed"] for r in res.runs])
    conv = steps_to_converge(steps, m["train_loss"])
    lam_gf = {}
    for r in res.runs:
        s = r["seed"]
        if s not in lam_gf:
            a0, b0 = p0["W"][r["index"], :, 0].numpy(), p0["v"][r["index"]].numpy()
            lam_gf[s] = depth2_flow_limit(a0, b0, 1.0)["norm_sq"]
    # (a) Q_{t+1} = (1 - eta^2 eps_t^2) Q_t on consecutive logged steps
    consec = np.nonzero(np.diff(steps) == 1)[0]
    for i in range(len(res.runs)):
        q, e = m["imbalance"][:, i], m["residual"][:, i]
        ok = consec[np.isfinite(q[consec + 1])]
        np.testing.assert_allclose(q[ok + 1], (1 - eta[i] ** 2 * e[ok] ** 2) * q[ok], rtol=1e-9, atol=1e-12)
    lam, sharp = m["norm_sq"][-1], m["sharpness"][-1]
    converged = np.isfinite(conv)
    # (b)
    assert converged.any()
    np.testing.assert_allclose(sharp[converged], lam[converged], rtol=1e-6)
    assert np.all(sharp[converged] <= 2 / eta[converged] * (1 + 1e-6))
    # (c)
    for i in np.nonzero(converged)[0]:
        assert lam[i] < lam_gf[seed[i]], (eta[i], seed[i], lam[i], lam_gf[seed[i]])
    # (d)
    for s, lam_s in lam_gf.items():
        beyond = converged & (seed == s) & (eta > 2 / lam_s)
        assert beyond.any(), (s, lam_s)
    # (e)
    assert not converged[eta >= 1.0].any()
    # negative control: at a small step the limit is gradient flow's (within 1%)
    small = np.nonzero(eta == SMALL_ETA)[0]
    assert converged[small].all()
    for i in small:
        assert abs(lam[i] / lam_gf[seed[i]] - 1) < 0.01, (lam[i], lam_gf[seed[i]])
    assert m["train_loss"][-1][converged].max() <= CONVERGED_LOSS


def test_flow_from_the_engine_init_conserves_q():
    """Gradient flow (solve_ivp) from the engine's own initial parameters: Q conserved, limit exact."""
    from sgdlab.optim.flow import gradient_flow

    cfg, eng, p0, _ = None, None, None, None
    cfg = sgdlab.override(sgdlab.load_experiment("linear2-large-step"), ["model.width=2", "seeds=2", "steps=1"])
    eng = Engine(cfg)
    p0 = {k: v[:2] for k, v in eng.initial_state().params[0].items()}
    flow = gradient_flow(eng.model, p0, eng.data, t_end=40.0)
    lim = flow.final()
    for r in range(2):
        q0 = float((p0["W"][r] ** 2).sum() - (p0["v"][r] ** 2).sum())
        q = float((lim["W"][r] ** 2).sum() - (lim["v"][r] ** 2).sum())
        assert abs(q - q0) < 1e-7
        exact = depth2_flow_limit(p0["W"][r, :, 0].numpy(), p0["v"][r].numpy(), 1.0)
        lam = float(eng.model.sharpness({k: v[r:r + 1] for k, v in lim.items()}, eng.data.x_train,
                                        eng.data.y_train)[0])
        assert lam == pytest.approx(exact["sharpness"], rel=1e-7)
    assert torch.isfinite(lim["W"]).all()
