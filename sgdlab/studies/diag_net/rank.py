"""Exact Jacobian rank of the diagonal linear network without an SVD of phi, batched over runs.

Definition (the authors'): for h(x) = <x, u*v> on inputs X (N x d), phi = [X diag(v), X diag(u)]
(N x 2d) and rank phi = #{k : sigma_k(phi) > rtol sigma_1(phi)} (0 if phi = 0).

Reduction. phi phi^T = X diag(u^2 + v^2) X^T = (X D)(X D)^T with D = diag(s), s = sqrt(u^2 + v^2),
so the nonzero singular values of phi are exactly those of the N x d matrix X D (phi has d more
singular values, all exactly 0, never counted). Everything below works on X D; s is divided by
its largest entry first (the rank is scale-free). G = X^T X and H = G^{-1} are computed once.

1. Sandwich. If X has full column rank, sigma_min(X) s_(k) <= sigma_k(X D) <= sigma_max(X) s_(k)
   (s_(k): k-th largest). With kappa = sigma_max / sigma_min, a coordinate with
   s_k / s_max > rtol kappa is certainly counted and one with s_k / s_max <= rtol / kappa certainly
   not. A run with no coordinate in between is done (most runs, most evaluations).
2. Otherwise the count is an inertia. For t > 0 and s > 0 (congruence by D, Sylvester's law):
       #{k : sigma_k(X D) > t} = #{positive eigenvalues of G - t^2 D^-2}.
   Split the coordinates into L = {s_j >= GAMMA t / sigma_min} (there G_LL - t^2 D_L^-2 is
   positive definite), B = {s_j <= t / (BIG sigma_max)} and the rest A (constants and the
   compiled per-run computation: ``metrics/_diag_rank_kernel.py``). Eliminating L exactly
   (Haynsworth's inertia additivity) and dropping the columns B (Weyl: they move every
   sigma_k^2 by at most ||X_B D_B||^2 <= t^2 / BIG^2) leaves
       count = |L| + #{mu > 1},  mu = eigenvalues of D_A S D_A / t^2,
       S = G_AA - G_AL (G_LL - t^2 D_L^-2)^{-1} G_LA   (|A| x |A|, well conditioned).
   The dropped columns and the uncertainty of t (step 3) can only lower the effective threshold
   by a relative amount delta; the count is certified when no mu lies in (1 - delta - slack, 1 +
   slack], slack covering rounding. Uncertified runs get the dense SVD of R D (X = QR, d x d).
   When |B| < |L| the same computation runs on the inverse problem: the singular values of
   (X D)^+ are 1 / sigma_k, its Gram is D^-1 H D^-1, so the roles of L and B swap and the
   eliminated block is always the smaller side (cost min(|L|, |B|)^3 / 3, not d^3).
3. Threshold t = rtol sigma_1(X D): sigma_1^2 = lambda_max(D_T G_TT D_T) over T = {s_j > theta},
   up to sigma_max^2 theta^2 from the coordinates left out (Weyl again); a coarse theta first,
   a fine one only when the coarse bracket leaves the count uncertain.

Accuracy: a certified count is the rank of X D in exact arithmetic for the float64 inputs, up to
the rounding bounds built into ``slack`` (a singular value within ~1e-8 relative of the threshold
is never certified: the dense SVD decides it). A float64 SVD of phi (the authors' computation) has absolute errors ~ eps sigma_1, i.e. about 10%
of the threshold at the authors' rtol = 1e-15, so it can differ from the exact count by a
singular value lying within that noise of the threshold. tests/test_diag_rank.py compares with
the SVD of phi where that SVD is unambiguous and with LAPACK's high-relative-accuracy Jacobi SVD
(dgejsv) of X D everywhere, including singular values within 1e-3 of the threshold.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve

from sgdlab.core._jit import call_kernel

EPS = float(np.finfo(np.float64).eps)
# Rounding slack (relative) per unit of N eps kappa^2: Gram entries carry N eps relative error and
# eigenvalues / Schur complements of G amplify it by at most kappa(G) = kappa^2.
FP_SAFETY = 16.0


class DiagJacobianRank:
    """rank phi for runs (R, d) of u, v on fixed inputs x (N, d), relative threshold rtol.

    ``n_reduced`` counts run-evaluations that needed step 2 (``n_inverse`` of them on the inverse
    problem) and ``n_svd`` those decided by the dense SVD (for tests and benchmarks).
    """

    def __init__(self, x: torch.Tensor, rtol: float):
        self.rtol = float(rtol)
        xn = x.detach().to("cpu", torch.float64).numpy()
        n, d = xn.shape
        sv = np.linalg.svd(xn, compute_uv=False)
        self.full_rank = bool(n >= d and sv[-1] > sv[0] * d * EPS)
        self.sig_min, self.sig_max = float(sv[-1]), float(sv[0])
        self.kappa = self.sig_max / self.sig_min if self.full_rank else float("inf")
        if self.full_rank:
            self.G = xn.T @ xn
            H = cho_solve(cho_factor(self.G), np.eye(d))
            self.H = (H + H.T) / 2
            self.slack = FP_SAFETY * n * EPS * self.kappa**2
        # X = Q R: X D and R D (d x d) have the same singular values (the dense fallback).
        self.r = np.linalg.qr(xn, mode="r") if n >= d else xn
        self.n_reduced = self.n_inverse = self.n_svd = 0

    def __call__(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        un = u.detach().to("cpu", torch.float64).numpy()
        vn = v.detach().to("cpu", torch.float64).numpy()
        s = np.sqrt(un * un + vn * vn)
        out = np.full(s.shape[0], np.nan)
        smax = s.max(-1) if s.shape[1] else np.zeros(s.shape[0])
        ok = np.isfinite(smax) & (smax > 0)
        out[smax == 0] = 0.0
        if ok.any():
            rho = s[ok] / smax[ok, None]
            if self.full_rank:
                sure = (rho > self.rtol * self.kappa).sum(-1).astype(np.float64)
                band = ((rho > self.rtol / self.kappa) & (rho <= self.rtol * self.kappa)).any(-1)
                if band.any():
                    sure[band] = self._reduced(rho[band])
                out[ok] = sure
            else:  # no sandwich without full column rank: one batched SVD of X D over runs
                out[ok] = self._dense(rho)
        return torch.as_tensor(out, dtype=u.dtype, device=u.device)

    def _reduced(self, rho: np.ndarray) -> np.ndarray:
        """Step 2 for runs rho (k, d) (rho = s / s_max, full-rank X), compiled; the dense SVD of
        R diag(rho) for those it cannot certify."""
        from sgdlab.studies.diag_net._rank_kernel import reduced_counts

        self.n_reduced += len(rho)
        count = np.empty(len(rho), dtype=np.int64)
        inverse = np.zeros(len(rho), dtype=np.bool_)
        call_kernel(reduced_counts, self.G, self.H, self.sig_min, self.sig_max, self.rtol, self.slack,
                    np.ascontiguousarray(rho), count, inverse)
        self.n_inverse += int(inverse.sum())
        out = count.astype(np.float64)
        dense = count < 0
        if dense.any():
            out[dense] = self._dense(rho[dense])
        return out

    def _dense(self, rho: np.ndarray) -> np.ndarray:
        """rank of R diag(rho) for runs rho (k, d) by one batched SVD (same singular values as X D)."""
        self.n_svd += len(rho)
        sv = np.linalg.svd(self.r[None] * rho[:, None, :], compute_uv=False)
        return (sv > self.rtol * sv[:, :1]).sum(-1)


def diag_jacobian_rank_svd(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, rtol: float) -> torch.Tensor:
    """Reference: rank of phi = [X diag(v), X diag(u)] by a full SVD per run (as the authors)."""
    out = []
    for r in range(u.shape[0]):
        phi = torch.cat([x * v[r], x * u[r]], dim=1)
        sv = torch.linalg.svdvals(phi)
        out.append(float((sv / sv[0] > rtol).sum()) if sv[0] > 0 else 0.0)
    return torch.tensor(out, dtype=u.dtype)
