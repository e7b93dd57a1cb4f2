"""Fused mini-batch SGD/GD and constant-noise SDE steps of the diagonal linear network (numba).

A 100k-step batch-1 run is ~10 small tensor ops per step; in eager torch their dispatch overhead
dominates whatever the number of runs, in this loop a run-step costs a few arithmetic operations
(``benchmarks/diag_net.py`` measures it).
Same update law as ``DiagonalNet.loss_and_grad``, summed in another order: it agrees to
rounding per step, not bit for bit (tests/test_diag_kernel_agreement.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from sgdlab.core._jit import ensure_cache_dir

ensure_cache_dir(__file__)

# SDE kernel: plain loops up to this n*d (small problems: BLAS call overhead dominates), BLAS above.
SDE_LOOP_MAX = 4096


@njit(cache=True, nogil=True)
def diag_sgd_chunk(u, v, X, y, idx, full, lr, t0, diverged, max_loss):
    """Advance every live run by ``lr.shape[1]`` steps, in place.

    u, v: (R, d) parameters; X: (n, d), y: (n,) training data; idx: (R, T, b) batch
    indices (ignored when ``full``: the batch is all n examples, i.e. GD); lr: (R, T)
    step sizes; diverged: (R,) step of divergence or -1 (updated); max_loss: (R,).
    Step: r_i = <x_i, u*v> - y_i, L_B = (1/2b) sum r_i^2, g = (1/b) sum r_i x_i,
    u <- u - lr g*v, v <- v - lr g*u (both from the old u, v). A run whose L_B is
    non-finite or exceeds max_loss is frozen before that step and marked diverged.
    """
    R, d = u.shape
    T = lr.shape[1]
    if full:
        _diag_gd_chunk(u, v, X, y, lr, t0, diverged, max_loss)
        return
    b = idx.shape[2]
    if b == 1:
        _diag_sgd1_chunk(u, v, X, y, idx, lr, t0, diverged, max_loss)
        return
    g = np.empty(d)
    res = np.empty(b)
    for r in range(R):
        if diverged[r] >= 0:
            continue
        for t in range(T):
            loss = 0.0
            for k in range(b):
                i = k if full else idx[r, t, k]
                s = 0.0
                for j in range(d):
                    s += X[i, j] * (u[r, j] * v[r, j])
                res[k] = s - y[i]
                loss += res[k] * res[k]
            loss = 0.5 * loss / b
            if not (loss <= max_loss[r]):  # also true for NaN
                diverged[r] = t0 + t
                break
            for j in range(d):
                g[j] = 0.0
            for k in range(b):
                i = k if full else idx[r, t, k]
                c = res[k] / b
                for j in range(d):
                    g[j] += c * X[i, j]
            step = lr[r, t]
            for j in range(d):
                uj = u[r, j]
                u[r, j] = uj - step * (g[j] * v[r, j])
                v[r, j] = v[r, j] - step * (g[j] * uj)


@njit(cache=True, nogil=True)
def _diag_gd_chunk(u, v, X, y, lr, t0, diverged, max_loss):
    """Full-batch steps with two BLAS matrix-vector products per step (X beta and X^T r):
    O(nd) work per step, far faster than a per-example loop at these sizes."""
    R, d = u.shape
    T = lr.shape[1]
    n = X.shape[0]
    XT = np.ascontiguousarray(X.T)
    for r in range(R):
        if diverged[r] >= 0:
            continue
        ur = u[r]
        vr = v[r]
        for t in range(T):
            res = np.dot(X, ur * vr) - y
            loss = 0.5 * np.dot(res, res) / n
            if not (loss <= max_loss[r]):
                diverged[r] = t0 + t
                break
            g = np.dot(XT, res) / n
            step = lr[r, t]
            uo = ur.copy()
            for j in range(d):
                ur[j] = uo[j] - step * (g[j] * vr[j])
                vr[j] = vr[j] - step * (g[j] * uo[j])


# No reassociation here: the dot product at a chunk's start and the one fused into the
# update must round identically, so that chunking (and resuming) never changes a run.
@njit(cache=True, nogil=True)
def _diag_sgd1_chunk(u, v, X, y, idx, lr, t0, diverged, max_loss):
    """Batch-1 SGD with one pass over the coordinates per step: while updating u, v for
    example i_t it accumulates <x_{i_{t+1}}, u*v> for the next step (same arithmetic)."""
    R, d = u.shape
    T = lr.shape[1]
    for r in range(R):
        if diverged[r] >= 0:
            continue
        i = idx[r, 0, 0]
        s = 0.0
        for j in range(d):
            s += X[i, j] * (u[r, j] * v[r, j])
        for t in range(T):
            res = s - y[i]
            loss = 0.5 * res * res
            if not (loss <= max_loss[r]):  # also true for NaN
                diverged[r] = t0 + t
                break
            c = lr[r, t] * res
            nxt = idx[r, t + 1, 0] if t + 1 < T else i
            s = 0.0
            for j in range(d):
                xj = X[i, j]
                uj = u[r, j]
                vj = v[r, j]
                un = uj - c * (xj * vj)
                vn = vj - c * (xj * uj)
                u[r, j] = un
                v[r, j] = vn
                s += X[nxt, j] * (un * vn)
            i = nxt


@njit(cache=True, nogil=True)
def diag_sde_chunk(u, v, X, y, noise, noff, scale, lr, t0, diverged, max_loss):
    """Euler-Maruyama steps of the constant-noise SDE (``optim.sde``), full batch, in place.

    noise: (R, L, n) standard normal draws, those of step t0 + t at [:, noff + t] (L = 0 allowed
    when every scale is 0; a whole block keeps one compiled layout); scale: (T,) sqrt(delta) per
    step (0 once the noise is switched off); other arguments as ``diag_sgd_chunk``. Step:
    r = X(u*v) - y, L = |r|^2 / (2n), divergence check on L; c = r / n + scale_t xi_t;
    g = X^T c; u <- u - lr g*v, v <- v - lr g*u (old u, v): the torch path's VJP with the
    cotangent c. Up to n d = SDE_LOOP_MAX both products are loops whose inner index runs over
    independent outputs (SIMD without reassociation) into preallocated buffers: no BLAS call or
    allocation per step, which at small n, d costs more than the arithmetic; above, BLAS.
    """
    R, d = u.shape
    T = lr.shape[1]
    n = X.shape[0]
    XT = np.ascontiguousarray(X.T)
    beta = np.empty(d)
    res = np.empty(n)
    c = np.empty(n)
    g = np.empty(d)
    loops = n * d <= SDE_LOOP_MAX
    for r in range(R):
        if diverged[r] >= 0:
            continue
        ur = u[r]
        vr = v[r]
        for t in range(T):
            for j in range(d):
                beta[j] = ur[j] * vr[j]
            if loops:
                for i in range(n):
                    res[i] = 0.0
                for j in range(d):
                    bj = beta[j]
                    for i in range(n):
                        res[i] += XT[j, i] * bj
            else:
                res[:] = np.dot(X, beta)
            loss = 0.0
            for i in range(n):
                res[i] -= y[i]
                loss += res[i] * res[i]
            loss = 0.5 * loss / n
            if not (loss <= max_loss[r]):
                diverged[r] = t0 + t
                break
            sc = scale[t]
            for i in range(n):
                c[i] = res[i] / n
            if sc != 0.0:
                for i in range(n):
                    c[i] += sc * noise[r, noff + t, i]
            if loops:
                for j in range(d):
                    g[j] = 0.0
                for i in range(n):
                    ci = c[i]
                    for j in range(d):
                        g[j] += X[i, j] * ci
            else:
                g[:] = np.dot(XT, c)
            step = lr[r, t]
            for j in range(d):
                uj = ur[j]
                ur[j] = uj - step * (g[j] * vr[j])
                vr[j] = vr[j] - step * (g[j] * uj)


@njit(cache=True, nogil=True)
def half_mse_rows(BT, X, y, out):
    """out[r] = ||X beta_r - y||^2 / (2n), beta_r = BT[:, r]; BT (d, R), X (n, d), y (n,), out (R,).

    The loss metrics of every run. A BLAS product over the runs (``beta @ X.T``) gives a run other
    last bits depending on how many runs share it on some CPUs (the rows of a partial tile take
    other code); here every run's sums are taken in one order, over j then over i, whatever R is
    and wherever the run sits, so a sharded run's losses are those of one process. The innermost
    loops run over independent runs (SIMD without reassociation), four examples at a time (each
    load of beta serves four residuals; the grouping does not change any run's sums)."""
    d, R = BT.shape
    n = X.shape[0]
    a0, a1, a2, a3 = np.empty(R), np.empty(R), np.empty(R), np.empty(R)
    out[:] = 0.0
    i = 0
    while i + 4 <= n:
        a0[:] = 0.0
        a1[:] = 0.0
        a2[:] = 0.0
        a3[:] = 0.0
        for j in range(d):
            x0, x1, x2, x3 = X[i, j], X[i + 1, j], X[i + 2, j], X[i + 3, j]
            b = BT[j]
            for r in range(R):
                br = b[r]
                a0[r] += x0 * br
                a1[r] += x1 * br
                a2[r] += x2 * br
                a3[r] += x3 * br
        _add_squares(out, a0, y[i])
        _add_squares(out, a1, y[i + 1])
        _add_squares(out, a2, y[i + 2])
        _add_squares(out, a3, y[i + 3])
        i += 4
    while i < n:  # the last n mod 4 examples, one at a time: the same sums
        a0[:] = 0.0
        for j in range(d):
            x0 = X[i, j]
            b = BT[j]
            for r in range(R):
                a0[r] += x0 * b[r]
        _add_squares(out, a0, y[i])
        i += 1
    for r in range(R):
        out[r] = 0.5 * out[r] / n


@njit(cache=True, nogil=True, inline="always")
def _add_squares(out, pred, yi):
    """out += (pred - yi)^2, elementwise over runs."""
    for r in range(out.shape[0]):
        e = pred[r] - yi
        out[r] += e * e
