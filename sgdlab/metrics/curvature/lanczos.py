"""Extreme eigenpairs of a symmetric operator by Lanczos with full reorthogonalization.

Krylov basis Q (m, p) kept in float64 and orthonormal to working precision at every step: the
couplings of the new product H q_j already known by symmetry are subtracted first (the three-term
recurrence: beta_{j-1} q_{j-1}, after a restart the arrow row beta s_m of the kept Ritz vectors),
then alpha_j q_j, then one classical Gram-Schmidt pass against the whole basis, repeated only when
it removed more than 1 - 1/sqrt(2) of the norm (the DGKS criterion; "twice is enough"). This
reads the basis about twice per step instead of four times for unconditional CGS2, which matters
when a product is cheap and p is large. The projected matrix G = Q H Q^T (m, m) is stored
densely, so after a thick restart (keep the best Ritz vectors Y, continue from the last residual)
the relation

    H Q^T = Q^T G + r e_m^T,      r = beta q_{m+1},  q_{m+1} orthogonal to Q

still holds and the residual of a Ritz pair (theta, y = Q^T s) is ||H y - theta y|| = beta |s_m|
(the *Lanczos estimate*). Stopping rule, for each of the k wanted pairs:

    ||H y_i - theta_i y_i|| <= max(tol |theta_i|, atol)

first on the estimate, then *verified* with k explicit products (counted in ``n_hvp``). For a
symmetric H this bounds the eigenvalue error: |theta_i - lambda| <= ||r_i|| for some eigenvalue
lambda (and <= ||r_i||^2 / gap once converged). The basis grows up to ``max_basis`` vectors, then
restarts keeping about half of it, until ``max_hvp`` products are spent.

Warm start: ``v0`` may be a block (p, j) of previous eigenvectors; Lanczos starts from the unit
vector along the sum of their orthonormalized columns. If they span an (almost) invariant
subspace this converges in about j steps; if the start lies exactly in an invariant subspace
before k pairs converge, Lanczos continues from a random orthogonal vector (no silent stall).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.metrics.curvature._common import (
    check_operator,
    check_positive_float,
    check_positive_int,
    make_generator,
    randn,
)
from sgdlab.metrics.curvature.hvp import BNMode, HessianOperator, HVPMethod, LossFn

__all__ = [
    "DEFAULT_MAX_HVP",
    "DEFAULT_TOL",
    "EigResult",
    "hessian_eigs",
    "lanczos",
    "lanczos_quadrature",
    "sharpness",
]

Which = Literal["LA", "SA", "BE", "LM"]
_WHICH = ("LA", "SA", "BE", "LM")
DEFAULT_TOL = 1e-4
# A cap that a healthy run never meets (sharpness converges in tens of products) but that
# bounds a pathological one (clustered top eigenvalues) to minutes, not hours.
DEFAULT_MAX_HVP = 1000
# Basis size: enough room for k wanted pairs plus the unwanted ones converging next to them.
_MIN_BASIS = 30
_BASIS_EXTRA = 10
# w kept less than this fraction of its norm after orthogonalization: numerically invariant.
_BREAKDOWN_RTOL = 1e-10
# DGKS: a Gram-Schmidt pass that keeps at least this fraction of the norm leaves the vector
# orthogonal to working precision; below it, one more pass (Daniel, Gragg, Kaufman, Stewart 1976).
_DGKS_ETA = 1.0 / math.sqrt(2.0)
# Relative accuracy of a near-zero eigenvalue is out of reach: below this fraction of the
# largest |Ritz value| the tolerance becomes absolute (atol default = tol * this * |theta|_max).
_NEAR_ZERO_REL = 1e-3
# After a failed verification (rounding floor of a float32 operator), take this many more
# steps before spending k products on verifying again.
_REVERIFY_GAP = 5


@dataclass(frozen=True)
class EigResult:
    """Ritz pairs from :func:`lanczos`.

    eigenvalues: (k,) float64, ordered from the wanted end (LA, BE: descending; SA: ascending;
        LM: by decreasing |lambda|).
    eigenvectors: (p, k) float64 unit columns, or None exactly when return_eigenvectors=False.
    residual_norms: (k,) verified ||H v - lambda v||.
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor | None
    residual_norms: torch.Tensor
    n_hvp: int
    converged: bool
    which: str
    tol: float
    n_restarts: int
    loss_reduction: str

    @property
    def top(self) -> float:
        """The first (most wanted) eigenvalue, e.g. the sharpness for which='LA'."""
        return float(self.eigenvalues[0])


