"""How a measurement set small relative to the batch size biases the Monitor's batch sharpness.

    python benchmarks/monitor_set_size.py [--steps 500] [--batch 32] [--sizes 64,128,320,1000,4000] [--draws 5]

An MLP 40-128-128-10 (ReLU) trained on MNIST-1D (the ``mnist1d`` package's default 4000 training
examples, generated offline) by SGD (lr 0.1, batch 32) for ``--steps`` steps, then its batch
sharpness E_B[g_B^T H_B g_B / |g_B|^2] at batch size b = ``--batch`` measured by the Monitor from
measurement sets of n examples (``subset=n`` drawn from the 4000 by ``--draws`` different seeds),
stopped at a relative standard error of 1% (at most 500 batches). Printed: n, n/b, the fraction
(n - b)/(n - 1) of the gradient noise variance batches from n examples keep, and the batch
sharpness (median over the draws [min, max]) relative to the value from all 4000.

``--accuracy``: instead, what the batch-sharpness defaults reach on the same model: for the
paper's setting (rse_tol 0.005, at most 500 batches) and the watching setting (rse_tol 0.02, at
most 100 batches), from all 4000 examples at 5 measurement seeds: batches used, relative standard
error, converged, seconds per estimate.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sgdlab.metrics.probes import ProbeSettings
from sgdlab.workflows.monitor import Monitor


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sizes", default="64,128,320,1000,4000")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--accuracy", action="store_true", help="accuracy and cost of the batch-sharpness settings")
    args = ap.parse_args(argv)
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x, y = torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.long)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(args.steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.accuracy:
        return accuracy(model, x, y, args.batch)

    def bs(n, seed):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small-set warning is the point here
            mon = Monitor(model, F.cross_entropy, (x, y), subset=n, batch_size=args.batch, metrics=["batch_sharpness"],
                          settings=ProbeSettings(rse_tol=0.01, max_batches=500, seed=seed))
        return mon.step()["batch_sharpness"]

    full = bs(len(x), 0)
    print(f"MNIST-1D MLP after {args.steps} SGD steps, batch b = {args.batch}; batch sharpness from all "
          f"{len(x)} examples: {full:.4g}\n\n| n | n / b | noise variance kept (n - b)/(n - 1) | batch sharpness / "
          f"value from {len(x)} (median [min, max] of {args.draws} draws) |\n|---|---|---|---|")
    rows = []
    for n in sizes:
        vals = np.array([bs(n, s) for s in range(args.draws)]) / full
        rows.append({"n": n, "ratio": vals})
        print(f"| {n} | {n / args.batch:.1f} | {(n - args.batch) / (n - 1):.0%} | {np.median(vals):.3f} "
              f"[{vals.min():.3f}, {vals.max():.3f}] |", flush=True)
    return rows


def accuracy(model, x, y, batch: int) -> list[dict]:
    print("| setting | batches used | relative standard error | converged | seconds per estimate |\n|---|---|---|---|---|")
    rows = []
    for label, rse, cap in (("paper: rse_tol 0.005, max 500", 0.005, 500), ("watching: rse_tol 0.02, max 100", 0.02, 100)):
        res = []
        for seed in range(5):
            mon = Monitor(model, F.cross_entropy, (x, y), batch_size=batch, metrics=["batch_sharpness"],
                          settings=ProbeSettings(rse_tol=rse, max_batches=cap, seed=seed))
            t0 = time.perf_counter()
            m = mon.step()
            res.append((m["batch_draws"], m["batch_sharpness_stderr"] / abs(m["batch_sharpness"]),
                        m["batch_sharpness_converged"], time.perf_counter() - t0))
        a = np.array(res)
        rows.append({"setting": label, "results": a})
        print(f"| {label} | {np.median(a[:, 0]):.0f} [{a[:, 0].min():.0f}, {a[:, 0].max():.0f}] | "
              f"{np.median(a[:, 1]):.2%} [{a[:, 1].min():.2%}, {a[:, 1].max():.2%}] | {int(a[:, 2].sum())} of 5 | "
              f"{np.median(a[:, 3]):.1f} |", flush=True)
    return rows


if __name__ == "__main__":
    main()
