"""Shared by the benchmarks: whole processes timed as a user runs them, on pinned threads.

Every timed command is a fresh ``python`` process (interpreter start-up, imports, compilation or
cache loading, work, figures: everything a user waits for). Both sides of a comparison get the
same environment: BLAS / OpenMP pinned to ``threads`` (1 by default, so ratios are per core),
``OMP_WAIT_POLICY=PASSIVE``, ``MPLBACKEND=Agg``, the repository first on ``PYTHONPATH``. Each
timing records wall seconds and the CPU seconds (user + system) of the child process; the
benchmarks report medians over repeats with the [min, max] spread, and base their ratios on CPU
time, which a busy shared machine disturbs far less than wall time (both are printed).
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMBA_NUM_THREADS")


def bench_env(threads: int = 1, **extra: str) -> dict[str, str]:
    """The environment of every timed process (both sides of a comparison). Bytecode is cached
    as Python does by default (a user's second run imports compiled modules), whatever this
    shell says: PYTHONDONTWRITEBYTECODE would have every process compile sgdlab's sources."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({k: str(threads) for k in THREAD_VARS})
    env.update(OMP_WAIT_POLICY="PASSIVE", MPLBACKEND="Agg", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.update(extra)
    return env


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process (and its children)
    stdout: str


def run_process(args: list[str], env: dict[str, str], cwd: Path | None = None) -> Timing:
    """Run one process to completion; raise with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu, p.stdout)


def run_together(commands: list[list[str]], env: dict[str, str], cwd: Path | None = None) -> Timing:
    """Start the processes at once; wall seconds until the last one ends, CPU seconds of them all,
    their standard outputs (in the order of ``commands``, one after the other); raise with the
    stderr of one that fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in commands]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for a, p, (_, err) in zip(commands, procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(a)} failed ({p.returncode}):\n{err[-3000:]}")
    return Timing(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                  "".join(out for out, _ in outs))


def repeat(args: list[str], env: dict[str, str], n: int, cwd: Path | None = None) -> list[Timing]:
    return [run_process(args, env, cwd) for _ in range(n)]


def python(*args: str) -> list[str]:
    return [sys.executable, *args]


def med(ts: list[Timing], what: str = "cpu") -> float:
    return float(np.median([getattr(t, what) for t in ts]))


def median_range(values, fmt: str = ".2f") -> str:
    """'median [min, max]' of ``values``."""
    v = np.asarray(values, dtype=float)
    return f"{np.median(v):{fmt}} [{v.min():{fmt}}, {v.max():{fmt}}]"


def spread(ts: list[Timing], what: str = "cpu", scale: float = 1.0, fmt: str = ".2f") -> str:
    """'median [min, max]' of the timings (times ``scale``)."""
    return median_range(np.array([getattr(t, what) for t in ts]) * scale, fmt)


def verdict(value: float, target: float, higher_is_better: bool = True, unit: str = "x") -> str:
    """'met' or 'NOT met (... short)'."""
    ok = value >= target if higher_is_better else value <= target
    if ok:
        return "met"
    gap = target / value if higher_is_better else value / target
    return f"NOT met: {value:.3g}{unit} vs target {target:g}{unit} ({gap:.2f}x short)"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows: batches
    from machines of other models are not comparable (a second core gives more on some)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line(threads: int) -> str:
    import numpy

    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        load = "load average n/a"
    return (f"{cpu_model()}, {os.cpu_count()} logical cores, {load}; "
            f"python {platform.python_version()}, numpy {numpy.__version__}; "
            f"every timed process: {threads} BLAS/OpenMP thread(s), OMP_WAIT_POLICY=PASSIVE, bytecode cached")
