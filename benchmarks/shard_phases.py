"""Where the wall time of ``sgdlab run diag-net --seeds 64`` goes, on 1 and on 2 processes: what
stays serial (start-up and imports, each process loading its compiled kernels in the first
evaluation steps, drawing the figure, exit) and what is spread (the rest of the training), and
the speed-up that this split allows on P processes at most (Amdahl's law: S + W / P).

Each measurement is a fresh process running the ``sgdlab`` command in-process with time stamps
around its phases (``workflows.api.preflight``, ``_spread`` = the training, ``draw_figures``);
for 2 processes also the seconds the ``sgdlab`` process waited on its worker. As in the
command, the plotter process (``sgdlab.workflows.plotter``) is forked before torch is imported
and draws the figure (``--no-plotter``: the ``sgdlab`` process draws it, importing matplotlib
then). Medians over ``--repeats`` [min, max]; the load average is printed. This explains the
speed-up that ``benchmarks/scaling.py`` measures (docs/sweeps.md).

    python benchmarks/shard_phases.py [--repeats 3] [--steps N] [--no-plotter]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from _proc import ROOT, bench_env, machine_line, median_range
from scaling import TARGET_2, TARGET_16

WIDE = 16  # the wide machine of benchmarks/scaling.py's target: TARGET_16 times on WIDE processes

CHILD = r"""
import json, os, sys, time
stamps = {"python": time.monotonic()}
# as the sgdlab command does: the plotter process starts before torch is imported, and the
# command is handed that one (the timing wrappers below need torch's modules imported)
from sgdlab.workflows.plotter import Plotter
plotter = Plotter.start() if sys.argv[1] == "plotter" else None
del sys.argv[1]
Plotter.start = classmethod(lambda cls: plotter)
# as the command does (sgdlab.frontends.cli_common.workflows_api): torch imported with the cycle
# collector paused, what is alive then frozen out of later passes
from sgdlab.core.startup import collector_paused
with collector_paused(freeze=True):
    import torch, sgdlab
    from sgdlab.frontends.cli import main
    from sgdlab.frontends.cli_common import CommandProcess
    from sgdlab.workflows import api, shards
stamps["imported"] = time.monotonic()

def timed(mod, name):
    fn = getattr(mod, name)
    def wrapper(*a, **k):
        stamps.setdefault(name + ">", time.monotonic())
        try:
            return fn(*a, **k)
        finally:
            stamps[name + "<"] = time.monotonic()
    setattr(mod, name, wrapper)

for name in ("preflight", "_spread", "draw_figures"):
    timed(api, name)
# set-up inside the training: the first two evaluation steps (0 and 1), where every process
# loads its compiled kernels; stamped when the second step's rows reach the writer
from sgdlab.engine.train import Engine
def stamp_second_step(cls):
    fn = cls.run
    def wrapper(self, state, on_eval=None, *a, **k):
        seen = [0]
        def counted(t, metrics):
            seen[0] += 1
            if seen[0] == 2:
                stamps.setdefault("set-up<", time.monotonic())
            if on_eval is not None:
                on_eval(t, metrics)
        return fn(self, state, counted, *a, **k)
    cls.run = wrapper
stamp_second_step(Engine)
stamp_second_step(shards.ShardedEngine)
# per process: seconds advancing and evaluating after its first 2 evaluation steps (the work
# that spreads); a worker prints its own when it stops
compute = {"seconds": 0.0, "evaluations": 0}
def computing(name):
    fn = getattr(Engine, name)
    def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            if compute["evaluations"] >= 2:
                compute["seconds"] += time.perf_counter() - t0
            if name == "evaluate":
                compute["evaluations"] += 1
    setattr(Engine, name, wrapper)
computing("advance_to")
computing("evaluate")
serve = shards.serve
def serving(*a, **k):
    compute.update(seconds=0.0, evaluations=0)
    try:
        return serve(*a, **k)
    finally:
        print("COMPUTE " + json.dumps(compute["seconds"]), flush=True)
