"""Speed of the two-layer ReLU teacher-student figure against the authors' style of code.

sgdlab: ``relu-teacher-student`` (4 schedules x 8 seeds, 14126 steps), with train/test loss,
feature sparsity and Jacobian rank logged on the authors' grid (steps 0..99 + 250 evenly spaced).
Reference: one run at a time, an ``nn.Module`` trained by ``torch.optim.SGD`` with batch 1, the
same metrics at the same steps, the Jacobian built with one backward pass per example and a full
SVD (the authors' ``compute_grad_matrix``). The reference is timed on ``--ref-runs`` runs and
extrapolated per run (its cost is linear in the number of runs).

    python benchmarks/relu_nets.py               # full figure vs 2 reference runs
    python benchmarks/relu_nets.py --quick       # 3000 steps
    python benchmarks/relu_nets.py --grad        # one batched step: hand-written vs torch.func vmap

Target (issue 4): >= 20x faster than the reference.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

import sgdlab
from sgdlab.metrics.sparsity import feature_sparsity


def reference_run(data, lr_fn, T, eval_steps, seed, m=20):
    """The authors' loop for one run (float64 as sgdlab; metrics at eval steps)."""
    torch.manual_seed(seed)  # benchmark-local: the reference is the authors' global-RNG style
    net = torch.nn.Sequential(torch.nn.Linear(2, m, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(m, 1, bias=False)).double()
    with torch.no_grad():
        net[0].weight.normal_(0, 0.5)
        net[2].weight.zero_()
    opt = torch.optim.SGD(net.parameters(), lr=lr_fn(0))
    x, y, xt, yt = data.x_train, data.y_train[:, None], data.x_test, data.y_test[:, None]
    n_params = sum(p.numel() for p in net.parameters())
    evals, rng = {int(s) for s in eval_steps}, np.random.default_rng(seed)
    for i in range(T + 1):
        if i in evals:
            with torch.no_grad():
                ((net(x) - y) ** 2).mean(), ((net(xt) - yt) ** 2).mean()
                feature_sparsity(torch.relu(net[0](x)), 0.99, normalize=True)
            rows = []
            for k in range(n_params):  # one backward pass per example
                net.zero_grad()
                net(xt[k: k + 1]).sum().backward()
                rows.append(torch.cat([p.grad.reshape(-1) for p in net.parameters()]))
            s = torch.linalg.svdvals(torch.stack(rows))
            int((s / s[0] > 1e-4).sum())
        if i == T:
            break
        for g in opt.param_groups:
            g["lr"] = lr_fn(i)
        j = int(rng.integers(x.shape[0]))
        opt.zero_grad()
        ((net(x[j: j + 1]) - y[j: j + 1]) ** 2).mean().backward()
        opt.step()


def grad_speed(repeats=2000):
    """Per-step cost of the batched gradient (32 runs, batch 1): hand-written vs torch.func."""
    from sgdlab.models.base import BatchedModel

    cfg = sgdlab.load_experiment("relu-teacher-student")
    data = cfg.data.build()
    model = cfg.model.build(data)
    p = model.init_params(list(range(32)))
    p["W2"] = p["W2"] + 0.1  # nonzero output layer: a generic point
    idx = torch.randint(0, data.n, (32, 1), generator=torch.Generator().manual_seed(0))
    x, y = data.x_train[idx], data.y_train[idx]
    for name, fn in [("hand-written bmm", lambda: model.loss_and_grad(p, x, y)),
                     ("torch.func vmap", lambda: BatchedModel.loss_and_grad(model, p, x, y))]:
        fn()
        t = time.perf_counter()
        for _ in range(repeats):
            fn()
        print(f"{name:18s} {1e6 * (time.perf_counter() - t) / repeats:8.1f} us per step (32 runs)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--grad", action="store_true")
    ap.add_argument("--ref-runs", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.grad:
        grad_speed()
        return
    cfg = sgdlab.load_experiment("relu-teacher-student")
    sets = ["extra_figures=[]", "snapshots=0", "eval.grid='authors'", "eval.points=250", "eval.head=100"]
    if a.quick:
        sets.append("steps=3000")
    cfg = sgdlab.override(cfg, sets)
    t = time.perf_counter()
    res = sgdlab.run(cfg, progress=False, quiet=True)
    t_ours = time.perf_counter() - t
    n_runs = len(res.runs)
    print(f"sgdlab: {n_runs} runs x {cfg.steps} steps, {len(res.steps)} evaluations: {t_ours:.1f} s")
    data = cfg.data.build()
    t = time.perf_counter()
    for s in range(a.ref_runs):
        arm = cfg.arms[s % len(cfg.arms)]
        reference_run(data, arm.schedule.build(cfg.steps), cfg.steps, res.steps, s)
    per_run = (time.perf_counter() - t) / a.ref_runs
    print(f"reference: {per_run:.1f} s per run -> {per_run * n_runs:.1f} s for {n_runs} runs")
    print(f"speed-up: {per_run * n_runs / t_ours:.1f}x")


if __name__ == "__main__":
    main()