class _Krylov:
    """Orthonormal float64 basis with its Rayleigh-quotient matrix G (see module doc)."""

    def __init__(self, op, max_basis: int):
        self.op = op
        # Rows are written before they are read (push/step/restart), so no zero fill.
        self.Q = torch.empty(max_basis + 1, op.dim, dtype=torch.float64, device=op.device)
        self.G = np.zeros((max_basis, max_basis))
        self.max_basis = max_basis
        self.m = 0  # processed vectors: Q[:m] with known H-images in G
        self.pending = False  # Q[m] holds the next unit vector to process
        self.beta = 0.0
        # q_m^T H q_i for i < m, known when q_m was formed (module doc); zeros after push().
        self.coupling = np.zeros(0)
        self.n_hvp = 0

    def _orthogonalize(self, w: torch.Tensor, nrm: float, upto: int, coef: np.ndarray) -> float:
        """Gram-Schmidt passes on w (in place; ||w|| = nrm on entry) against Q[:upto] until DGKS
        holds (at most two); adds the coefficients into coef and returns the final ||w||."""
        basis = self.Q[:upto]
        for _ in range(2 if upto else 0):
            c = basis @ w
            w.addmv_(basis.T, c, alpha=-1.0)  # in place: every p-vector pass is memory traffic
            coef += c.cpu().numpy()
            before, nrm = nrm, float(torch.linalg.vector_norm(w))
            if nrm >= _DGKS_ETA * before:
                break
        return nrm

    def push(self, v: torch.Tensor) -> bool:
        """Orthogonalize v against the basis and queue it; False if v lies in the span."""
        v = v.to(self.op.device, torch.float64, copy=True)
        nrm0 = float(torch.linalg.vector_norm(v))
        nrm = self._orthogonalize(v, nrm0, self.m, np.zeros(self.m))
        if not math.isfinite(nrm) or nrm <= _BREAKDOWN_RTOL * nrm0:
            return False
        torch.div(v, nrm, out=self.Q[self.m])
        self.coupling = np.zeros(self.m)
        self.pending = True
        return True

    def step(self) -> None:
        j = self.m
        q = self.Q[j]
        # A private float64 copy: updated in place below, never the operator's own tensor.
        w = self.op.matvec(q.to(self.op.dtype)).to(torch.float64, copy=True)
        self.n_hvp += 1
        hq = float(torch.linalg.vector_norm(w))
        if not math.isfinite(hq):
            raise FloatingPointError("the operator returned a non-finite H v (NaN/inf loss or parameters?)")
        # The recurrence in one pass: alpha q_j plus the couplings known by symmetry (beta q_{j-1},
        # or the restart arrow); q_j is orthogonal to the others, so alpha needs no prior subtraction.
        coef = np.zeros(j + 1)
        coef[j] = float(torch.dot(q, w))
        nz = np.flatnonzero(self.coupling)
        lo = int(nz[0]) if len(nz) else j
        coef[lo:j] = self.coupling[lo:j]
        w.addmv_(self.Q[lo:j + 1].T, torch.from_numpy(coef[lo:j + 1]).to(w.device), alpha=-1.0)
        beta = self._orthogonalize(w, float(torch.linalg.vector_norm(w)), j + 1, coef)
        self.G[: j + 1, j] = coef
        self.G[j, : j + 1] = coef
        self.m = j + 1
        if beta > _BREAKDOWN_RTOL * hq and self.m <= self.max_basis:
            torch.div(w, beta, out=self.Q[self.m])
            self.beta, self.pending = beta, True
            self.coupling = np.zeros(self.m)
            self.coupling[j] = beta
        else:  # invariant subspace: the relation holds with r = 0
            self.beta, self.pending = 0.0, False

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(theta (m,), S (m, m), Lanczos residual estimates (m,))."""
        g = self.G[: self.m, : self.m]
        theta, s = np.linalg.eigh((g + g.T) / 2)
        return theta, s, self.beta * np.abs(s[-1])

    def vectors(self, s_cols: np.ndarray) -> torch.Tensor:
        """Ritz vectors Q^T S, (p, l)."""
        s = torch.from_numpy(np.ascontiguousarray(s_cols)).to(self.Q.device)
        return self.Q[: self.m].T @ s

    def restart(self, s_keep: np.ndarray, theta_keep: np.ndarray) -> None:
        keep = s_keep.shape[1]
        y = self.vectors(s_keep).T.contiguous()
        pending = self.Q[self.m].clone()
        self.Q[:keep] = y
        self.Q[keep] = pending
        self.G[:] = 0.0
        self.G[np.arange(keep), np.arange(keep)] = theta_keep
        self.coupling = self.beta * s_keep[-1]  # q_pending^T H y_i = beta s_{m,i}
        self.m = keep


def _wanted_order(theta: np.ndarray, which: str) -> np.ndarray:
    """Indices of theta from most to least wanted."""
    asc = np.argsort(theta, kind="stable")
    if which == "LA":
        return asc[::-1]
    if which == "SA":
        return asc
    if which == "LM":
        return np.argsort(-np.abs(theta), kind="stable")
    out, seen = [], set()
    for hi, lo in zip(asc[::-1], asc):  # BE: alternate ends, top first
        for i in (hi, lo):
            if i not in seen:
                seen.add(i)
                out.append(i)
    return np.asarray(out, dtype=int)


def _output_order(theta: np.ndarray, which: str) -> np.ndarray:
    if which in ("LA", "BE"):
        return np.argsort(-theta, kind="stable")
    if which == "SA":
        return np.argsort(theta, kind="stable")
    return np.argsort(-np.abs(theta), kind="stable")


def _start_vector(v0, p: int, gen: torch.Generator, device) -> torch.Tensor:
    if v0 is None:
        return randn(p, gen, torch.float64, device)
    if not isinstance(v0, torch.Tensor) or v0.ndim not in (1, 2) or v0.shape[0] != p:
        got = tuple(v0.shape) if isinstance(v0, torch.Tensor) else type(v0).__name__
        raise ConfigError(f"v0 must be a ({p},) vector or a ({p}, j) block of vectors, got {got}")
    block = v0.detach().to(device, torch.float64).reshape(p, -1)
    if not bool(torch.isfinite(block).all()) or float(block.norm()) == 0.0:
        raise ConfigError("v0 must be finite and non-zero")
    q, _ = torch.linalg.qr(block)
    return q.sum(dim=1)


def lanczos(op, k: int = 1, *, which: Which = "LA", tol: float = DEFAULT_TOL, atol: float | None = None,
            max_hvp: int = DEFAULT_MAX_HVP, max_basis: int | None = None, v0: torch.Tensor | None = None,
            generator: torch.Generator | None = None, seed: int = 0,
            return_eigenvectors: bool = True) -> EigResult:
    """k extreme eigenpairs of the symmetric operator ``op`` (module doc for the algorithm).

    which: "LA" largest algebraic (default), "SA" smallest algebraic, "BE" both ends
        (ceil(k/2) largest, floor(k/2) smallest), "LM" largest magnitude.
    tol, atol: stop when every wanted pair has ||H v - lambda v|| <= max(tol |lambda|, atol);
        atol defaults to tol * 1e-3 * max |Ritz value| (near-zero eigenvalues).
    max_hvp: products allowed for Lanczos steps and verifications; when they run out, the
        Ritz pairs are verified once more (k products) and, if still above tolerance, returned
        with converged=False and a RuntimeWarning.
    v0: start vector (p,) or warm-start block (p, j), e.g. a previous ``eigenvectors``.
    generator/seed: randomness for the start vector and breakdown restarts.
    """
    check_operator(op)
    p = op.dim
    check_positive_int("k", k)
    if k > p:
        raise ConfigError(f"k={k} exceeds the operator dimension p={p}")
    if which not in _WHICH:
        raise ConfigError(choices_message("which", which, _WHICH))
    tol = check_positive_float("tol", tol)
    if atol is not None:
        atol = check_positive_float("atol", atol, allow_zero=True)
    check_positive_int("max_hvp", max_hvp, minimum=2 * k + 1)
    if max_basis is None:
        max_basis = max(2 * k + _BASIS_EXTRA, _MIN_BASIS)
    check_positive_int("max_basis", max_basis, minimum=min(k + 1, p))
    max_basis = min(max_basis, p)
    gen = make_generator(generator, seed)

    kr = _Krylov(op, max_basis)
    if not kr.push(_start_vector(v0, p, gen, op.device)):
        raise ConfigError("v0 is numerically zero")
    restarts, verify_at = 0, 0
    found = None  # (theta_k, vectors, residuals) of a verified, converged set
    while kr.n_hvp + k < max_hvp:
        if kr.m == max_basis and kr.pending:
            theta, s, _ = kr.ritz()
            keep = _wanted_order(theta, which)[: min(kr.m - 1, k + (kr.m - k) // 2)]
            kr.restart(s[:, keep], theta[keep])
            restarts += 1
        kr.step()
        if kr.m >= k:
            theta, s, est = kr.ritz()
            want = _wanted_order(theta, which)[:k]
            floor = atol if atol is not None else tol * _NEAR_ZERO_REL * float(np.abs(theta).max())
            thresh = np.maximum(tol * np.abs(theta[want]), floor)
            if np.all(est[want] <= thresh) and kr.n_hvp >= verify_at:
                vecs, res = _verify(op, kr, s[:, want], theta[want])
                if np.all(res <= thresh):
                    found = (theta[want], vecs, res)
                    break
                verify_at = kr.n_hvp + max(k, _REVERIFY_GAP)
        if not kr.pending and (kr.m >= p or not kr.push(randn(p, gen, torch.float64, op.device))):
            break
    converged = found is not None
    if not converged:
        theta, s, _ = kr.ritz()
        want = _wanted_order(theta, which)[:k]
        if len(want) < k:
            raise ConfigError(f"max_hvp={max_hvp} ran out before {k} Ritz values existed; raise max_hvp")
        found = (theta[want], *_verify(op, kr, s[:, want], theta[want]))
        floor = atol if atol is not None else tol * _NEAR_ZERO_REL * float(np.abs(theta).max())
        converged = bool(np.all(found[2] <= np.maximum(tol * np.abs(found[0]), floor)))
    if not converged:
        rel = float(np.max(found[2] / np.maximum(np.abs(found[0]), np.finfo(np.float64).tiny)))
        warnings.warn(
            f"Lanczos did not reach tol={tol:g} within max_hvp={max_hvp} products (max relative "
            f"residual {rel:.2e}); raise max_hvp or max_basis, or loosen tol", RuntimeWarning, stacklevel=2)
    theta, vecs, res = found
    order = _output_order(theta, which)
    return EigResult(
        eigenvalues=torch.from_numpy(theta[order].copy()),
        eigenvectors=vecs[:, torch.from_numpy(order.copy()).to(vecs.device)] if return_eigenvectors else None,
        residual_norms=torch.from_numpy(res[order].copy()),
        n_hvp=kr.n_hvp,
        converged=converged,
        which=which,
        tol=tol,
        n_restarts=restarts,
        loss_reduction=op.loss_reduction,
    )


def _verify(op, kr: _Krylov, s_cols: np.ndarray, theta: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Ritz vectors (p, k) and their explicit residual norms ||H y - theta y|| (k products)."""
    vecs = kr.vectors(s_cols)
    vecs = vecs / torch.linalg.vector_norm(vecs, dim=0, keepdim=True)
    res = np.empty(len(theta))
    for i in range(len(theta)):
        hy = op.matvec(vecs[:, i].to(op.dtype)).to(torch.float64)
        kr.n_hvp += 1
        res[i] = float(torch.linalg.vector_norm(hy - theta[i] * vecs[:, i]))
    return vecs, res


