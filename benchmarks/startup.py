"""What pausing Python's cycle collector during start-up saves (``sgdlab.core.startup``).

Two measurements, each a fresh process, the two sides taking turns within every repeat:

* ``import torch, numba``: the imports alone, with the collector on (Python's default) and paused;
* ``sgdlab run diag-net --seeds 64 --steps 101``: a short run of the main job, whose wall time is
  mostly start-up (interpreter, imports, the engine and its kernels, the figure), as the command
  runs it (the collector paused around its imports and set-up) and with the pause replaced by a
  no-op before the command is imported; and the seconds the command's process spent in collector
  passes (``gc.callbacks``), which the machine's drift hardly touches.

Medians [min, max] over ``--repeats``, and the median of the paired differences (each repeat's
two sides run back to back, so a drift of the machine's speed reaches both).

    python benchmarks/startup.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from _proc import ROOT, bench_env, machine_line, median_range, python, run_process

IMPORTS = "import time, gc; {pause}t = time.perf_counter(); import torch, numba; print(time.perf_counter() - t)"
# the command as the `sgdlab` script runs it; "off": the pause made a no-op before anything imports it.
# It also adds up the seconds its process spends in collector passes (gc.callbacks), printed at exit.
COMMAND = """
import atexit, contextlib, gc, sys, time
import sgdlab.core.startup as s
{patch}
spent, began = [0.0], [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - began[0]
gc.callbacks.append(timed)
atexit.register(lambda: print("COLLECTOR", spent[0]))
from sgdlab.__main__ import entry
sys.argv[0] = "sgdlab"
entry()
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    env = bench_env()
    print(machine_line(1))
    print(f"load average before: {os.getloadavg()[0]:.1f}; medians [min, max] of {a.repeats} repeats\n")
    imports = {"collector on": [], "collector paused": []}
    runs = {"without the pause": [], "as the command runs (paused)": []}
    passes = {k: [] for k in runs}  # seconds in collector passes, the sgdlab process
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for side, pause in zip(imports, ("", "gc.disable(); ")):
                out = run_process(python("-c", IMPORTS.format(pause=pause)), env, cwd=ROOT).stdout
                imports[side].append(float(out.split()[-1]))
            for side, patch in zip(runs, ("s.collector_paused = lambda freeze=False: contextlib.nullcontext(); ", "")):
                args = ["run", "diag-net", "--seeds", "64", "--steps", "101", "--no-progress",
                        "--out", os.path.join(tmp, f"{i}-{len(runs[side])}-{side[:3]}")]
                t = run_process(python("-c", COMMAND.format(patch=patch), *args), env, cwd=ROOT)
                runs[side].append(t.wall)
                passes[side].append(float(t.stdout.split("COLLECTOR")[-1]))
    print("| measured | seconds | saved by the pause (paired, median [min, max]) |")
    print("|---|---|---|")
    for table in (imports, runs):
        (k0, v0), (k1, v1) = table.items()
        print(f"| {'import torch, numba' if table is imports else 'sgdlab run diag-net --seeds 64 --steps 101'}: "
              f"{k0} | {median_range(v0)} | |")
        print(f"| ... {k1} | {median_range(v1)} | {median_range(np.subtract(v0, v1))} |")
    (k0, v0), (k1, v1) = passes.items()
    print(f"| the same runs' collector passes (the sgdlab process): {k0} | {median_range(v0)} | |")
    print(f"| ... {k1} | {median_range(v1)} | {median_range(np.subtract(v0, v1))} |")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
