"""Cost of ``sgdlab.Monitor``: a plain SGD loop with and without monitoring, overhead ratio printed.

    python benchmarks/monitor.py [--threads 2] [--steps 1000] [--subset 256] [--batch 128] [--cases mlp,resnet18]
                                 [--k 2] [--tol 1e-4] [--max-batches 500] [--quick]

What is timed: the same user-style loop twice from the same initial weights and batches, once bare
and once calling ``monitor.step()`` every step, with sharpness (top-2 Hessian eigenvalues,
warm-started Lanczos, tol 1e-4) and the 2/eta threshold every 100 steps and batch sharpness (the
paper's estimator: batches of the training batch size without replacement, RSE < 0.005, at most
500 batches) every 500 steps, on a fixed measurement subset of ``--subset`` training examples.
Overhead = monitored time / bare time - 1, and in-loop overhead = time inside ``monitor.step()`` /
time outside it in the monitored loop (immune to the machine's load changing between the two loops);
the verdict (target <= 10% on CPU) uses the larger. The time per metric comes from the monitor's
own per-probe timer.

Models (random CIFAR-shaped data, 10 classes, cross-entropy, SGD lr 0.05 momentum 0.9, batch 128):
* MLP 3072-512-512-10 (ReLU), 4096 training images;
* CIFAR ResNet-18 of ``sgdlab.models.cifar.build_deep_model("resnet18", width=4)``, BatchNorm
  (Hessian with ``bn_mode="train"``, chunks of the batch size), 4096 training images.
On CPU, and on CUDA too when ``torch.cuda.is_available()``. ``--quick``: tiny sizes and at most 12
batches per batch-sharpness estimate, a smoke test.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from sgdlab.metrics.probes import ProbeSettings
from sgdlab.models.cifar import build_deep_model
from sgdlab.workflows.monitor import Monitor

TARGET = 0.10  # the overhead target on CPU
SHARPNESS_EVERY, BATCH_EVERY = 100, 500  # the settings
BATCH, LR, MOMENTUM = 128, 0.05, 0.9  # batch: --batch
QUICK_MAX_BATCHES = 12  # --quick only: a smoke test, not the paper's estimator


def mlp(d: int, width: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))


def make_case(name: str, quick: bool, device):
    g = torch.Generator().manual_seed(0)
    n, side = (512, 8) if quick else (4096, 32)
    x = torch.rand(n, 3, side, side, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    torch.manual_seed(0)
    if name == "mlp":
        model = mlp(3 * side * side, 64 if quick else 512)
        bn = None
    else:
        model = build_deep_model("resnet18", width=2 if quick else 4, generator=g)
        bn = "train"
    return model.to(device), x.to(device), y.to(device), bn


def loop(model, x, y, steps: int, batch: int, monitor: Monitor | None) -> float:
    """The user's loop: SGD with momentum on random batches; returns wall seconds."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    if monitor is not None:
        monitor.prober.optimizer = opt
    g = torch.Generator().manual_seed(1)
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        if monitor is not None:
            monitor.step()
        idx = torch.randint(0, len(x), (batch,), generator=g).to(x.device)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    sync()
    return time.perf_counter() - t0


