"""The diag-net figure end to end, sgdlab against the authors' style of code, on equal work.

Both sides are whole processes as a user runs them, with the same single-threaded BLAS:

* sgdlab: ``python -m sgdlab run diag-net`` with the figure's four metrics (train and test
  loss, rank phi at the authors' 1e-15, ||u*v||_0 at 1e-50) on the authors' grid of 350
  evaluation steps, writing the run directory and the figure (``benchmarks/_proc.py``);
* reference: ``benchmarks/diag_net_reference.py``: the same data, the same metrics at the same
  steps (rank by a full SVD of phi, as the authors), the same figure, one run after another in
  a NumPy loop. Its cost is linear in the number of runs, so it is timed with K1 and K2 runs
  (``--ref-runs``, default 1 and 3) and fitted as floor + K x per-run; the full experiment's
  time is that line at 33 runs (8 seeds) and 257 runs (64 seeds), not a measurement.

Reported: CPU and wall seconds per process (median [min, max] over ``--repeats``), sgdlab's
fixed floor (the same command with 1 step and 1 seed per arm) and what it is made of (imports,
numba cache load, a cold compile, the figure), the cost of each added run-step, and the ratios
with the issue-13 targets. Ratios use CPU time (a shared machine disturbs it least).

    python benchmarks/diag_net.py             # 100,001 steps, 8 and 64 seeds, 5 repeats (~10 min)
    python benchmarks/diag_net.py --quick     # 20,001 steps, 8 and 16 seeds, 3 repeats
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import (
    ROOT,
    bench_env,
    machine_line,
    med,
    python,
    repeat,
    run_process,
    spread,
    verdict,
)

METRICS = "metrics.names=['train_loss', 'test_loss', 'jacobian_rank', 'l0']"  # the figure's panels
ARMS_WITH_SEEDS = 4  # the GD arm is deterministic: one run whatever the seeds
TARGET_RUN_STEP, TARGET_FLOOR, TARGET_E2E, TARGET_HELP = 50.0, 2.0, 30.0, 0.3


def runs_of(seeds: int) -> int:
    return ARMS_WITH_SEEDS * seeds + 1


def sgdlab_cmd(out: Path, steps: int, seeds: int, points: int, head: int, all_metrics=False) -> list[str]:
    sets = [f"eval.points={points}", f"eval.head={head}"] + ([] if all_metrics else [METRICS])
    args = ["-m", "sgdlab", "run", "diag-net", "--out", str(out), "--overwrite", "--no-progress",
            "--steps", str(steps), "--seeds", str(seeds), "--workers", "1"]  # per core: one process
    for s in sets:
        args += ["--set", s]
    return python(*args)


SNIPPET_KERNEL = """
import json, time, numpy as np
import sgdlab.frontends.cli, sgdlab.workflows.api  # torch and sgdlab: counted in the import line, not here
t0 = time.process_time()
import numba
t1 = time.process_time()
from sgdlab.studies.diag_net._kernel import diag_sgd_chunk
u, v = np.full((1, 3), 0.1), np.zeros((1, 3))
diag_sgd_chunk(u, v, np.ones((2, 3)), np.ones(2), np.zeros((1, 1, 1), dtype=np.int64), False,
               np.full((1, 1), 0.1), 0, np.full(1, -1), np.full(1, np.inf))
