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
   positive definite), B = {s_j <= t / (BIG sigma_max)} and the rest A. Eliminating L exactly
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

Accuracy: the certified count equals the rank of X D in exact arithmetic for the float64 inputs.
A float64 SVD of phi (the authors' computation) has absolute errors ~ eps sigma_1, i.e. about 10%
of the threshold at the authors' rtol = 1e-15, so it can differ from the exact count by a
singular value lying within that noise of the threshold. tests/test_diag_rank.py compares with
the SVD of phi where that SVD is unambiguous and with LAPACK's high-relative-accuracy Jacobi SVD
(dgejsv) of X D everywhere, including singular values within 1e-3 of the threshold.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.linalg import eigvalsh
from scipy.linalg import cho_factor, cho_solve

EPS = float(np.finfo(np.float64).eps)
# Margin of the exactly eliminated block: G_LL - t^2 D_L^-2 >= (1 - 1/GAMMA^2) sigma_min^2 I.
GAMMA = 2.0
# Dropped columns move sigma_k^2 by <= t^2 / BIG^2: a relative window of 1e-8 around the threshold.
BIG = 1e4
# sigma_1 from the coordinates with s_j / s_max > theta, relative error <= kappa^2 theta^2: first
# from few coordinates (1e-2: 3e-3 for kappa ~ 6, enough unless a singular value is that close to
# the threshold), then, only if that leaves the count uncertain, from all but ~1e-15 of it.
THETAS = (1e-2, 1e-8)
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
                for i in np.nonzero(band)[0]:
                    sure[i] = self._reduced(rho[i])
                out[ok] = sure
            else:  # no sandwich without full column rank: one batched SVD of X D over runs
                self.n_svd += len(rho)
                sv = np.linalg.svd(self.r[None] * rho[:, None, :], compute_uv=False)
                out[ok] = (sv > self.rtol * sv[:, :1]).sum(-1)
        return torch.as_tensor(out, dtype=u.dtype, device=u.device)

    def _dense(self, rho: np.ndarray) -> float:
        self.n_svd += 1
        sv = np.linalg.svd(self.r * rho, compute_uv=False)
        return float((sv > self.rtol * sv[0]).sum())

    def _reduced(self, rho: np.ndarray) -> float:
        """Step 2 for one run (rho = s / s_max, full-rank X); the dense SVD if not certified."""
        self.n_reduced += 1
        for theta in THETAS:
            t_lo, t_hi, exact = self._threshold(rho, theta)
            n_l = int((rho * self.sig_min >= GAMMA * t_hi).sum())
            n_b = int((rho * self.sig_max * GAMMA <= t_lo).sum())
            if n_l <= n_b:
                count, ok = self._count(self.G, self.sig_min, self.sig_max, rho / t_hi, (t_lo / t_hi) ** 2)
            else:  # inverse problem: scales t_lo / rho (zeros -> inf: eliminated exactly, c = 0)
                with np.errstate(divide="ignore"):
                    w = t_lo / rho
                count, ok = self._count(self.H, 1 / self.sig_max, 1 / self.sig_min, w, (t_lo / t_hi) ** 2)
                count = rho.size - count
            if ok:
                self.n_inverse += n_l > n_b
                return float(count)
            if exact:
                break
        return self._dense(rho)

    def _threshold(self, rho: np.ndarray, theta: float) -> tuple[float, float, bool]:
        """Bracket [t_lo, t_hi] of t = rtol sigma_1(X diag rho) from the coordinates rho_j > theta:
        sigma_1^2 in [lam, lam + sigma_max^2 rest^2], rest = largest rho_j left out (Weyl); the
        flag says whether a smaller theta could not tighten it (rest <= THETAS[-1])."""
        top = rho > theta
        rest = float(rho[~top].max()) if not top.all() else 0.0
        lam = eigvalsh(self.G[np.ix_(top, top)] * rho[top, None] * rho[None, top])[-1]
        t_lo = self.rtol * np.sqrt(lam) * (1 - self.slack)
        t_hi = self.rtol * np.sqrt(lam + (self.sig_max * rest) ** 2) * (1 + self.slack)
        return t_lo, t_hi, rest <= THETAS[-1]

    def _count(self, G, sig_min, sig_max, r, ratio_sq) -> tuple[int, bool]:
        """(#{k : sigma_k(Y diag r) > 1}, certified) for any Y with Gram G whose singular values
        lie in [sig_min, sig_max]; the true threshold may be lower by the factor sqrt(ratio_sq)."""
        L = r >= GAMMA / sig_min
        B = r * sig_max * BIG <= 1
        iL, iA = np.nonzero(L)[0], np.nonzero(~(L | B))[0]
        if iA.size == 0:
            return iL.size, True
        beta_sq = (sig_max * r[B].max()) ** 2 if B.any() else 0.0
        delta = 1 - ratio_sq + beta_sq  # relative lowering of the squared threshold
        S = G[np.ix_(iA, iA)]
        c_max = 0.0
        if iL.size:
            with np.errstate(divide="ignore"):
                c = 1.0 / r[iL] ** 2
            c_max = float(c.max())
            M = G[np.ix_(iL, iL)] - np.diag(c)
            GLA = G[np.ix_(iL, iA)]
            S = S - GLA.T @ cho_solve(cho_factor(M, check_finite=False), GLA, check_finite=False)
        rA = r[iA]
        mu = eigvalsh(rA[:, None] * S * rA[None, :])
        # A lower threshold also enlarges S through the L block: by <= ||G||^2 delta c_max / m^2.
        m = sig_min**2 - c_max
        shift = sig_max**4 * delta * c_max / m**2 * float(rA.max()) ** 2
        lo = 1 - delta - shift - self.slack
        certified = not ((mu > lo) & (mu <= 1 + self.slack)).any()
        return iL.size + int((mu > 1).sum()), certified


def diag_jacobian_rank_svd(u: torch.Tensor, v: torch.Tensor, x: torch.Tensor, rtol: float) -> torch.Tensor:
    """Reference: rank of phi = [X diag(v), X diag(u)] by a full SVD per run (as the authors)."""
    out = []
    for r in range(u.shape[0]):
        phi = torch.cat([x * v[r], x * u[r]], dim=1)
        sv = torch.linalg.svdvals(phi)
        out.append(float((sv / sv[0] > rtol).sum()) if sv[0] > 0 else 0.0)
    return torch.tensor(out, dtype=u.dtype)
