"""Cost of one constant-noise SDE step relative to one full-batch GD step.

Both advance the same group of runs through ``optim.stepper.advance`` (torch path, full batch):
GD with the model's own ``loss_and_grad``, the SDE with one VJP of the reweighted loss
(``optim.sde``) plus its counter-based Gaussian draws. Measured on the two-layer teacher-student
net (hand-written VJP) and on the diagonal net (autograd VJP vs its closed-form gradient).

    python benchmarks/sde.py [--steps 2000] [--runs 8]

Target (issue 4): SDE step <= 1.5x a GD step.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

from sgdlab.data.synthetic import SparseRegression
from sgdlab.data.toy_configs import TeacherStudent2D
from sgdlab.models.diagonal import DiagonalNetConfig
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim.config import GD
from sgdlab.optim.sde import ConstantNoiseSDE
from sgdlab.optim.stepper import advance


def time_steps(model, data, opt, runs, steps, repeats=3):
    best = np.inf
    for _ in range(repeats):
        params = model.init_params(list(range(runs)))
        o = opt.build(data.n, steps)
        lr = np.full((runs, steps), 0.05)
        t = time.perf_counter()
        advance(model, params, data, o, o.init_state(params, model.trainable(params)), np.arange(runs), lr, 0,
                np.full(runs, -1, dtype=np.int64), np.full(runs, np.inf), fused=False)
        best = min(best, time.perf_counter() - t)
    return best / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(1)
    cases = [("two-layer ReLU (m=20, n=15)", TeacherStudent2D().build(), MLPConfig(init_scales=(0.5, 0.1))),
             ("diagonal net (d=200, n=80)", SparseRegression().build(), DiagonalNetConfig())]
    for name, data, mcfg in cases:
        model = mcfg.build(data)
        gd = time_steps(model, data, GD(), a.runs, a.steps)
        sde = time_steps(model, data, ConstantNoiseSDE(delta=1e-3), a.runs, a.steps)
        print(f"{name:30s} GD {1e6 * gd:7.1f} us/step   SDE {1e6 * sde:7.1f} us/step   ratio {sde / gd:.2f}x "
              f"({a.runs} runs)")


if __name__ == "__main__":
    main()
