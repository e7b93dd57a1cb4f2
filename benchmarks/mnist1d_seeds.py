"""MNIST-1D CNN for R seeds: sgdlab's vmap-batched path vs a plain PyTorch loop over seeds.

Small models are launch-bound: a step of the benchmark's 1-D CNN (5,210 parameters, batch 100)
is a few hundred microseconds of arithmetic wrapped in tens of operator launches, so training R
seeds as one ``torch.func.vmap`` computation (sgdlab's engine: ``Engine.advance_to`` on the
stacked ``(R, ...)`` parameters, ``sgdlab.models.deep_step``) should beat R separate loops.

Both sides do the same work, in one process, alternating (order flipped every round):
* R seeds of the CNN (``mnist1d_net`` / ``studies.mnist1d.nets.BenchmarkCNN``, the same
  initialisation per seed), plain SGD at a constant step, batch 100 drawn uniformly per step;
* S steps, then one evaluation per seed: train loss on the 4000 training sequences and test
  error on the 1000 test sequences (no gradient).
The plain side is the loop a user would write: per seed an ``nn.Module``, ``torch.optim.SGD``,
``zero_grad / backward / step``. Timed as process CPU time (the machine may be shared: CPU time
does not count other jobs' share of the cores) and wall time; the ratio is median [IQR] over rounds
of plain / sgdlab. The target (>= 3x) is printed with its margin or miss, with the load average.

    python benchmarks/mnist1d_seeds.py                   # R = 16, S = 200, 3 rounds, 1 thread
    python benchmarks/mnist1d_seeds.py --model mlp       # the benchmark's MLP instead
    python benchmarks/mnist1d_seeds.py --quick           # smoke run (R = 2, S = 3)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
import torch.nn.functional as F

from sgdlab.data.toy_configs import MNIST1D
from sgdlab.engine.train import Engine
from sgdlab.metrics.config import MetricsConfig
from sgdlab.optim.config import SGD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.mnist1d.models import Mnist1dNetConfig
from sgdlab.studies.mnist1d.nets import build_net

TARGET = 3.0  # sgdlab's batched seeds >= 3x the plain loop
LR = 0.05  # timing does not depend on it
BATCH = 100  # the MNIST-1D benchmark's batch


def engine_block(seeds: int, steps: int, model: str = "cnn"):
    """A fresh engine run of ``seeds`` seeds: initial state, S steps, one evaluation."""
    cfg = ExperimentConfig(name="bench-mnist1d-seeds", data=MNIST1D(), model=Mnist1dNetConfig(name=model),
                           arms=(ArmConfig("sgd", SGD(BATCH), Constant(LR)),), steps=steps, seeds=seeds,
                           eval=EvalConfig("linear", 2), metrics=MetricsConfig(names=("train_loss", "test_error")),
                           dtype="float32")
    eng = Engine(cfg)

    def block():
        state = eng.initial_state()
        eng.advance_to(state, steps)
        return eng.evaluate(state)

    return block


def plain_block(seeds: int, steps: int, model: str = "cnn"):
    """The same work as a plain PyTorch loop over seeds."""
    data = MNIST1D().build().to(dtype=torch.float32)
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test

    def block():
        out = []
        for s in range(seeds):
            net = build_net(model, generator=torch.Generator().manual_seed(s))
            opt = torch.optim.SGD(net.parameters(), lr=LR)
            gen = torch.Generator().manual_seed(s)
            for _ in range(steps):
                idx = torch.randint(0, len(x), (BATCH,), generator=gen)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                out.append((float(F.cross_entropy(net(x), y)), float((net(xt).argmax(-1) != yt).float().mean())))
        return out

    return block


def timed(fn) -> tuple[float, float]:
    c, w = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c, time.perf_counter() - w


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model", default="cnn", choices=["logistic", "mlp", "cnn", "gru"],
                   help="which benchmark model (the target is stated for the CNN)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 3 steps, 1 round")
    a = p.parse_args(argv)
    if a.quick:
        a.seeds, a.steps, a.rounds = 2, 3, 1
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()
    runners = {"sgdlab": engine_block(a.seeds, a.steps, a.model), "plain": plain_block(a.seeds, a.steps, a.model)}
    for fn in runners.values():  # warm-up: first-call costs (vmap probe, allocator) are not timed
        fn()
    cpu = {k: [] for k in runners}
    wall = {k: [] for k in runners}
    for r in range(a.rounds):
        for k in (("sgdlab", "plain") if r % 2 == 0 else ("plain", "sgdlab")):
            c, w = timed(runners[k])
            cpu[k].append(c)
            wall[k].append(w)
    load1 = os.getloadavg()
    res = {}
    for clock, t in (("cpu", cpu), ("wall", wall)):
        q = np.percentile(np.asarray(t["plain"]) / np.asarray(t["sgdlab"]), [25, 50, 75])
        res[clock] = {"sgdlab_s": float(np.median(t["sgdlab"])), "plain_s": float(np.median(t["plain"])),
                      "ratio": float(q[1]), "iqr": [float(q[0]), float(q[2])]}
    n_params = sum(p.numel() for p in build_net(a.model).parameters())
    print(f"MNIST-1D {a.model} ({n_params:,} parameters), {a.seeds} seeds x {a.steps} SGD steps (batch {BATCH}) + one evaluation "
          f"per seed (train loss on 4000, test error on 1000); {a.rounds} alternating rounds after a warm-up; "
          f"torch {torch.__version__}, {a.threads} thread(s), {platform.processor() or platform.machine()}")
    print(f"load average (1/5/15 min) before {load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f}, "
          f"after {load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f}")
    for clock in ("cpu", "wall"):
        r = res[clock]
        ok = r["ratio"] >= TARGET
        gap = abs(r["ratio"] - TARGET) / TARGET
        print(f"{clock:>4} time: sgdlab {r['sgdlab_s']:.2f} s, plain loop {r['plain_s']:.2f} s, plain / sgdlab = "
              f"{r['ratio']:.2f}x [IQR {r['iqr'][0]:.2f}-{r['iqr'][1]:.2f}]; target >= {TARGET:g}x: "
              + (f"met (+{gap:.0%})" if ok else f"MISSED by {gap:.0%}"))
    return res


if __name__ == "__main__":
    main()
