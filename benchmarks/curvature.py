"""Benchmark of sgdlab.metrics.curvature: top Hessian eigenvalue cost and accuracy, HVP methods,
and sharpness tracking (cold vs warm start) along an SGD run.

    python benchmarks/curvature.py            # full: ~4 min on 2 cores
    python benchmarks/curvature.py --quick    # smaller data, 500-step run: ~1 min

Models (random data, fixed seeds):
* MLP 784-512-512-10 (ReLU), cross-entropy, 1000 random examples (10 random classes).
* A tiny residual conv net on 3x16x16 inputs (conv 3->16, two 16-channel residual blocks with
  BatchNorm, max-pool between them, global pool, linear 16->10), 256 examples. It is a *local stand-in* for a CIFAR
  ResNet-18, which sgdlab.models may not provide yet; bn_mode="eval".

For each model: sgdlab Lanczos (float32 operator, default tol 1e-4) vs scipy.sparse.linalg.eigsh
(ARPACK, same tol, on HessianOperator.as_linear_operator()), and PyHessian /
pytorch-hessian-eigenthings / curvlinops when importable (never installed by this script).
Relative error is against a reference from sgdlab Lanczos on the float64 operator at tol 1e-10
(``--check-reference`` cross-checks it with eigsh at tol 1e-12). Times are wall seconds; HVPs
are counted by the operator.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import scipy.sparse.linalg as sla  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sgdlab.metrics.curvature import HessianOperator, lanczos  # noqa: E402

TRACK_EVERY = 50  # sharpness every 50 SGD steps, as in the brief


class Block(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.c1, self.b1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)
        self.c2, self.b2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.b2(self.c2(F.relu(self.b1(self.c1(x))))))


def tiny_resnet() -> torch.nn.Module:
    """Local stand-in for a CIFAR ResNet-18 (see module doc)."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), Block(16),
                               torch.nn.MaxPool2d(2), Block(16), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(16, 10))


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                               torch.nn.ReLU(), torch.nn.Linear(512, 10))


def random_data(shape, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def hvp_method_times(model, data, bn_mode, reps: int) -> dict[str, float]:
    out = {}
    for dtype in (torch.float32, torch.float64):
        for method in ("rev_rev", "fwd_rev"):
            op = HessianOperator(model, F.cross_entropy, data, bn_mode=bn_mode, dtype=dtype, method=method)
            v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0), dtype=dtype)
            op.matvec(v)  # warm-up
            _, t = timed(lambda: [op.matvec(v) for _ in range(reps)])
            out[f"{method}/{str(dtype)[6:]}"] = t / reps
    return out


def other_libraries() -> list[str]:
    names = {"pyhessian": "PyHessian", "hessian_eigenthings": "pytorch-hessian-eigenthings",
             "curvlinops": "curvlinops"}
    found = "importable (not benchmarked: no adapter written)"
    return [f"{label}: {found if importlib.util.find_spec(mod) else 'not installed'}"
            for mod, label in names.items()]


def top_eigenvalue_rows(name, model, data, bn_mode, check: bool):
    op64 = HessianOperator(model, F.cross_entropy, data, bn_mode=bn_mode, dtype=torch.float64)
    ref_res, t_ref = timed(lambda: lanczos(op64, 1, tol=1e-10, seed=0, return_eigenvectors=False))
    ref = ref_res.top
    rows = [dict(model=name, solver="reference (sgdlab f64, tol 1e-10)", lam=ref, err=0.0,
                 hvp=ref_res.n_hvp, wall=t_ref)]
    if check:  # an independent solver on the same float64 operator
        op64b = HessianOperator(model, F.cross_entropy, data, bn_mode=bn_mode, dtype=torch.float64)
        lam, t = timed(lambda: float(sla.eigsh(op64b.as_linear_operator(), k=1, which="LA", tol=1e-12)[0][0]))
        rows.append(dict(model=name, solver="  check: eigsh f64 tol 1e-12", lam=lam,
                         err=abs(lam - ref) / abs(ref), hvp=op64b.n_hvp, wall=t))
    op = HessianOperator(model, F.cross_entropy, data, bn_mode=bn_mode)
    res, t = timed(lambda: lanczos(op, 1, tol=1e-4, seed=1, return_eigenvectors=False))
    rows.append(dict(model=name, solver="sgdlab lanczos f32 tol 1e-4", lam=res.top,
                     err=abs(res.top - ref) / abs(ref), hvp=res.n_hvp, wall=t))
    op2 = HessianOperator(model, F.cross_entropy, data, bn_mode=bn_mode)
    v0 = np.random.default_rng(1).standard_normal(op2.dim)
    lam, t2 = timed(lambda: float(sla.eigsh(op2.as_linear_operator(), k=1, which="LA", tol=1e-4, v0=v0)[0][0]))
    rows.append(dict(model=name, solver="scipy eigsh f32 tol 1e-4", lam=lam, err=abs(lam - ref) / abs(ref),
                     hvp=op2.n_hvp, wall=t2))
    return rows


