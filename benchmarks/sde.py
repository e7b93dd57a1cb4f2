"""Cost of a constant-noise SDE step against a GD step, each on the path the engine really uses.

On the diagonal net both are compiled kernels (``diag_sgd_chunk`` for GD, ``diag_sde_chunk`` for
the SDE, fed by the counter-based noise stream of ``optim.noise``), so this compares kernel to
kernel. Two measurements:

* whole processes (``python -m sgdlab run CONFIG``): R runs of one arm (the SDE arm with R
  seeds; for GD, which is deterministic from the fixed init, R identical GD arms, batched into
  one group) at S1 and S2 steps, evaluation only at the start and the end; the cost of a
  run-step is the difference of the CPU-time medians divided by R (S2 - S1). Start-up (and the
  one-off compile of each kernel, measured with an empty numba cache) is reported separately.
* in process: ``optim.stepper.advance`` on R runs for a fixed number of steps, fused path on
  both sides (lower noise, no start-up); the ReLU net has no compiled kernel, so there both
  sides are the torch path.

    python benchmarks/sde.py            # S2 = 200,000 steps, S1 = S2 / 20, 5 repeats
    python benchmarks/sde.py --quick    # a quarter of the steps, 3 repeats

Target (issue 13): an SDE step <= 1.5x a GD step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import (
    bench_env,
    machine_line,
    med,
    python,
    repeat,
    run_process,
    spread,
    verdict,
)

TARGET = 1.5
DELTA = 2.6e-4  # the sde-diag-net experiment's noise level
LR = 0.05  # small constant step: no run diverges on these data


def configs(n, d, runs, steps):
    """(GD config, SDE config): same data, schedule, steps, evaluation; R runs each."""
    from sgdlab.core.config import dump_toml
    from sgdlab.data.synthetic import SparseRegression
    from sgdlab.metrics.config import MetricsConfig
    from sgdlab.optim.config import GD
    from sgdlab.optim.schedules import Constant
    from sgdlab.optim.sde import ConstantNoiseSDE
    from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
    from sgdlab.studies.diag_net.model import DiagonalNetConfig

    base = ExperimentConfig(name="bench-sde", data=SparseRegression(n=n, d=d, r=3, n_test=100), model=DiagonalNetConfig(),
                            steps=steps,
                            eval=EvalConfig("linear", 2), metrics=MetricsConfig(names=("train_loss",)))
    gd = dataclasses.replace(base, seeds=1, arms=tuple(ArmConfig(f"gd{i}", GD(), Constant(LR)) for i in range(runs)))
    sde = dataclasses.replace(base, seeds=runs, arms=(ArmConfig("sde", ConstantNoiseSDE(delta=DELTA), Constant(LR)),))
    return dump_toml(gd), dump_toml(sde)


def in_process(model, data, ocfg, runs, steps, repeats, fused=True):
    """Median CPU seconds per run-step of ``advance`` (after one warm-up call)."""
    import numpy as np

    from sgdlab.optim.stepper import advance

    out = []
    for k in range(repeats + 1):
        p = model.init_params(list(range(runs)))
        o = ocfg.build(data.n, steps)
        lr = np.full((runs, steps if k else 8), LR)
        t0 = time.process_time()
        advance(model, p, data, o, o.init_state(p, model.trainable(p)), np.arange(runs), lr, 0,
                np.full(runs, -1, dtype=np.int64), np.full(runs, np.inf), fused=fused)
        if k:
            out.append((time.process_time() - t0) / (runs * steps))
    return float(np.median(out)), float(min(out)), float(max(out))


def noise_cost(n, runs, steps, repeats):
    """Median CPU seconds per run-step of drawing the SDE's noise (n numbers per run-step)."""
    import numpy as np

    from sgdlab.optim.noise import TAG_SDE, NoiseStream

    out = []
    for k in range(repeats):
        stream = NoiseStream(range(runs), TAG_SDE, n)
        blocks = -(-steps // stream.L)
        t0 = time.process_time()
        for b in range(blocks):
            stream.block(b + k * blocks)
        out.append((time.process_time() - t0) / (runs * blocks * stream.L))
    return float(np.median(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--repeats", type=int, help="default 5; quick 3")
    ap.add_argument("--scale", type=float, help="fraction of the default step counts (quick: 0.25)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    reps = a.repeats or (3 if a.quick else 5)
    scale = a.scale or (0.25 if a.quick else 1.0)
    env = bench_env(a.threads)
    cases = [("diag net n=20 d=30 (sde-diag-net)", 20, 30, int(200_000 * scale)),
             ("diag net n=80 d=200 (diag-net)", 80, 200, int(200_000 * scale))]
    print(f"SDE step vs GD step, {a.runs} runs per process, {reps} processes per command")
    print(machine_line(a.threads))
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for name, n, d, s2 in cases:
            s1 = max(1, s2 // 20)
            res = {}
            for side in ("gd", "sde"):
                files = {}
                for s in (s1, s2):
                    text = configs(n, d, a.runs, s)[side == "sde"]
                    files[s] = tmp / f"{side}-{n}-{s}.toml"
                    files[s].write_text(text)
                cmd = lambda s: python("-m", "sgdlab", "run", str(files[s]), "--out", str(tmp / "out"),  # noqa: B023
                                       "--overwrite", "--no-progress", "--workers", "1")
                cold = run_process(cmd(s1), dict(env, NUMBA_CACHE_DIR=str(tmp / f"cold-{side}-{n}")))
                wenv = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba"))
                run_process(cmd(s1), wenv)
                t1, t2 = repeat(cmd(s1), wenv, reps), repeat(cmd(s2), wenv, reps)
                res[side] = (t1, t2, cold, (med(t2) - med(t1)) / (a.runs * (s2 - s1)))
            rows.append((name, s1, s2, res))

        import torch

        from sgdlab.data.synthetic import SparseRegression
        from sgdlab.data.toy_configs import TeacherStudent2D
        from sgdlab.models.mlp import MLPConfig
        from sgdlab.optim.config import GD
        from sgdlab.optim.sde import ConstantNoiseSDE
        from sgdlab.studies.diag_net.model import DiagonalNetConfig

        torch.set_num_threads(a.threads)
        inproc = []
        for name, data, mcfg, steps in [
                ("diag net n=20 d=30", SparseRegression(n=20, d=30, r=3).build(), DiagonalNetConfig(),
                 max(64, int(8192 * scale))),
                ("diag net n=80 d=200", SparseRegression().build(), DiagonalNetConfig(), max(64, int(4096 * scale))),
                ("two-layer ReLU m=20 n=15 (torch path)", TeacherStudent2D().build(), MLPConfig(init_scales=(0.5, 0.1)),
                 max(16, int(2000 * scale)))]:
            model = mcfg.build(data)
            gd = in_process(model, data, GD(), a.runs, steps, reps)
            sde = in_process(model, data, ConstantNoiseSDE(delta=DELTA), a.runs, steps, reps)
            quiet = in_process(model, data, ConstantNoiseSDE(delta=0.0), a.runs, steps, reps)
            inproc.append((name, gd, sde, quiet, noise_cost(data.n, a.runs, steps, reps)))

    print("\nwhole processes: CPU s median [min, max]; per run-step = difference of medians / (R (S2 - S1))")
    print(f"{'case':36s} {'side':4s} {'S1':>7s} {'S2':>7s} {'at S1':>20s} {'at S2':>20s} "
          f"{'us/run-step':>11s} {'first run (compile)':>20s}")
    for name, s1, s2, res in rows:
        for side, (t1, t2, cold, per) in res.items():
            print(f"{name:36s} {side:4s} {s1:7d} {s2:7d} {spread(t1):>20s} {spread(t2):>20s} {per * 1e6:11.3f} "
                  f"{cold.cpu - med(t1):+19.2f}s")
    print("\nin process (optim.stepper.advance, CPU us per run-step, median [min, max]); 'SDE delta=0' is the")
    print("SDE path with the noise switched off (no draws), 'draws' the counter-based noise alone:")
    for name, gd, sde, quiet, draws in inproc:
        print(f"  {name:38s} GD {gd[0] * 1e6:7.3f} [{gd[1] * 1e6:.3f}, {gd[2] * 1e6:.3f}]   "
              f"SDE {sde[0] * 1e6:7.3f} [{sde[1] * 1e6:.3f}, {sde[2] * 1e6:.3f}]   SDE delta=0 {quiet[0] * 1e6:7.3f}   "
              f"draws {draws * 1e6:6.3f}   SDE/GD {sde[0] / gd[0]:.2f}x")
    print(f"\ntarget (issue 13): SDE step <= {TARGET}x the GD step the engine runs (compiled kernels):")
    for name, _s1, _s2, res in rows:
        ratio = res["sde"][3] / res["gd"][3]
        print(f"  {name:36s} whole processes {ratio:.2f}x  [{verdict(ratio, TARGET, False)}]")
    for name, gd, sde, _q, _d in inproc[:2]:
        print(f"  {name:36s} in process      {sde[0] / gd[0]:.2f}x  [{verdict(sde[0] / gd[0], TARGET, False)}]")


if __name__ == "__main__":
    main()
