"""Names and definitions of the mini-batch curvature quantities (Edge of Stochastic Stability).

Their estimators are in :mod:`sgdlab.metrics.curvature.batch`; the names live here, apart from
torch, so that configs naming them validate without importing it.
"""

from __future__ import annotations

__all__ = ["QUANTITIES"]

QUANTITIES = {
    "batch_sharpness": "E_B[g_B^T H_B g_B / |g_B|^2]",
    "batch_sharpness_ratio": "E_B[g_B^T H_B g_B] / E_B[|g_B|^2]",
    "minibs": "E_B[lambda_max(H_B)]",
    "gni": "E_B[g_B^T H g_B] / |grad L|^2",
    "step_sharpness": "E_B[g_B^T H g_B / |g_B|^2]",
}
