"""The libraries compared by benchmarks/curvature.py: how each is run, counted and budgeted.

Each runner ``run_<module>(model, data, tol, cap, seed=0, **kw)`` returns ``{"lam", "hvp", "wall",
"note"}``; tol None means the library's defaults. Products are counted by wrapping the library's
own product function, and a run that exceeds ``cap`` products is stopped and reported as such.
Nothing here installs anything: a library that does not import is reported "not installed".
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import time

import numpy as np
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F

PYHESSIAN_MAX_ITER = 100  # its eigenvalues() default


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


LIBS = {"pyhessian": "PyHessian", "hessian_eigenthings": "hessian-eigenthings", "curvlinops": "curvlinops"}


def library_status() -> dict[str, str]:
    """'ok <version>' or 'not installed (<reason>)' for each compared library (never installed here)."""
    out = {}
    for mod in LIBS:
        try:
            m = importlib.import_module(mod)
            out[mod] = "ok " + str(getattr(m, "__version__", ""))
        except Exception as e:  # ImportError, or a missing dependency of the library  # noqa: BLE001
            out[mod] = f"not installed ({type(e).__name__}: {e})"
    return out


class HVPBudget(RuntimeError):
    """Raised by a counting wrapper when a library exceeds the benchmark's product budget."""


class Converged(RuntimeError):
    """Raised by the hessian-eigenthings monitor when its Lanczos residual meets tol."""


def _restore_model(model, was_training):
    for p in model.parameters():  # PyHessian leaves .grad holding a graph
        p.grad = None
    model.train(was_training)


@contextlib.contextmanager
def counting(owner, attr: str, cap: float, n_of=lambda *args: 1):
    """Replace ``owner.attr`` by a wrapper counting products (``n_of(*args)`` per call) that raises
    HVPBudget past ``cap``; yields the one-element count list and restores the attribute."""
    orig = getattr(owner, attr)
    count = [0]

    def counted(*args):
        count[0] += n_of(*args)
        if count[0] > cap:
            raise HVPBudget
        return orig(*args)

    setattr(owner, attr, counted)
    try:
        yield count
    finally:
        setattr(owner, attr, orig)


def budgeted(model, cap: int, count: list, solve) -> dict:
    """Time ``solve() -> (lambda, note)``; a budget overrun gives NaN; the model's mode restored."""
    was_training = model.training
    t = time.perf_counter()
    try:
        lam, note = solve()
    except HVPBudget:
        lam, note = float("nan"), f"stopped at {cap} HVPs"
    finally:
        wall = time.perf_counter() - t
        _restore_model(model, was_training)
    return {"lam": lam, "hvp": min(count[0], cap), "wall": wall, "note": note}


def run_pyhessian(model, data, tol, cap, seed=0):
    """PyHessian power iteration (cuda=False); tol None = its default (1e-3 relative change, maxIter 100)."""
    importlib.import_module("pyhessian.hessian")
    ph = sys.modules["pyhessian.hessian"]  # the module (the package re-exports the class under that name)
    torch.manual_seed(seed)  # PyHessian draws its start vector from the global RNG

    def solve():
        H = ph.hessian(model, F.cross_entropy, data=data, cuda=False)  # calls model.eval()
        ev, _ = H.eigenvalues() if tol is None else H.eigenvalues(tol=tol)
        return float(ev[0]), ("maxIter reached" if count[0] >= PYHESSIAN_MAX_ITER else "")

    with counting(ph, "hessian_vector_product", cap) as count:
        return budgeted(model, cap, count, solve)


def _eigenthings_stop_step(he, model, data, tol, cap, seed):
    """First Lanczos step m at which hessian-eigenthings' own criterion |beta_m s_m| < tol |theta|
    holds, found by monitoring the vectors it multiplies (Rayleigh-Ritz on its basis); None if
    not within the cap. Untimed: the monitor's float64 bookkeeping is ours, not the library's."""
    op = he.HessianOperator(model, [data], he.supervised_loss(F.cross_entropy))
    orig = op.matvec
    Q, HQ = [], []
    G, A, C = (torch.zeros(cap, cap, dtype=torch.float64) for _ in range(3))

    def monitored(v):
        out = orig(v)
        m = len(Q)
        if m + 1 > cap:
            raise HVPBudget
        Q.append(v.detach().double())
        HQ.append(out.detach().double())
        for j in range(m + 1):  # G = Q^T H Q, A = (HQ)^T HQ, C = Q^T Q, updated incrementally
            G[m, j] = G[j, m] = 0.5 * (Q[m] @ HQ[j] + Q[j] @ HQ[m])
            A[m, j] = A[j, m] = HQ[m] @ HQ[j]
            C[m, j] = C[j, m] = Q[m] @ Q[j]
        k = m + 1
        s = torch.linalg.eigh(G[:k, :k])[1][:, -1]
        # exact residual of y = Q s / |Q s| with its Rayleigh quotient (float32 basis: C != I)
        c, gq, a = s @ C[:k, :k] @ s, s @ G[:k, :k] @ s, s @ A[:k, :k] @ s
        th = gq / c
        if (a - 2 * th * gq + th**2 * c) / c < (tol * th) ** 2:
            raise Converged
        return out

    op.matvec = monitored
    try:
        he.lanczos(op, k=1, max_iter=min(cap, 50), which="LA", tol=tol, seed=seed)  # <= 50: its reorth on
    except Converged:
        return len(Q)
    except HVPBudget:
        return None
    return None


