"""Step 2 of ``metrics.diag_rank`` (the inertia count) for many runs, compiled by numba.

The same computation as described there, per run: bracket t = rtol sigma_1 from the top
coordinates, eliminate the smaller exact side (Cholesky), count the eigenvalues of the small
matrix over the coordinates near the threshold, certify. Compiled because per run it is a few
small LAPACK calls whose Python overhead was half of its cost.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sgdlab.core._jit import ensure_cache_dir

ensure_cache_dir(__file__)

# Margin of the exactly eliminated block: G_LL - t^2 D_L^-2 >= (1 - 1/GAMMA^2) sigma_min^2 I.
GAMMA = 2.0
# Dropped columns move sigma_k^2 by <= t^2 / BIG^2: a relative window of 1e-8 around the threshold.
BIG = 1e4
# sigma_1 from the coordinates with s_j / s_max > theta, relative error <= kappa^2 theta^2: first
# from few coordinates (1e-2: 3e-3 for kappa ~ 6, enough unless a singular value is that close to
# the threshold), then, only if that leaves the count uncertain, from all but ~1e-15 of it.
THETAS = (1e-2, 1e-8)


@njit(cache=True, nogil=True, error_model="numpy")
def _threshold(G, rho, theta, rtol, sig_max, slack):
    """(t_lo, t_hi, exact): sigma_1^2 in [lam, lam + (sig_max rest)^2] from rho_j > theta."""
    d = rho.size
    idx = np.nonzero(rho > theta)[0]
    rest = 0.0
    for j in range(d):
        if rho[j] <= theta and rho[j] > rest:
            rest = rho[j]
    k = idx.size
    M = np.empty((k, k))
    for a in range(k):
        for b in range(k):
            M[a, b] = G[idx[a], idx[b]] * rho[idx[a]] * rho[idx[b]]
    lam = np.linalg.eigvalsh(M)[-1]
    t_lo = rtol * np.sqrt(lam) * (1 - slack)
    t_hi = rtol * np.sqrt(lam + (sig_max * rest) ** 2) * (1 + slack)
    return t_lo, t_hi, rest <= THETAS[-1]


@njit(cache=True, nogil=True, error_model="numpy")
def _count(G, sig_min, sig_max, r, ratio_sq, slack):
    """(#{k : sigma_k(Y diag r) > 1}, certified) for any Y with Gram G, singular values in
    [sig_min, sig_max]; the true threshold may be lower by the factor sqrt(ratio_sq)."""
    d = r.size
    is_l = r >= GAMMA / sig_min
    is_b = r * sig_max * BIG <= 1
    iL = np.nonzero(is_l)[0]
    iA = np.nonzero(~(is_l | is_b))[0]
    nl, na = iL.size, iA.size
    if na == 0:
        return nl, True
    beta_sq = 0.0
    for j in range(d):
        if is_b[j]:
            beta_sq = max(beta_sq, (sig_max * r[j]) ** 2)
    delta = 1 - ratio_sq + beta_sq  # relative lowering of the squared threshold
    S = np.empty((na, na))
    for a in range(na):
        for b in range(na):
            S[a, b] = G[iA[a], iA[b]]
    c_max = 0.0
    if nl:
        M = np.empty((nl, nl))
        W = np.empty((nl, na))
        for a in range(nl):
            for b in range(nl):
                M[a, b] = G[iL[a], iL[b]]
            c = 1.0 / r[iL[a]] ** 2
            c_max = max(c_max, c)
            M[a, a] -= c
            for b in range(na):
                W[a, b] = G[iL[a], iA[b]]
        C = np.linalg.cholesky(M)  # M = C C^T, C lower
        Z = W.copy()  # Z = C^-1 W by forward substitution; then S -= Z^T Z
        for b in range(na):
            for a in range(nl):
                s = Z[a, b]
                for k in range(a):
                    s -= C[a, k] * Z[k, b]
                Z[a, b] = s / C[a, a]
        S -= np.ascontiguousarray(Z.T) @ Z
    rmax = 0.0
    for a in range(na):
        ra = r[iA[a]]
        rmax = max(rmax, ra)
        for b in range(na):
            S[a, b] *= ra * r[iA[b]]
    mu = np.linalg.eigvalsh(S)
    # A lower threshold also enlarges S through the L block: by <= ||G||^2 delta c_max / m^2.
    m = sig_min**2 - c_max
    shift = sig_max**4 * delta * c_max / m**2 * rmax**2
    lo = 1 - delta - shift - slack
    count = nl
    certified = True
    for x in mu:
        count += x > 1
        if x > lo and x <= 1 + slack:
            certified = False
    return count, certified


@njit(cache=True, nogil=True, error_model="numpy")
def reduced_counts(G, H, sig_min, sig_max, rtol, slack, rho, out, inverse):
    """For every row i of rho (R, d): out[i] = the certified count, or -1 where the dense SVD must
    decide; inverse[i] = whether the inverse problem was used."""
    for i in range(rho.shape[0]):
        p = rho[i]
        out[i] = -1
        for theta in THETAS:
            t_lo, t_hi, exact = _threshold(G, p, theta, rtol, sig_max, slack)
            n_l = 0
            n_b = 0
            for j in range(p.size):
                n_l += p[j] * sig_min >= GAMMA * t_hi
                n_b += p[j] * sig_max * GAMMA <= t_lo
            if n_l <= n_b:
                count, ok = _count(G, sig_min, sig_max, p / t_hi, (t_lo / t_hi) ** 2, slack)
            else:  # inverse problem: scales t_lo / rho (zeros -> inf: eliminated exactly, c = 0)
                count, ok = _count(H, 1 / sig_max, 1 / sig_min, t_lo / p, (t_lo / t_hi) ** 2, slack)
                count = p.size - count
            if ok:
                out[i] = count
                inverse[i] = n_l > n_b
                break
            if exact:
                break