def lanczos_quadrature(op, v: torch.Tensor, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature of the spectral measure of H seen from v, via n_steps Lanczos steps.

    Returns nodes theta_j and weights tau_j = s_{1j}^2 (sum 1), each (m,), m <= n_steps (fewer
    on breakdown, where the quadrature is exact). sum_j tau_j theta_j^i = v^T H^i v / ||v||^2
    exactly for i <= 2m - 1.
    """
    check_operator(op)
    check_positive_int("n_steps", n_steps)
    kr = _Krylov(op, min(n_steps, op.dim))
    if not kr.push(v):
        raise ConfigError("the start vector is numerically zero")
    while kr.pending and kr.m < kr.max_basis:
        kr.step()
    theta, s, _ = kr.ritz()
    return theta, s[0] ** 2


def hessian_eigs(model: torch.nn.Module, loss_fn: LossFn, data, k: int = 1, *, which: Which = "LA",
                 tol: float = DEFAULT_TOL, bn_mode: BNMode | None = None, dtype: torch.dtype | None = None,
                 chunk_size: int | None = None, method: HVPMethod = "auto", **lanczos_kw) -> EigResult:
    """k extreme Hessian eigenpairs of ``loss_fn`` on ``data`` (HessianOperator + lanczos)."""
    op = HessianOperator(model, loss_fn, data, bn_mode=bn_mode, dtype=dtype, chunk_size=chunk_size,
                         method=method)
    return lanczos(op, k, which=which, tol=tol, **lanczos_kw)


def sharpness(model: torch.nn.Module, loss_fn: LossFn, data, *, tol: float = DEFAULT_TOL,
              bn_mode: BNMode | None = None, dtype: torch.dtype | None = None,
              chunk_size: int | None = None, method: HVPMethod = "auto", **lanczos_kw) -> float:
    """lambda_max(H): the largest algebraic Hessian eigenvalue, relative residual <= tol."""
    res = hessian_eigs(model, loss_fn, data, 1, which="LA", tol=tol, bn_mode=bn_mode, dtype=dtype,
                       chunk_size=chunk_size, method=method, return_eigenvectors=False, **lanczos_kw)
    return res.top
