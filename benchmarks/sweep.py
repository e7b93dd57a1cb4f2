"""A 64-run diag-net sweep (8 step sizes x 8 seeds): one batched sweep against the two ways a
user would otherwise run it, on the same work and the same single core.

* batched: ``sgdlab sweep base.toml -g arms.0.schedule.lr=...`` (one process; the 64 points are
  compatible, so they run as one batched job; writes the sweep directory and its figures);
* a loop of in-process single runs: one Python process calling ``sgdlab.run(cfg)`` 64 times
  (seeds=1, in memory: no run directories, no figures -- the cheapest form of this alternative);
* a process per run: ``sgdlab run single.toml --out DIR`` 64 times, one after another (each pays
  interpreter, torch and sgdlab start-up, kernel cache load and its figure). ``--timed`` of the
  64 processes are timed and the total is scaled to 64 (they do identical work); the table
  says so.

Every process has one BLAS/OpenMP thread (``benchmarks/_proc.py``); ratios are of CPU-time
medians over ``--repeats`` (wall time is printed too). Metrics: train/test loss and ||u*v||_0 on
the authors' grid of 350 evaluation steps.

    python benchmarks/sweep.py             # 100,001 steps, 3 repeats, 8 of the 64 processes timed
    python benchmarks/sweep.py --quick     # 20,001 steps, 3 repeats, 4 processes timed
    python benchmarks/sweep.py --ray       # also Ray with 2 workers, one task per point
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import Timing, bench_env, machine_line, med, python, repeat, spread

LRS = [0.2, 0.2114, 0.2229, 0.2343, 0.2457, 0.2571, 0.2686, 0.28]  # 8 step sizes up to the window's edge
SEEDS = 8

LOOP = """
import sys, sgdlab
cfg = sgdlab.load_experiment(sys.argv[1])
for lr in sys.argv[2].split(","):
    for s in range({seeds}):
        sgdlab.run(sgdlab.override(cfg, [f"arms.0.schedule.lr={{lr}}", "seeds=1", f"first_seed={{s}}"]),
                   progress=False, quiet=True)
"""


def base_config(steps: int, points: int, head: int, seeds: int = SEEDS) -> str:
    import sgdlab
    from sgdlab.core.config import dump_toml

    cfg = sgdlab.load_experiment("diag-net")
    cfg = dataclasses.replace(cfg, arms=cfg.arms[:1])  # SGD, constant step: the step size is swept
    cfg = sgdlab.override(cfg, [f"steps={steps}", f"seeds={seeds}", f"eval.points={points}", f"eval.head={head}",
                                "metrics.names=['train_loss', 'test_loss', 'l0']",
                                "figure=['train_loss', 'test_loss', 'l0']"])
    return dump_toml(cfg)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, help="default 100,001; quick 20,001")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timed", type=int, help="single-run processes timed (default 8; quick 4), scaled to 64")
    ap.add_argument("--eval-points", type=int, default=250)
    ap.add_argument("--eval-head", type=int, default=100)
    ap.add_argument("--ray", action="store_true", help="also time Ray (2 workers, one task per point)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    steps = a.steps or (20001 if a.quick else 100001)
    timed = a.timed or (4 if a.quick else 8)
    reps = a.repeats
    n_points = len(LRS) * SEEDS
    env = bench_env(a.threads)
    lrs = ",".join(str(x) for x in LRS)
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        env = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba"))
        base = tmp / "base.toml"
        base.write_text(base_config(steps, a.eval_points, a.eval_head))
        single = tmp / "single.toml"
        single.write_text(base_config(steps, a.eval_points, a.eval_head, seeds=1))
        sweep_cmd = python("-m", "sgdlab", "sweep", str(base), "-g", f"arms.0.schedule.lr={lrs}", "--out",
                           str(tmp / "sweep"))
        repeat(python("-m", "sgdlab", "run", str(single), "--out", str(tmp / "warm"), "--overwrite",
                      "--no-progress", "--steps", "10"), env, 1)  # fills the kernel cache
        batched = []
        for _ in range(reps):
            batched += repeat(sweep_cmd, env, 1)
            shutil.rmtree(tmp / "sweep")
        loop = repeat(python("-c", LOOP.format(seeds=SEEDS), str(base), lrs), env, reps)
        per_proc = []
        for r in range(reps):
            ts = []
            for i in range(timed):
                lr, s = LRS[i % len(LRS)], i // len(LRS)
                ts += repeat(python("-m", "sgdlab", "run", str(single), "--out", str(tmp / f"p{r}-{i}"),
                                    "--no-progress", "--set", f"arms.0.schedule.lr={lr}", "--first-seed", str(s)),
                             env, 1)
            per_proc.append(Timing(sum(t.wall for t in ts) * n_points / timed,
                                   sum(t.cpu for t in ts) * n_points / timed, ""))
        ray = None
        if a.ray:
            ray = repeat(python("-m", "sgdlab", "sweep", str(base), "-g", f"arms.0.schedule.lr={lrs}",
                                "-g", f"first_seed={','.join(str(s) for s in range(SEEDS))}", "--set", "seeds=1",
                                "--ray", "--workers", "2", "--out", str(tmp / "ray")), env, 1)

    print(f"{n_points}-run diag-net sweep: {len(LRS)} step sizes x {SEEDS} seeds x {steps} steps, metrics train/test "
          f"loss and l0 at {a.eval_points + a.eval_head} evaluation steps; {reps} repeats")
    print(machine_line(a.threads))
    print(f"\n{'method':62s} {'CPU s median [min, max]':>26s} {'wall s':>22s} {'CPU vs batched':>14s}")
    rows = [("batched: one `sgdlab sweep` process", batched),
            (f"loop of {n_points} in-process sgdlab.run calls (one process)", loop),
            (f"a process per run, sequential ({timed} of {n_points} timed, x{n_points / timed:g})", per_proc)]
    for name, ts in rows:
        print(f"{name:62s} {spread(ts):>26s} {spread(ts, 'wall'):>22s} {med(ts) / med(batched):13.1f}x")
    if ray is not None:  # Ray's workers are not children of the timed process: wall time only
        print(f"{'Ray, 2 workers, one task per point (2 cores; wall only)':62s} {'n/a':>26s} "
              f"{spread(ray, 'wall'):>22s} {med(ray, 'wall') / med(batched, 'wall'):12.1f}x wall")
    print(f"\nbatched sweep vs a loop of in-process runs: {med(loop) / med(batched):.1f}x less CPU; "
          f"vs a process per run: {med(per_proc) / med(batched):.1f}x less CPU")


if __name__ == "__main__":
    main()
