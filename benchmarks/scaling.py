"""Scaling over cores: wall and CPU time of one experiment spread over 1, 2, ... processes
(``--workers``), and what torch threads do to the same batched paths.

Workloads, each a whole process as a user runs it (``benchmarks/_proc.py``):

* ``diag-net``: ``sgdlab run diag-net --seeds 64 --workers k`` (the main job: 4 SGD arms x 64
  seeds + GD = 257 runs, 100,001 steps, all metrics at 350 evaluation steps, run directory and
  figure; the fused numba path);
* ``relu sweep``: ``sgdlab sweep relu-teacher-student --grid arms.0.schedule.lr=... --seeds 16
  --executor pool --workers k`` (one merged job of 112 runs on the torch path; its animation is
  left out: ``extra_figures=[]``).

For k = 1 .. the machine's cores: median over ``--repeats`` (>= 5) of wall and CPU seconds
[min, max], the wall speed-up against k = 1, and whether the run directory's metrics.jsonl is
byte-identical to k = 1's. For the main job, a reference doing the same work with no sharding:
its seeds split by hand into k independent ``sgdlab run diag-net --workers 1 --first-seed ...``
processes started together (k run directories, k figures), which shows what this machine's
cores give independent processes (shared caches, memory and clock) apart from what sharding
costs. Then the second core's yield: the main job's training alone (``Engine.run``, timed after
the engine is built and its kernels loaded), all seeds in one process against half of them in
each of two processes side by side: what this machine's second core gives that training with
nothing serial around it. Then the threads rows: the same
batched job in one process (``sgdlab.engine.train.train``, no files) with torch on 1, 2, ...
threads (the rule of ``sgdlab.workflows.cores``: threads stay off where they do not help).
Every row takes its turn within each repeat, the process counts in reverse order every other
repeat, so a drift of the machine's speed over minutes (shared virtual machines drift) reaches
them alike and favours none by its place in the order; the median load average before their
runs is printed (numbers from a busy machine say little).

    python benchmarks/scaling.py                      # prints the tables
    python benchmarks/scaling.py --write-docs         # and writes them into docs/sweeps.md
    python benchmarks/scaling.py --quick              # 20,001 steps, 5 repeats
    python benchmarks/scaling.py --only diag-net --lean --repeats 16   # the target's rows only
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from _proc import (
    ROOT,
    Timing,
    bench_env,
    machine_line,
    med,
    median_range,
    python,
    repeat,
    run_process,
    run_together,
    spread,
)

DOCS = ROOT / "docs" / "sweeps.md"
BEGIN, END = "<!-- benchmark:scaling -->", "<!-- /benchmark:scaling -->"
RELU_LRS = "0.1,0.13,0.16,0.2"
# The bundled experiment behind each workload (its config's steps are the default).
EXPERIMENTS = {"diag-net": "diag-net", "relu sweep": "relu-teacher-student"}
# Each workload as the header says it.
DESCRIBE = {"diag-net": "diag-net {seeds} seeds ({steps} steps)",
            "relu sweep": "relu-teacher-student sweep over 4 step sizes x {seeds} seeds ({steps} steps)"}
# Targets: 2 processes on the 64-seed main job; 16 processes (a workstation) on the same job.
TARGET_2, TARGET_16 = 1.7, 12.0

THREADS = """
import sys, torch, sgdlab
from sgdlab.workflows.sweep import plan
from sgdlab.engine.train import train
kind, n, steps, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
before = torch.get_num_threads()
torch.set_num_threads(n)
if kind == "diag-net":
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), [f"steps={{steps}}", f"seeds={{seeds}}"])
else:
    base = sgdlab.override(sgdlab.load_experiment("relu-teacher-student"), [f"steps={{steps}}", f"seeds={{seeds}}"])
    cfg = plan(base, [("arms.0.schedule.lr", [{lrs}])])[1][0].config
train(cfg)
torch.set_num_threads(before)
"""

# The main job's training alone, in one process: the engine built and its kernels loaded first
# (Engine.check_names, as the command's checks do), then only Engine.run timed; prints its seconds.
TRAINING = """
import sys, time, sgdlab
from sgdlab.engine.train import Engine
steps, seeds, first = map(int, sys.argv[1:4])
eng = Engine(sgdlab.override(sgdlab.load_experiment("diag-net"),
                             [f"steps={steps}", f"seeds={seeds}", f"first_seed={first}"]))