def run_eigenthings(model, data, tol, cap, seed=0, protocol="oracle"):
    """hessian-eigenthings 1.x. tol None = `lanczos(op, k=1)` at its defaults (max_iter = 2k = 2
    steps, no stopping rule). With tol: its Lanczos runs a *fixed* number of steps (`tol` only
    sets the `converged` flags afterwards), so the step count must come from outside:

    * protocol "doubling" (what a user can do): max_iter = 2, 4, 8, ... (at most 50, above which
      it turns reorthogonalization off, and the cap) until its own `converged` flag is set; every
      attempt counts (it cannot resume).
    * protocol "oracle" (a lower bound on its cost; nobody can run it): an untimed monitored run
      finds the first step m where its own residual criterion |beta_m s_m| < tol |theta| holds
      (`_eigenthings_stop_step`), then a clean, timed `lanczos(op, k=1, max_iter=m)` is reported.
    """
    import hessian_eigenthings as he
    was_training = model.training
    model.eval()  # same BatchNorm semantics as sgdlab bn_mode="eval"
    count = [0]

    def solve(max_iter):
        op = he.HessianOperator(model, [data], he.supervised_loss(F.cross_entropy))
        with counting(op, "matvec", math.inf) as c:
            res = (he.lanczos(op, k=1, which="LA", seed=seed) if max_iter is None else
                   he.lanczos(op, k=1, max_iter=max_iter, which="LA", tol=tol, seed=seed))
        count[0] += c[0]
        return res

    note, wall = "", 0.0
    try:
        if tol is None:
            res, wall = timed(lambda: solve(None))
            note = "converged" if bool(res.converged[0]) else "not converged (own check)"
        elif protocol == "oracle":
            m = _eigenthings_stop_step(he, model, data, tol, cap, seed)
            if m is None:
                return {"lam": float("nan"), "hvp": cap, "wall": float("nan"), "note": f"no convergence in {cap} steps"}
            res, wall = timed(lambda: solve(m))
            note = f"max_iter={m} (oracle)"
        elif protocol == "doubling":
            max_iter, limit = 2, min(50, cap)
            while True:
                res, t = timed(lambda max_iter=max_iter: solve(max_iter))
                wall += t
                if bool(res.converged[0]) or max_iter >= limit:
                    break
                max_iter = min(2 * max_iter, limit)
            note = f"last max_iter={max_iter}" + ("" if bool(res.converged[0]) else ", not converged")
        else:
            raise ValueError(f"unknown protocol {protocol!r}")
        lam = float(res.eigenvalues[0])
    finally:
        _restore_model(model, was_training)
    return {"lam": lam, "hvp": count[0], "wall": wall, "note": note}


def run_curvlinops(model, data, tol, cap, seed=0):
    """curvlinops HessianLinearOperator + scipy eigsh(k=1, which='LA'). tol None = defaults
    (eigsh tol=0, i.e. machine precision; check_deterministic=True); with tol: eigsh tol and
    check_deterministic=False (skips its safety probe, favours curvlinops)."""
    from curvlinops import HessianLinearOperator
    model.eval()

    def solve():
        params = [p for p in model.parameters() if p.requires_grad]
        H = HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), params, [data],
                                  check_deterministic=tol is None)
        v0 = np.random.default_rng(seed).standard_normal(H.shape[0])
        return float(sla.eigsh(H.to_scipy(), k=1, which="LA", tol=0 if tol is None else tol, v0=v0)[0][0]), ""

    # Products counted per column of each (p, c) block it multiplies.
    with counting(HessianLinearOperator, "_matmat_batch", cap, lambda self, X, y, M: M[0].shape[-1]) as count:
        return budgeted(model, cap, count, solve)


RUNNERS = {"pyhessian": run_pyhessian, "hessian_eigenthings": run_eigenthings, "curvlinops": run_curvlinops}
MATCHED_TOL = 1e-4  # sgdlab's default
# (setting label, tol, runner keywords, oracle?) per library; tol None = the library's defaults.
# An oracle setting is a lower bound on the library's cost that no user can run.
SETTINGS = {
    "pyhessian": [("defaults", None, {}, False), ("tol 1e-4", MATCHED_TOL, {}, False)],
    "hessian_eigenthings": [("defaults", None, {}, False),
                            ("tol 1e-4, max_iter doubled", MATCHED_TOL, {"protocol": "doubling"}, False),
                            ("tol 1e-4, oracle max_iter", MATCHED_TOL, {"protocol": "oracle"}, True)],
    "curvlinops": [("defaults", None, {}, False), ("tol 1e-4", MATCHED_TOL, {}, False)],
}