print(json.dumps({"numba": t1 - t0, "load": time.process_time() - t1}))
"""
SNIPPET_PLOTS_IMPORT = """
import time
import sgdlab.frontends.cli, sgdlab.workflows.api  # torch and sgdlab: counted in the import line
t0 = time.process_time()
import sgdlab.plots
print(time.process_time() - t0)
"""
SNIPPET_FIGURE = """
import sys, time
from sgdlab.store.runs import RunDir
from sgdlab.plots.panels import plot_panels
rd = RunDir(sys.argv[1])
t0 = time.process_time()
plot_panels(rd)
print(time.process_time() - t0)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,001 steps, 16 seeds for the large run, 3 repeats")
    ap.add_argument("--steps", type=int, help="steps per run (default 100,001; quick 20,001)")
    ap.add_argument("--big-seeds", type=int, help="seeds per arm of the large run (default 64; quick 16)")
    ap.add_argument("--repeats", type=int, help="processes per timed command (default 5; quick 3)")
    ap.add_argument("--ref-runs", type=int, nargs=2, default=(1, 3), metavar=("K1", "K2"),
                    help="reference timed with K1 and K2 runs, fitted as floor + K x per-run")
    ap.add_argument("--eval-points", type=int, default=250, help="authors' grid: evenly spaced points")
    ap.add_argument("--eval-head", type=int, default=100, help="authors' grid: every step below this")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--startup-only", action="store_true",
                    help="only the commands that answer without torch (--help, list, show) and their parts")
    a = ap.parse_args(argv)
    steps = a.steps or (20001 if a.quick else 100001)
    big = a.big_seeds or (16 if a.quick else 64)
    reps = a.repeats or (3 if a.quick else 5)
    k1, k2 = a.ref_runs
    assert 1 <= k1 < k2, "--ref-runs needs 1 <= K1 < K2"
    env = bench_env(a.threads)
    if a.startup_only:
        startup(env, reps)
        return
    pts, head = a.eval_points, a.eval_head
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        cold_env = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba-cold"))
        env = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba"))
        floor_cmd = sgdlab_cmd(tmp / "floor", 1, 1, pts, head)
        small_cmd = sgdlab_cmd(tmp / "small", steps, 8, pts, head)
        cold = run_process(small_cmd, cold_env)  # compiles every kernel (steps, rank) into an empty cache
        run_process(small_cmd, env)  # fills the cache used by every timed sgdlab process
        floor = repeat(floor_cmd, env, reps)
        small = repeat(small_cmd, env, reps)
        large = repeat(sgdlab_cmd(tmp / "large", steps, big, pts, head), env, max(2, reps // 2 + 1))
        allm = repeat(sgdlab_cmd(tmp / "allm", steps, 8, pts, head, all_metrics=True), env, reps)
        ref_cmd = lambda k: python(str(ROOT / "benchmarks" / "diag_net_reference.py"), "--runs", str(k), "--steps",
                                   str(steps), "--points", str(pts), "--head", str(head), "--out",
                                   str(tmp / "ref.png"))
        ref1, ref2 = repeat(ref_cmd(k1), env, reps), repeat(ref_cmd(k2), env, reps)
        imp_torch = repeat(python("-c", "import torch"), env, reps)
        imp_cli = repeat(python("-c", "import sgdlab.frontends.cli, sgdlab.workflows.api"), env, reps)
        kernel = [json.loads(t.stdout) for t in repeat(python("-c", SNIPPET_KERNEL), env, reps)]
        fig = [float(t.stdout) for t in repeat(python("-c", SNIPPET_FIGURE, str(tmp / "small")), env, reps)]
        plots = [float(t.stdout) for t in repeat(python("-c", SNIPPET_PLOTS_IMPORT), env, reps)]
        ref_parts = json.loads(ref2[-1].stdout.strip().splitlines()[-1])

    import numpy as np

    from sgdlab.spec.experiment import EvalConfig

    r_small, r_big = runs_of(8), runs_of(big)
    per_ref = (med(ref2) - med(ref1)) / (k2 - k1)  # CPU s per reference run
    ref_floor = med(ref1) - k1 * per_ref
    ref_at = lambda runs: ref_floor + runs * per_ref
    per_ours = (med(large) - med(small)) / ((r_big - r_small) * steps)  # CPU s per added run-step
    per_ref_step = per_ref / steps
    e2e_small, e2e_big = ref_at(r_small) / med(small), ref_at(r_big) / med(large)

    n_evals = len(EvalConfig("authors", pts, head).steps(steps))  # the grid sgdlab evaluates on
    print(f"diag-net figure, {steps} steps, {n_evals} evaluation steps, metrics: train/test "
          f"loss, rank phi (1e-15), l0 (1e-50); {reps} processes per command")
    print(machine_line(a.threads))
    print(f"\n{'process':58s} {'runs':>5s} {'CPU s median [min, max]':>26s} {'wall s median [min, max]':>26s}")
    rows = [("sgdlab floor: --steps 1 --seeds 1 (cached kernel)", runs_of(1), floor),
            ("sgdlab --seeds 8", r_small, small), (f"sgdlab --seeds {big}", r_big, large),
            ("sgdlab --seeds 8, all 9 metrics (the default run)", r_small, allm),
            (f"reference, {k1} run(s)", k1, ref1), (f"reference, {k2} runs", k2, ref2)]
    for name, n, ts in rows:
        print(f"{name:58s} {n:5d} {spread(ts):>26s} {spread(ts, 'wall'):>26s}")
    print(f"{'sgdlab --seeds 8, first run after install (compiles)':58s} {r_small:5d} "
          f"{cold.cpu:26.2f} {cold.wall:26.2f}")

    print("\nsgdlab's fixed floor (CPU s, medians):")
    print(f"  python + import torch              {med(imp_torch):6.2f}")
    print(f"  python + import sgdlab.frontends.cli, .api   {med(imp_cli):6.2f}   (includes torch)")
    print(f"  import numba                       {float(np.median([k['numba'] for k in kernel])):6.2f}")
    print(f"  load the cached SGD/GD kernel      {float(np.median([k['load'] for k in kernel])):6.2f}")
    print(f"  import sgdlab.plots (matplotlib)   {float(np.median(plots)):6.2f}")
    print(f"  figure (plot_panels, 4 panels)     {float(np.median(fig)):6.2f}")
    parts = med(imp_cli) + float(np.median([k['numba'] + k['load'] for k in kernel]) + np.median(plots) + np.median(fig))
    print(f"  the rest (data, engine, 2 evaluations, run directory, summary)  {med(floor) - parts:6.2f}")
    print(f"  whole floor process                {med(floor):6.2f}")
    print(f"  one-off compile (first run only)   {cold.cpu - med(small):6.2f}   (SGD/GD and rank kernels)")
    print(f"  fixed cost of a full run: intercept of the line through the 8- and {big}-seed runs: "
          f"{med(small) - r_small * per_ours * steps:.2f} (includes evaluation overheads not per run)")
    print(f"reference: floor {ref_floor:.2f} s, {per_ref:.2f} s per run ({per_ref_step * 1e6:.1f} us per run-step; "
          f"of which the SVD rank {ref_parts['svd_s'] / max(ref_parts['runs_s'], 1e-9):.0%} by its own wall clock)")

    print("\ntargets (issue 13), ratios of CPU-time medians:")
    print(f"  added run-step: reference {per_ref_step * 1e6:.2f} us, sgdlab {per_ours * 1e6:.3f} us "
          f"({r_big - r_small} runs added): {per_ref_step / per_ours:.1f}x  [target >= {TARGET_RUN_STEP:g}x: "
          f"{verdict(per_ref_step / per_ours, TARGET_RUN_STEP)}]")
    print(f"  fixed floor of a run: {med(floor):.2f} s  [target <= {TARGET_FLOOR:g} s: "
          f"{verdict(med(floor), TARGET_FLOOR, False, ' s')}]")
    print(f"  end to end, 8 seeds ({r_small} runs): reference {ref_at(r_small):.0f} s (fitted) vs sgdlab "
          f"{med(small):.1f} s: {e2e_small:.1f}x")
    print(f"  end to end, {big} seeds ({r_big} runs): reference {ref_at(r_big):.0f} s (fitted) vs sgdlab "
          f"{med(large):.1f} s: {e2e_big:.1f}x  [target >= {TARGET_E2E:g}x at 64 seeds"
          f"{'' if big == 64 else f'; measured at {big}'}: {verdict(e2e_big, TARGET_E2E)}]")
    startup(env, reps)


def startup(env, reps):
    """The commands that only read configs, as whole processes, and what bounds them."""
    rows = [("python -c pass (interpreter start)", python("-c", "pass")),
            ("python -c 'import numpy'", python("-c", "import numpy")),
            ("python -c 'import sgdlab.frontends.cli'", python("-c", "import sgdlab.frontends.cli")),
            ("sgdlab --help", python("-m", "sgdlab", "--help")),
            ("sgdlab list", python("-m", "sgdlab", "list")),
            ("sgdlab show diag-net", python("-m", "sgdlab", "show", "diag-net"))]
    print(f"\ncommands that answer without torch ({reps} processes each; CPU s median [min, max]):")
    times = {}
    for name, cmd in rows:
        times[name] = ts = repeat(cmd, env, reps)
        print(f"  {name:40s} {spread(ts):>26s}")
    for name in ("sgdlab --help", "sgdlab list", "sgdlab show diag-net"):
        t = med(times[name])
        print(f"  `{name}`: {t:.2f} s  [target < {TARGET_HELP:g} s: {verdict(t, TARGET_HELP, False, ' s')}]")


if __name__ == "__main__":
    main()
