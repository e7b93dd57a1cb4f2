"""A 64-run diagonal-net sweep (8 step sizes x 8 seeds, 100,001 steps): batched in one
process against one process per run (2 at a time on 2 cores) and against Ray with 2 workers
(one task per run).

    python benchmarks/sweep.py           # full
    python benchmarks/sweep.py --quick   # 20,001 steps; 16 of the 64 single-run processes timed

Target (issue 6): batched >= 10x faster than one process per run on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np

import sgdlab
from sgdlab.config import dump_toml
from sgdlab.sweep import Sweep

LRS = np.linspace(0.2, 0.28, 8).round(4).tolist()  # the large-step side of the window and below


def base_config(steps: int):
    cfg = sgdlab.load_experiment("diag-net")
    import dataclasses

    cfg = dataclasses.replace(cfg, arms=cfg.arms[:1])  # SGD, constant step: the step size is swept
    return sgdlab.override(cfg, [f"steps={steps}", "seeds=8", "metrics.names=['train_loss', 'test_loss', 'l0']"])


def time_batched(cfg, tmp: Path) -> float:
    t0 = time.perf_counter()
    sw = Sweep.create(tmp / "batched", cfg, [("arms.0.schedule.lr", LRS)])
    sw.execute("inprocess", progress=False)
    assert len(sw.index()["jobs"]) == 1
    return time.perf_counter() - t0


def time_processes(cfg, tmp: Path, n_timed: int) -> float:
    """One `sgdlab run` process per (step size, seed), two at a time; scaled to 64 if fewer timed."""
    jobs = []
    for i, lr in enumerate(LRS):
        for s in range(8):
            c = sgdlab.override(cfg, [f"arms.0.schedule.lr={lr}", "seeds=1", f"first_seed={s}"])
            f = tmp / f"p{i}_{s}.toml"
            f.write_text(dump_toml(c))
            jobs.append((f, tmp / f"proc{i}_{s}"))
    jobs = jobs[:n_timed]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def one(job):
        f, out = job
        subprocess.run([sys.executable, "-m", "sgdlab.cli", "run", str(f), "--out", str(out), "--no-progress"],
                       env=env, check=True, stdout=subprocess.DEVNULL)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, jobs))
    return (time.perf_counter() - t0) * 64 / len(jobs)


def time_ray(cfg, tmp: Path) -> float | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return None
    t0 = time.perf_counter()
    sw = Sweep.create(tmp / "ray", cfg, [("arms.0.schedule.lr", LRS), ("first_seed", list(range(8)))],
                      sets=("seeds=1",))
    sw.execute("ray", workers=2, progress=False)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    steps = 20001 if args.quick else 100001
    cfg = base_config(steps)
    sgdlab.run(sgdlab.override(cfg, ["steps=100", "seeds=1"]), progress=False, quiet=True)  # compile once
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t_b = time_batched(cfg, tmp)
        t_p = time_processes(cfg, tmp, 16 if args.quick else 64)
        t_r = time_ray(cfg, tmp)
    print(f"64-run diag-net sweep: 8 step sizes x 8 seeds x {steps} steps, 2 cores")
    print(f"{'method':42s} {'wall s':>8s} {'vs batched':>10s}")
    print(f"{'batched, one process (sgdlab sweep)':42s} {t_b:8.1f} {1.0:9.1f}x")
    print(f"{'one process per run, 2 at a time':42s} {t_p:8.1f} {t_p / t_b:9.1f}x")
    if t_r is None:
        print(f"{'Ray, 2 workers, one task per run':42s} {'(ray not installed)':>19s}")
    else:
        print(f"{'Ray, 2 workers, one task per run':42s} {t_r:8.1f} {t_r / t_b:9.1f}x")
    print(f"target: batched >= 10x faster than one process per run: {'met' if t_p / t_b >= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