def run_case(name: str, device, args) -> dict:
    model0, x, y, bn = make_case(name, args.quick, device)
    every, bs_every = (args.steps // 4, args.steps // 2) if args.quick else (SHARPNESS_EVERY, BATCH_EVERY)
    # BatchNorm in train mode: each chunk of the Hessian's data is normalised like a training batch;
    # every chunk's graph is kept during a measurement (one backward pass per HVP).
    chunked = {"chunk_size": args.batch, "cache_graph": True} if bn == "train" else {}
    max_batches = QUICK_MAX_BATCHES if args.quick else args.max_batches
    settings = ProbeSettings(k=args.k, tol=args.tol, max_batches=max_batches,
                             min_batches=min(max_batches, ProbeSettings.min_batches), **chunked)
    bare = loop(copy.deepcopy(model0), x, y, args.steps, args.batch, None)
    if args.batch >= min(args.subset, len(x)):
        print(f"note: batch {args.batch} >= measurement subset {args.subset}: batch sharpness is the one full "
              f"batch (exact, one draw), not a Monte Carlo estimate")
    model = copy.deepcopy(model0)
    dummy = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)  # replaced by the loop's own
    mon = Monitor(model, F.cross_entropy, (x, y), dummy, subset=min(args.subset, len(x)), batch_size=args.batch,
                  bn_mode=bn, settings=settings,
                  metrics={"sharpness": every, "threshold": every, "batch_sharpness": bs_every})
    monitored = loop(model, x, y, args.steps, args.batch, mon)
    _, m = mon.metrics()
    sec = mon.prober.seconds
    return {"case": name, "device": str(device), "p": sum(q.numel() for q in model.parameters()),
            "bare": bare, "monitored": monitored, "overhead": monitored / bare - 1,
            "in_loop": mon.seconds / (monitored - mon.seconds),
            "n_sharp": int(np.isfinite(m["sharpness"]).sum()), "hvps": float(np.nanmean(m["curvature_hvps"])),
            "n_bs": int(np.isfinite(m["batch_sharpness"]).sum()), "draws": float(np.nanmean(m["batch_draws"])),
            "t_sharp": sec["sharpness"] + sec["train_loss"], "t_bs": sec["batch_sharpness"],
            "every": every, "bs_every": bs_every}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per loop")
    ap.add_argument("--subset", type=int, default=256, help="measurement subset (examples)")
    ap.add_argument("--batch", type=int, default=BATCH, help="training batch size")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k", type=int, default=ProbeSettings.k, help="top-k eigenvalues (monitor default 2)")
    ap.add_argument("--tol", type=float, default=ProbeSettings.tol, help="Lanczos tolerance (default 1e-4)")
    ap.add_argument("--max-batches", type=int, default=ProbeSettings.max_batches,
                    help="batch sharpness: at most this many batches (default 500, the paper's cap)")
    ap.add_argument("--cases", default="mlp,resnet18")
    ap.add_argument("--quick", action="store_true", help="tiny models and data, measurements at steps/4 and /2")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps, batch {args.batch}, "
          f"measurement subset {args.subset}, k={args.k}, tol={args.tol:g}, batch sharpness: RSE < "
          f"{ProbeSettings.rse_tol:g} or {QUICK_MAX_BATCHES if args.quick else args.max_batches} batches, "
          f"quick={args.quick}")
    print(f"\n{'case':9s} {'device':6s} {'params':>9s} {'bare s':>8s} {'monitored s':>12s} {'overhead':>9s} "
          f"{'in-loop':>8s}  sharpness (n, mean HVPs, s)   batch sharpness (n, mean batches, s)", flush=True)
    rows = []
    for d in devices:
        for c in args.cases.split(","):
            r = run_case(c, d, args)
            rows.append(r)
            print(f"{r['case']:9s} {r['device']:6s} {r['p']:9d} {r['bare']:8.2f} {r['monitored']:12.2f} "
                  f"{100 * r['overhead']:8.1f}% {100 * r['in_loop']:7.1f}%  every {r['every']}: {r['n_sharp']}, {r['hvps']:.1f}, "
                  f"{r['t_sharp']:.2f}   every {r['bs_every']}: {r['n_bs']}, {r['draws']:.0f}, {r['t_bs']:.2f}",
                  flush=True)
    print("overhead = monitored / bare - 1 (two loops, back to back); in-loop = time inside monitor.step() / "
          "time outside it in the monitored loop (the same loop: robust to load changing between the loops)")
    for r in rows:
        if r["device"] == "cpu":
            worst = max(r["overhead"], r["in_loop"])
            met = "met" if worst <= TARGET else "NOT met"
            print(f"target <= {100 * TARGET:.0f}% overhead on CPU, {r['case']}: {met} (the larger of the two: "
                  f"{100 * worst:.1f}%)")
    return rows


if __name__ == "__main__":
    main()