shards.serve = serving
waited = []
# per stretch between two cuts of the pieces: its wall seconds, the sgdlab process's advancing and
# evaluating, its other work (writing the rows), the slowest worker's advancing and evaluating;
# and the seconds the cuts themselves took
periods, recut = [], [0.0]
run = shards.ShardedEngine.run
def running(self, *a, **k):
    total = [0.0]
    rebalance = self._rebalance
    def counted(state):
        b = self.busy
        total[0] += b.waited
        wall = time.perf_counter() - b.since
        periods.append([wall, b.seconds[0], wall - b.waited - b.seconds[0], max(b.seconds[1:])])
        t0 = time.perf_counter()
        try:
            return rebalance(state)
        finally:
            recut[0] += time.perf_counter() - t0
    self._rebalance = counted
    try:
        return run(self, *a, **k)
    finally:
        waited.append(total[0] + self.busy.waited)
shards.ShardedEngine.run = running
try:
    main(sys.argv[1:], obj=CommandProcess())
except SystemExit:
    pass
stamps["end"] = time.monotonic()
print("PHASES " + json.dumps({"stamps": stamps, "waited": waited[-1] if waited else 0.0,
                              "compute": compute["seconds"], "periods": periods, "recut": recut[0]}))
import gc
gc.freeze()  # as the sgdlab command does at exit (sgdlab.__main__.entry)
"""


def phases(stamps: dict, started: float) -> dict[str, float]:
    """Seconds of each phase from the child's stamps; ``started``: the child's launch."""
    return {
        "start-up (interpreter, imports, config, data)": stamps["_spread>"] - started,
        "training: first 2 evaluation steps (each process loads its kernels)": stamps["set-up<"] - stamps["_spread>"],
        "training: the rest": stamps["_spread<"] - stamps["set-up<"],
        "figure": stamps["draw_figures<"] - stamps["draw_figures>"],
        "summary, table, exit": stamps["end"] - stamps["draw_figures<"],
    }


def one(workers: int, steps: int | None, plotter: bool = True) -> tuple[dict[str, float], float, float, float, dict]:
    """One run's phases, the seconds the caller waited on its workers, the whole wall time, the
    seconds of advancing and evaluating after the first 2 steps summed over the processes, and
    the stretches between cuts of the pieces (``periods``: wall, the caller's compute, its
    writing, the slowest worker's compute; ``recut``: seconds the cuts took)."""
    import time

    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-c", CHILD, "plotter" if plotter else "no-plotter", "run", "diag-net", "--seeds",
                "64", "--workers", str(workers), "--no-progress", "--out", os.path.join(tmp, "run"),
                *(["--steps", str(steps)] if steps else [])]
        t0 = time.monotonic()
        out = subprocess.run(args, env=bench_env(), capture_output=True, text=True, cwd=ROOT, check=True)
        wall = time.monotonic() - t0
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("PHASES "))
    got = json.loads(line[len("PHASES "):])
    ph = phases(got["stamps"], t0)
    ph["summary, table, exit"] = wall - sum(v for k, v in ph.items() if k != "summary, table, exit")
    workers_compute = [json.loads(ln[len("COMPUTE "):]) for ln in out.stdout.splitlines() if ln.startswith("COMPUTE ")]
    return ph, got["waited"], wall, got["compute"] + sum(workers_compute), got


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--no-plotter", action="store_true",
                    help="the figure drawn by the sgdlab process itself, as where its plotter does not start")
    a = ap.parse_args(argv)
    print(machine_line(1))
    print(f"load average before: {os.getloadavg()[0]:.1f}; medians [min, max] of {a.repeats} processes; "
          f"sgdlab run diag-net --seeds 64 --workers k{f' --steps {a.steps}' if a.steps else ''}\n")
    print("| phase | 1 process s | 2 processes s |")
    print("|---|---|---|")
    got = {k: [one(k, a.steps, not a.no_plotter) for _ in range(a.repeats)] for k in (1, 2)}
    for name in got[1][0][0]:
        print(f"| {name} | {median_range([r[0][name] for r in got[1]])} | {median_range([r[0][name] for r in got[2]])} |")
    print(f"| whole process | {median_range([r[2] for r in got[1]])} | {median_range([r[2] for r in got[2]])} |")
    print(f"\nof the 2-process training, the sgdlab process waited on its worker "
          f"{median_range([r[1] for r in got[2]])} s")
    print(f"advancing and evaluating after the first 2 evaluation steps, summed over the processes: "
          f"{median_range([r[3] for r in got[1]])} s on 1 process, {median_range([r[3] for r in got[2]])} s on 2")
    print(balance([r[4] for r in got[2]]))
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    print(bounds([r[0] for r in got[1]], [r[2] for r in got[1]]))


