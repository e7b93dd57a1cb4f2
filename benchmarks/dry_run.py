"""How long ``sgdlab sweep ... --dry-run`` takes on the largest grids the limits accept, and on one
they refuse: the whole process as a user waits for it (start-up, imports, planning every point,
printing the plan). Target: under 1 s for any input.

Grids (on ``diag-net``; ``sgdlab.core.limits``: 10,000 values per axis, 10,000 points per grid):

* 10,000 step sizes of one arm: 10,000 points merged into one batched job;
* 100 x 100 step sizes of two arms: 10,000 points, one job;
* 10,000 first seeds: 10,000 points, each its own job (the most jobs a grid can plan);
* 100 first seeds x 100 step sizes: 10,000 points in 100 jobs;
* ``linspace(0.1, 0.3, 3000000)``: refused from its length before anything is computed.

    python benchmarks/dry_run.py                  # median [min, max] of 5 runs each
    python benchmarks/dry_run.py --write-docs     # and writes the table into docs/reliability.md
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import ROOT, bench_env, machine_line, python

DOCS = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- benchmark:dry-run -->", "<!-- /benchmark:dry-run -->"
TARGET_SECONDS = 1.0
GRIDS = {
    "10,000 step sizes of one arm": ["arms.0.schedule.lr=linspace(0.01,0.3,10000)"],
    "100 x 100 step sizes of two arms": ["arms.0.schedule.lr=linspace(0.01,0.3,100)",
                                         "arms.1.schedule.lr=linspace(0.01,0.3,100)"],
    "10,000 first seeds (10,000 jobs)": ["first_seed=linspace(0,9999,10000)"],
    "100 first seeds x 100 step sizes": ["first_seed=linspace(0,99,100)",
                                         "arms.0.schedule.lr=linspace(0.01,0.3,100)"],
    "3,000,000 values (refused)": ["arms.0.schedule.lr=linspace(0.1,0.3,3000000)"],
}


def time_once(grid: list[str]) -> tuple[float, str]:
    args = python("-m", "sgdlab", "sweep", "diag-net", *[a for g in grid for a in ("--grid", g)], "--dry-run")
    t0 = time.perf_counter()
    p = subprocess.run(args, env=bench_env(), capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    last = (p.stdout.strip().splitlines() or p.stderr.strip().splitlines() or ["?"])[-1]
    if p.returncode not in (0, 2):
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, last


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write-docs", action="store_true")
    a = ap.parse_args(argv)
    rows = []
    for name, grid in GRIDS.items():
        walls, answer = [], ""
        for _ in range(a.repeats):
            w, answer = time_once(grid)
            walls.append(w)
        v = np.array(walls)
        verdict = "met" if np.median(v) < TARGET_SECONDS else "NOT met"
        answer = answer if len(answer) < 70 else answer[:67] + "..."
        rows.append(f"| {name} | {np.median(v):.2f} [{v.min():.2f}, {v.max():.2f}] | {verdict} | `{answer}` |")
        print(rows[-1], flush=True)
    table = "\n".join([
        (f"`python benchmarks/dry_run.py` ({machine_line(1)}; median [min, max] of {a.repeats} processes, "
         f"wall seconds; target < {TARGET_SECONDS:g} s):"),
        "",
        "| grid on diag-net | `sgdlab sweep ... --dry-run` | < 1 s | last line printed |",
        "|---|---|---|---|",
        *rows,
    ])
    print(table)
    if a.write_docs:
        text = DOCS.read_text()
        block = f"{BEGIN}\n\n{table}\n\n{END}"
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.DOTALL)
        DOCS.write_text(text)
        print(f"wrote {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