eng.check_names()
state = eng.initial_state()
t0 = time.perf_counter()
eng.run(state)
print(time.perf_counter() - t0)
"""


def commands(kind: str, k: int, out: Path, steps: int | None, seeds: int) -> list[str]:
    extra = ["--steps", str(steps)] if steps else []
    if kind == "diag-net":
        return python("-m", "sgdlab", "run", "diag-net", "--seeds", str(seeds), "--workers", str(k),
                      "--no-progress", "--out", str(out), *extra)
    sets = ["--set", "extra_figures=[]"] + (["--set", f"steps={steps}"] if steps else [])
    return python("-m", "sgdlab", "sweep", "relu-teacher-student", "--grid", f"arms.0.schedule.lr={RELU_LRS}",
                  "--seeds", str(seeds), "--executor", "pool", "--workers", str(k), "--out", str(out), *sets)


def metrics_file(kind: str, out: Path) -> Path:
    return out / "metrics.jsonl" if kind == "diag-net" else out / "jobs" / "job-0000" / "metrics.jsonl"


def processes_used(kind: str, out: Path) -> int:
    """The processes the run (the sweep's job) recorded in meta.json: fewer than asked where the
    results would not be identical (sgdlab.workflows.cores)."""
    meta = json.loads((metrics_file(kind, out).parent / "meta.json").read_text())
    return int(meta.get("workers", 1))


def measure(kind: str, cores: list[int], reps: int, steps, seeds: int, env, tmp: Path,
            by_hand: bool = False, after_repeat: Callable[[], None] = lambda: None) -> tuple[list[tuple], list[tuple]]:
    """Each process count's timings and, with ``by_hand``, the reference's (module doc);
    ``after_repeat`` measures the rest of the workload's rows once per repeat. The configurations
    take turns within each repeat, in reverse order every other repeat, so a drift of the
    machine's speed over the minutes of the benchmark reaches every one of them alike."""
    ts = {k: [] for k in cores}
    loads = {k: [] for k in cores}
    same = dict.fromkeys(cores, True)
    used = dict.fromkeys(cores, 1)
    split = {k: [seeds // k + (i < seeds % k) for i in range(k)] for k in cores if by_hand and k > 1}
    hand = {k: [] for k in split}
    hand_loads = {k: [] for k in split}
    for r in range(reps):
        for k in cores if r % 2 == 0 else cores[::-1]:
            out = tmp / f"{kind}-{k}-{r}"
            loads[k].append(os.getloadavg()[0])
            ts[k] += repeat(commands(kind, k, out, steps, seeds), env, 1)
            same[k] &= filecmp.cmp(metrics_file(kind, tmp / f"{kind}-1-0"), metrics_file(kind, out), shallow=False)
            used[k] = processes_used(kind, out)
            if r:
                shutil.rmtree(out)
            if k in split:  # the same seeds over k independent one-process runs started together
                sizes = split[k]
                outs = [tmp / f"hand-{k}-{r}-{i}" for i in range(k)]
                hand_loads[k].append(os.getloadavg()[0])
                hand[k].append(run_together([commands(kind, 1, o, steps, n) + ["--first-seed", str(sum(sizes[:i]))]
                                             for i, (o, n) in enumerate(zip(outs, sizes))], env))
                for o in outs:
                    shutil.rmtree(o)
        after_repeat()
    rows = [(k, ts[k], same[k], f"{np.median(loads[k]):.1f}", used[k]) for k in cores]
    return rows, [(k, split[k], hand[k], f"{np.median(hand_loads[k]):.1f}") for k in split]


def default_steps(kind: str) -> int:
    """The steps of the workload's bundled config (what the command runs without --steps)."""
    from sgdlab import load_experiment

    return load_experiment(EXPERIMENTS[kind]).steps


def yield_once(steps: int, seeds: int, env) -> tuple[float, float, float]:
    """What the machine's second core gives the main job's training with nothing serial around it
    (no start-up, files or figure): the training of all ``seeds`` in one process alone, then the
    same seeds split in two halves trained by two processes side by side (the slower half's
    seconds), and the load before."""
    half = [seeds // 2 + seeds % 2, seeds // 2]
    ld = os.getloadavg()[0]
    alone = float(run_process(python("-c", TRAINING, str(steps), str(seeds), "0"), env).stdout)
    both = run_together([python("-c", TRAINING, str(steps), str(n), str(first))
                         for n, first in zip(half, (0, half[0]))], env).stdout.split()
    return alone, max(map(float, both)), ld


def threads_once(kind: str, k: int, steps: int, seeds: int, env) -> Timing:
    """The batched job in one process with torch on ``k`` threads."""
    return run_process(python("-c", THREADS.format(lrs=RELU_LRS), kind, str(k), str(steps), str(seeds)), env)


def table(results: dict, threads: dict, hand: list, reps: int, header: str, pair: list | None,
          command: str) -> str:
    """The report of :func:`main`; ``command``: the command line that made it, named in its footer."""
    lines = [header, "",
             "| workload | processes | wall s | CPU s | wall speed-up | metrics.jsonl identical to 1 process | load |",
             "|---|---|---|---|---|---|---|"]
    for kind, rows in results.items():
        base = med(rows[0][1], "wall")
        for k, ts, same, ld, used in rows:
            lines.append(f"| {kind} | {k if used == k else f'{k} asked, {used} used'} | {spread(ts, 'wall')} | {spread(ts)} | {base / med(ts, 'wall'):.2f}x | "
                         f"{'yes' if same else '**no**'} | {ld} |")
    diag = results.get("diag-net")
    if hand and diag:
        base = med(diag[0][1], "wall")
        lines += ["", ("| reference: the diag-net seeds split by hand, started together | processes | wall s | CPU s | "
                       "wall speed-up vs 1 process | sharded run's wall / this | load |"), "|---|---|---|---|---|---|---|"]
        for k, sizes, ts, ld in hand:
            sharded = next((med(r[1], "wall") for r in diag if r[0] == k), float("nan"))
            lines.append(f"| {' + '.join(map(str, sizes))} seeds | {k} | {spread(ts, 'wall')} | {spread(ts)} | "
                         f"{base / med(ts, 'wall'):.2f}x | {sharded / med(ts, 'wall'):.2f} | {ld} |")
    if pair and diag:
        alone, side, lds = (np.array([p[i] for p in pair]) for i in (0, 1, 2))
        lines += ["", ("| the main job's training alone (no start-up, files or figure) | seconds | "
                       "speed-up against the first row | load |"), "|---|---|---|---|",
                  f"| all seeds in 1 process | {median_range(alone)} | | {np.median(lds):.1f} |",
                  (f"| half the seeds in each of 2 processes side by side (the slower): the second core's yield | "
                   f"{median_range(side)} | {median_range(alone / side)}x | |")]
    if threads:
        lines += ["", "| batched job in one process | torch threads | wall s | CPU s | wall vs 1 thread | load |",
                  "|---|---|---|---|---|---|"]
    for kind, rows in threads.items():
        base = med(rows[0][1], "wall")
        for k, ts, ld in rows:
            lines.append(f"| {kind} | {k} | {spread(ts, 'wall')} | {spread(ts)} | {base / med(ts, 'wall'):.2f}x | {ld} |")
    lines.append("")
    if any(r[4] < r[0] for rows in results.values() for r in rows):
        from sgdlab.workflows.cores import blas_batch_invariance

        lines.append(f"Fewer processes used than asked: {blas_batch_invariance() or 'see the run'}; runs off the "
                     f"diagonal net's kernels then stay in one process, which keeps their results identical.")
    if diag and len(diag) > 1:
        s2 = med(diag[0][1], "wall") / med(diag[1][1], "wall")
        # the runs of one repeat ran a minute apart at most: their ratio is the least touched by drift
        within = np.array([a.wall / b.wall for a, b in zip(diag[0][1], diag[1][1])])
        met = s2 >= TARGET_2 and np.median(within) >= TARGET_2 and diag[1][2]
        lines.append(f"Target, 2 processes on the 64-seed main job: >= {TARGET_2}x wall with identical outputs: "
                     f"{s2:.2f}x, {'met' if met else 'NOT met'} (ratio of the medians; the ratios within each "
                     f"repeat: {median_range(within)}, quartiles {np.percentile(within, 25):.2f} and "
                     f"{np.percentile(within, 75):.2f}, {int(np.sum(within >= TARGET_2))} of {len(within)} "
                     f"at least {TARGET_2}x; met where both medians are).")
    big = [r for r in diag or [] if r[0] >= 16]
    if big:
        s16 = med(diag[0][1], "wall") / med(big[0][1], "wall")
        lines.append(f"Target, 16 processes: >= {TARGET_16:g}x: {s16:.2f}x, {'met' if s16 >= TARGET_16 else 'NOT met'}.")
    else:
        lines.append(f"Target, 16 processes: >= {TARGET_16:g}x: not measured (this machine has fewer cores).")
    lines.append(f"Medians [min, max] of {reps} repeat(s); `{command}`.")
    return "\n".join(lines)


def write_docs(text: str, path: Path) -> None:
    page = path.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} block to fill")
    new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n\n{text}\n\n{END}", page, flags=re.DOTALL)
    path.write_text(new)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20,001 steps (relu: 4,001)")
    ap.add_argument("--steps", type=int, help="override the steps of both workloads")
    ap.add_argument("--repeats", type=int, default=5, help="repeats of every row (the docs' block: >= 5)")
    ap.add_argument("--cores", type=int, help="up to this many processes (default: the machine's cores)")
    ap.add_argument("--seeds", type=int, default=64, help="diag-net seeds (relu: a quarter of it)")
    ap.add_argument("--only", choices=["diag-net", "relu sweep"], help="one workload")
    ap.add_argument("--lean", action="store_true",
                    help="only the commands' rows (no reference, yield or threads rows): more repeats in the same time")
    ap.add_argument("--write-docs", action="store_true", help=f"write the tables into {DOCS.relative_to(ROOT)}")
    ap.add_argument("--docs", type=Path, default=DOCS, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.write_docs and a.docs == DOCS and (a.only or a.steps or a.quick or a.lean or a.repeats < 5):
        ap.error(f"--write-docs writes {DOCS.relative_to(ROOT)}: both workloads at their configs' steps, "
                 f">= 5 repeats, every row (no --only, --steps, --quick or --lean)")
    from sgdlab.workflows.cores import machine_workers

    top = a.cores or machine_workers()[0]
    cores = sorted({1, 2, *range(4, top + 1, 4), top} & set(range(1, top + 1)))
    kinds = [a.only] if a.only else ["diag-net", "relu sweep"]
    steps = {k: a.steps or ((20001 if k == "diag-net" else 4001) if a.quick else None) for k in kinds}
    seeds = {"diag-net": a.seeds, "relu sweep": max(1, a.seeds // 4)}
    ran = {k: steps[k] or default_steps(k) for k in kinds}  # steps, the configs' where not set
    env = bench_env(1)
    results, threads, hand, pair = {}, {}, [], []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        env = dict(env, NUMBA_CACHE_DIR=str(tmp / "numba"))
        repeat(python("-m", "sgdlab", "run", "diag-net", "--steps", "10", "--seeds", "1", "--no-progress",
                      "--out", str(tmp / "warm")), env, 1)  # fills the kernel cache
        for kind in kinds:
            thr = {k: [] for k in cores}
            thr_loads = {k: [] for k in cores}

            def rest(kind=kind, thr=thr, thr_loads=thr_loads):  # the yield and threads rows, each repeat
                if kind == "diag-net" and 2 in cores:
                    pair.append(yield_once(ran[kind], seeds[kind], env))
                for k in cores:
                    thr_loads[k].append(os.getloadavg()[0])
                    thr[k].append(threads_once(kind, k, ran[kind], seeds[kind], env))

            results[kind], got = measure(kind, cores, a.repeats, steps[kind], seeds[kind], env, tmp,
                                         by_hand=kind == "diag-net" and not a.lean,
                                         after_repeat=(lambda: None) if a.lean else rest)
            hand = hand or got
            if not a.lean:
                threads[kind] = [(k, thr[k], f"{np.median(thr_loads[k]):.1f}") for k in cores]
    said = ", ".join(DESCRIBE[k].format(seeds=seeds[k], steps=ran[k]) for k in kinds)
    header = (f"Measured by `python benchmarks/scaling.py`: {said}. Load: the "
              f"median 1-minute load average before each run; every row takes its turn within each repeat (the process counts in reverse order every other repeat). "
              f"{machine_line(1)}.")
    text = table(results, threads, hand, a.repeats, header, pair,
                 " ".join(["python benchmarks/scaling.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]))
    print(text)
    if a.write_docs:
        write_docs(text, a.docs)
        print(f"wrote {a.docs}")


if __name__ == "__main__":
    main()