def balance(runs: list[dict]) -> str:
    """How the 2-process runs' pieces kept level between cuts: per stretch, the sgdlab process's
    work (its piece and its writing) less the worker's, as a share of the stretch's wall time;
    and how often that imbalance changed sign from one stretch to the next (a cut that misses by
    a bias keeps its sign; the cores' speed changing under the pieces flips it about half the
    time)."""
    shares, flips, pairs, cuts, secs = [], 0, 0, [], []
    for r in runs:
        net = [(p[1] + p[2] - p[3]) / p[0] for p in r["periods"][1:]]  # the first holds the set-up
        shares += [abs(x) for x in net]
        flips += sum(a * b < 0 for a, b in itertools.pairwise(net))
        pairs += max(0, len(net) - 1)
        cuts.append(len(r["periods"]))
        secs.append(r["recut"])
    if not shares:
        return "the pieces were never cut again (no stretch to compare)"
    return (f"cuts of the pieces per 2-process run: {median_range(cuts, '.0f')}, taking {median_range(secs)} s in all; "
            f"between cuts, |the sgdlab process's work - the worker's| / the stretch: "
            f"{median_range(np.array(shares) * 100, '.1f')} %, its sign flipping in {flips} of {pairs} consecutive stretches")


def bounds(ph: list[dict[str, float]], wall: list[float]) -> str:
    """Amdahl's bound from the 1-process phases: everything but the training's rest happens in
    full on any number of processes (each process starts, imports and loads its kernels itself;
    one draws and exits), so P processes take at least S + W / P."""
    rest = float(np.median([p["training: the rest"] for p in ph]))
    whole = float(np.median(wall))
    serial = whole - rest
    head = (f"Amdahl's bound (medians of the 1-process runs): serial S = {serial:.2f} s "
            f"(all but the training's rest), spreadable W = {rest:.2f} s, whole {whole:.2f} s")
    lines = [head]
    for p in (2, WIDE):
        lines.append(f"  {p} processes: at most {whole / (serial + rest / p):.2f}x, even with W split perfectly")
    # the 2-process target: S + W / y <= (S + W) / X, i.e. the second core's yield y >= W / ((S + W) / X - S)
    room = whole / TARGET_2 - serial
    lines.append(f"  {TARGET_2:g}x on 2 processes needs them to train W at least {rest / room:.2f} times as fast as one "
                 f"process (the second core's yield, which benchmarks/scaling.py measures)" if room > 0 else
                 f"  {TARGET_2:g}x on 2 processes: out of reach, S alone is longer than the whole / {TARGET_2:g}")
    # the issue's 16-process target: S + W'/P <= (S + W')/X, i.e. W' >= S (1 - 1/X) / (1/X - 1/P)
    factor = (1 - 1 / TARGET_16) / (1 / TARGET_16 - 1 / WIDE)
    need = factor * serial
    lines.append(f"  {TARGET_16:g}x on {WIDE} processes needs W >= {factor:.0f} S = {need:.0f} s of spreadable "
                 f"training, {need / rest:.1f}x this job's")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
