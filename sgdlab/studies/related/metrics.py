"""Reductions of logged metrics used by the related-findings figures, docs and tests.

Pure numpy on arrays shaped like ``RunResult.metrics`` (E evaluation steps x R runs); never
imports the trainer.
"""

from __future__ import annotations

import numpy as np

# Training loss below which a run of the depth-2 linear net counts as converged:
# |eps| < sqrt(2e-12) ~ 1.4e-6, far below any plateau of the runs studied.
CONVERGED_LOSS = 1e-12


def steps_to_converge(steps: np.ndarray, loss: np.ndarray, tol: float = CONVERGED_LOSS) -> np.ndarray:
    """First evaluation step with loss <= tol and staying below it afterwards, per run: (R,) float
    (NaN when never converged or diverged). Resolution: the evaluation grid."""
    ok = np.nan_to_num(loss, nan=np.inf) <= tol  # (E, R)
    stays = np.flip(np.logical_and.accumulate(np.flip(ok, 0), 0), 0)  # ok from e to the end
    out = np.full(loss.shape[1], np.nan)
    for r in range(loss.shape[1]):
        idx = np.nonzero(stays[:, r])[0]
        if idx.size:
            out[r] = steps[idx[0]]
    return out


def value_at_time(steps: np.ndarray, values: np.ndarray, lr: np.ndarray, time: float) -> np.ndarray:
    """Each run's metric at training time eta * t = ``time`` (linear interpolation in t): (R,).
    lr: (R,) constant step sizes. NaN where t = time / lr is outside the logged steps."""
    out = np.full(values.shape[1], np.nan)
    for r in range(values.shape[1]):
        t = time / lr[r]
        if steps[0] <= t <= steps[-1]:
            out[r] = np.interp(t, steps, values[:, r])
    return out


def depth2_flow_limit(a0: np.ndarray, b0: np.ndarray, phi: float) -> dict[str, float]:
    """Exact limit of gradient flow on 1/2 (a^T b - phi)^2 from (a0, b0) (vectors in R^d).

    With u = a + b, w = a - b the flow is u' = -eps u, w' = eps w, so u = u0 e^{-s},
    w = w0 e^{s} (s = integral of eps) and Q = u^T w is conserved. The limit solves
    a^T b = (|u|^2 - |w|^2) / 4 = phi: with z = e^{2s}, |w0|^2 z^2 + 4 phi z - |u0|^2 = 0.
    Returns norm lambda = (|u|^2 + |w|^2) / 2 (= the sharpness at a global minimum, where
    the Hessian is g g^T with g = (b, a)) and the imbalance Q.
    """
    a0, b0 = np.atleast_1d(np.asarray(a0, float)), np.atleast_1d(np.asarray(b0, float))
    uu, ww = float(np.sum((a0 + b0) ** 2)), float(np.sum((a0 - b0) ** 2))
    z = uu / (4 * phi) if ww == 0 else (-4 * phi + np.sqrt(16 * phi ** 2 + 4 * ww * uu)) / (2 * ww)
    lam = (uu / z + ww * z) / 2
    return {"norm_sq": lam, "sharpness": lam, "imbalance": float(a0 @ a0 - b0 @ b0)}


def late_mean(steps: np.ndarray, values: np.ndarray, start: int) -> np.ndarray:
    """Mean over the evaluation steps >= start of each run: (R,) (NaN-aware)."""
    sel = steps >= start
    with np.errstate(all="ignore"):
        return np.nanmean(values[sel], axis=0)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])