def sgd_tracking(steps: int, n: int, n_track: int, batch: int, lr: float):
    """SGD on n examples; sharpness of the loss on a fixed subset (the first n_track examples)."""
    torch.manual_seed(0)
    model = mlp()
    x, y = random_data((784,), n, seed=1)
    subset = (x[:n_track], y[:n_track])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(2)
    prev, rows = None, []
    totals = dict(cold_hvp=0, warm_hvp=0, cold_s=0.0, warm_s=0.0)
    for step in range(steps + 1):
        if step % TRACK_EVERY == 0:
            op = HessianOperator(model, F.cross_entropy, subset)
            cold, tc = timed(lambda: lanczos(op, 1, seed=step, return_eigenvectors=False))
            warm, tw = timed(lambda: lanczos(op, 1, v0=prev, seed=step))
            prev = warm.eigenvectors
            totals["cold_hvp"] += cold.n_hvp
            totals["warm_hvp"] += warm.n_hvp
            totals["cold_s"] += tc
            totals["warm_s"] += tw
            rows.append((step, cold.top, warm.top, cold.n_hvp, warm.n_hvp))
        if step == steps:
            break
        idx = torch.randint(0, n, (batch,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return rows, totals


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller data and a 500-step run")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--check-reference", action="store_true",
                    help="also confirm the reference with eigsh in float64 (adds ~1 min)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_mlp, n_conv, n_track = (300, 64, 300) if args.quick else (1000, 256, 500)
    steps = 500 if args.quick else 2000
    t0 = time.perf_counter()
    print(f"torch {torch.__version__}, {args.threads} thread(s), quick={args.quick}")
    for line in other_libraries():
        print(f"  {line}")

    torch.manual_seed(0)
    m1 = mlp()
    d1 = random_data((784,), n_mlp, seed=1)
    torch.manual_seed(0)
    m2 = tiny_resnet()
    d2 = random_data((3, 16, 16), n_conv, seed=1)
    m2.train()
    with torch.no_grad():  # non-trivial running statistics for bn_mode="eval"
        m2(d2[0])

    print("\nHVP time per product (s), rev_rev = double backward, fwd_rev = jvp of grad:")
    for name, model, data, bn in (("MLP", m1, d1, None), ("tiny-resnet", m2, d2, "eval")):
        t = hvp_method_times(model, data, bn, reps=3)
        print(f"  {name:12s} " + "  ".join(f"{k}={v:.4f}" for k, v in t.items()) +
              f"  | fwd/rev f32 {t['fwd_rev/float32'] / t['rev_rev/float32']:.2f}"
              f" f64 {t['fwd_rev/float64'] / t['rev_rev/float64']:.2f}")

    print("\nTop Hessian eigenvalue (relative error vs reference):")
    rows = top_eigenvalue_rows(f"MLP p={sum(p.numel() for p in m1.parameters())} n={n_mlp}", m1, d1, None,
                               args.check_reference)
    rows += top_eigenvalue_rows(f"tiny-resnet p={sum(p.numel() for p in m2.parameters())} n={n_conv}", m2, d2,
                                "eval", args.check_reference)
    print(f"  {'model':28s} {'solver':36s} {'lambda_max':>12s} {'rel.err':>9s} {'HVPs':>5s} {'wall s':>7s}")
    for r in rows:
        print(f"  {r['model']:28s} {r['solver']:36s} {r['lam']:12.6f} {r['err']:9.1e} {r['hvp']:5d} {r['wall']:7.2f}")
    for model_name in dict.fromkeys(r["model"] for r in rows):
        a = next(r for r in rows if r["model"] == model_name and r["solver"].startswith("sgdlab"))
        b = next(r for r in rows if r["model"] == model_name and r["solver"].startswith("scipy"))
        print(f"  {model_name}: eigsh/sgdlab HVP ratio {b['hvp'] / a['hvp']:.2f}, "
              f"wall ratio {b['wall'] / a['wall']:.2f}")

    print(f"\nSharpness every {TRACK_EVERY} steps of SGD (MLP, n={n_mlp}, batch 50, lr 0.1, {steps} steps), "
          f"on a fixed subset of {n_track} examples, float32, tol 1e-4:")
    track, tot = sgd_tracking(steps, n_mlp, n_track, batch=50, lr=0.1)
    print(f"  {'step':>5s} {'lam cold':>10s} {'lam warm':>10s} {'HVP cold':>8s} {'HVP warm':>8s}")
    for step, lc, lw, hc, hw in track[:: max(1, len(track) // 10)]:
        print(f"  {step:5d} {lc:10.4f} {lw:10.4f} {hc:8d} {hw:8d}")
    dev = max(abs(lc - lw) / abs(lc) for _, lc, lw, _, _ in track)
    print(f"  {len(track)} measurements: HVPs cold {tot['cold_hvp']}, warm {tot['warm_hvp']} "
          f"(warm/cold {tot['warm_hvp'] / tot['cold_hvp']:.2f}); wall cold {tot['cold_s']:.1f}s, warm "
          f"{tot['warm_s']:.1f}s (warm/cold {tot['warm_s'] / tot['cold_s']:.2f}); max |cold-warm|/cold {dev:.1e}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
