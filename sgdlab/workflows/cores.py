"""How many processes and threads one experiment uses: this machine's cores and the rule per path.

The rule (docs/sweeps.md, "Using every core"; ``benchmarks/scaling.py`` measures both sides):

* **Toy models** (diagonal nets, two-layer and ReLU MLPs, linear models: every model config
  whose ``threaded`` is False) run their batched step and metrics on small tensors, where torch /
  BLAS / OpenMP threads cost more than they give: on an idle 2-core machine
  ``sgdlab --threads 2 run diag-net --seeds 64 --steps 20001`` took 34.8 s wall and 36 s CPU
  against 14.1 s and 12 s on one thread, when threads still applied here (the numba kernel is single-threaded; the threads only
  slice the small metric tensors). They run on **one thread per process**, so ``--threads`` never
  slows them down, and their runs are spread over processes instead (``workers``,
  ``sgdlab.workflows.shards``): results are identical for any split.
* **Deep nets** (``deep_net``: large convolutions per run) use torch's intra-op threads
  (``--threads``), in one process.
* A run on a GPU (``device`` other than ``cpu``) is one process: the device does the work.
* More than one process only where the results stay those of one process: a run whose numbers
  could depend on the runs sharing its BLAS products (anything but the diagonal net's per-run
  kernels: ``Engine.batch_invariant``) needs MKL in strict mode and the BLAS to pass
  :func:`blas_batch_invariance`; otherwise it stays in one process and the reason is printed.

``threads`` is therefore never applied where it slows a run down; ``workers`` defaults to the
physical cores this process may run on, capped by its CPU quota (a container's ``--cpus``, a
Kubernetes CPU limit, systemd's ``CPUQuota``: :func:`cpu_quota`) and by the number of runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYS_CPU = Path("/sys/devices/system/cpu")
# Where the control groups are mounted, and this process's groups (one line per hierarchy:
# "0::/path" for cgroup v2, "N:cpu,cpuacct:/path" for v1's CPU controller).
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# MKL's conditional-numerical-reproducibility mode bits: all settings, and "strict" (results that
# do not depend on memory alignment; the sgdlab command sets MKL_CBWR=AUTO,STRICT).
MKL_CBWR_ALL, MKL_CBWR_STRICT = -1, 0x10000


def usable_cpus() -> set[int]:
    """Logical CPUs this process may run on (its affinity mask; all of them where unknown)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores() -> int:
    """Physical cores among the usable CPUs (hyper-threads of one core count once): distinct
    (package, core) pairs from sysfs, else the number of usable CPUs."""
    cpus = usable_cpus()
    cores = set()
    for c in cpus:
        topo = SYS_CPU / f"cpu{c}" / "topology"
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


def cpu_quota(root: Path = CGROUP_ROOT, proc: Path = PROC_CGROUP) -> float | None:
    """CPUs' worth of time per second this process's control group may use, or None without a
    limit: the smallest quota / period of its group and the groups above it, from cgroup v2's
    ``cpu.max`` ("200000 100000": 2 CPUs; "max 100000": none) or v1's ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` (quota -1: none). A container started with ``--cpus 2`` sees every
    core of its host in its affinity mask, but the kernel runs its processes only 2 CPUs' worth
    of time per period: more processes than that take turns, and a sharded run waits for the
    slowest at every step."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":  # cgroup v2: one hierarchy
            for d in _up_from(root, path):
                quotas.append(_v2_quota(d / "cpu.max"))
        elif "cpu" in controllers.split(","):  # cgroup v1: the CPU controller's hierarchy
            mount = next((m for m in (root / controllers, root / "cpu,cpuacct", root / "cpu") if m.is_dir()), None)
            for d in _up_from(mount, path) if mount is not None else ():
                quotas.append(_v1_quota(d / "cpu.cfs_quota_us", d / "cpu.cfs_period_us"))
    quotas = [q for q in quotas if q is not None]
    return min(quotas) if quotas else None


def _up_from(mount: Path, path: str) -> list[Path]:
    """The directories of the group at ``path`` under ``mount`` and of the groups above it, up to
    the mount (inside a container the mount is its own group, and ``path`` the host's name of it)."""
    parts = [p for p in path.strip().split("/") if p and p != ".."]
    dirs = [mount.joinpath(*parts[:k]) for k in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def _v2_quota(f: Path) -> float | None:
    try:
        quota, period = f.read_text().split()[:2]
    except (OSError, ValueError):  # no such file (the root group), or not two fields
        return None
    return None if quota == "max" else _ratio(quota, period)


def _v1_quota(quota_file: Path, period_file: Path) -> float | None:
    try:
        return _ratio(quota_file.read_text(), period_file.read_text())
    except OSError:
        return None


def _ratio(quota: str, period: str) -> float | None:
    """quota / period in CPUs; None for no limit (-1) or what is not two positive integers."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def quota_cpus(quota: float | None) -> int | None:
    """Whole CPUs a CPU quota (:func:`cpu_quota`) allows, at least 1 (a fraction left over is not
    a CPU: 2.5 gives 2; quota and period are integers, so a whole number of CPUs divides exactly);
    None without a quota."""
    return None if quota is None else max(1, math.floor(quota))


def available_cpus() -> int:
    """CPUs this process can keep busy at once: its usable CPUs (:func:`usable_cpus`), capped by
    :func:`quota_cpus`."""
    n, q = len(usable_cpus()), quota_cpus(cpu_quota())
    return n if q is None else min(n, q)


def machine_workers() -> tuple[int, str]:
    """The processes one experiment spreads over by default: the physical cores this process
    may run on (:func:`physical_cores`), capped by :func:`quota_cpus`; and why, in words."""
    cores, q = physical_cores(), cpu_quota()  # the quota read once: the reason names the one used
    n = quota_cpus(q)
    if n is not None and n < cores:
        return n, f"a CPU quota of {q:g} CPU(s) on this process's control group, {cores} physical core(s) usable"
    return cores, f"{cores} physical core(s) usable"


def threaded(cfg) -> bool:
    """Does this experiment's batched path gain from intra-op threads? (``ModelConfig.threaded``)"""
    return bool(getattr(type(cfg.model), "threaded", False))


def blas_reproducible() -> bool:
    """Do torch's BLAS results not depend on the memory alignment of a run's row? False only for
    MKL without strict reproducibility (MKL was initialised before the ``sgdlab`` command set
    ``MKL_CBWR``, or the user set another mode); other BLAS libraries are not checked here. Rows
    that depend on how many runs share a product: :func:`blas_batch_invariance`."""
    import torch

    if not torch.backends.mkl.is_available():
        return True
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):  # another build: cannot tell
        return True
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    return bool(get(MKL_CBWR_ALL) & MKL_CBWR_STRICT)


# The batch the probe of ``blas_batch_invariance`` cuts pieces from, and the shapes of its products
# (examples, input features, hidden units): large enough that every product goes to the BLAS, and
# odd, so that every form has partial tiles in each dimension (with 24 hidden units the folded
# forms' rows, pieces x 24, fill whole tiles, and on an AVX-512 EPYC ``matmul(g, x)`` passed there
# while failing for 23 or 25).
PROBE_RUNS, PROBE_N, PROBE_D, PROBE_H = 37, 61, 41, 23


@functools.cache
def blas_batch_invariance() -> str | None:
    """None if torch's matrix products give each run of a batch the same bits whichever runs share
    the product; else the product that did not (one line). Sharded runs rely on it: a piece
    computes the products of its own runs only.

    Probed on the forms the batched models use, each with runs as one dimension of a single BLAS
    call: ``beta @ x.T`` (runs x shared inputs), ``res @ x``, ``matmul(x, W.mT)`` and
    ``matmul(g, x)`` (a shared operand broadcast over runs), in float64 and float32, for pieces
    of 2..9 runs (a piece never holds one run of a group: ``shard_pieces.split``) at several
    positions of a batch of :data:`PROBE_RUNS`. Some BLAS builds compute the rows of a product's
    last, partial tile with other code than the others (MKL on AMD EPYC CPUs with AVX-512 does),
    so a run's last bits would depend on how many runs share its piece. Probed on one thread, as
    sharded runs compute. Cached per process."""
    with run_threads(1):
        return _probe_products()


def _probe_products() -> str | None:
    import numpy as np
    import torch

    rng = np.random.default_rng(0)  # fixed inputs; no global random state is touched
    R = PROBE_RUNS
    for dtype in (torch.float64, torch.float32):
        x, beta, res, W, g = (torch.from_numpy(rng.standard_normal(shape)).to(dtype) for shape in
                              ((PROBE_N, PROBE_D), (R, PROBE_D), (R, PROBE_N), (R, PROBE_H, PROBE_D),
                               (R, PROBE_H, PROBE_N)))
        # (name, the runs' operand, the shared one, is the runs' operand on the left)
        for name, runs, shared, left in (("beta @ x.T", beta, x.T, True), ("res @ x", res, x, True),
                                         ("matmul(x, W.mT)", W.mT, x, False), ("matmul(g, x)", g, x, True)):
            def product(piece, shared=shared, left=left):
                return torch.matmul(piece, shared) if left else torch.matmul(shared, piece)

            whole = product(runs)
            for m in range(2, 10):
                for at in (0, 1, 3, R - m):
                    if not torch.equal(product(runs[at:at + m]), whole[at:at + m]):
                        return (f"this machine's BLAS gives a run other last bits when other runs share its matrix "
                                f"product ({name}, {str(dtype).removeprefix('torch.')}: {m} runs alone differ from "
                                f"the same runs among {R})")
    return None


@dataclass(frozen=True)
class Parallelism:
    """Processes and threads per process of one experiment, and why (one line for the user)."""

    workers: int  # processes, each a shard of the runs (1: one process)
    threads: int  # torch intra-op threads per process
    reason: str


def choose(cfg, n_runs: int, workers: int | None, threads: int = 1, invariant: bool = False,
           probe: Callable[[], str | None] | None = None) -> Parallelism:
    """The processes and threads of an experiment with ``n_runs`` runs. ``workers`` None: one per
    physical core (:func:`machine_workers`: within the CPU quota), capped by the runs (1 for a threaded path or a GPU); ``threads``: what the user
    asked, applied only where threads help. ``invariant``: its runs' numbers do not depend on the
    runs batched with them whatever the BLAS (``Engine.batch_invariant``); otherwise more than one
    process needs the BLAS to pass :func:`blas_batch_invariance`, or, where it fails, the
    experiment's own products to pass ``probe`` (None: they do; else why not, one line:
    ``sgdlab.workflows.shard_probe``), called only then."""
    if str(cfg.device) != "cpu":
        return Parallelism(1, max(1, threads), f"one process drives device {cfg.device}")
    if threaded(cfg):
        n = 1 if workers is None else max(1, min(workers, n_runs))
        return Parallelism(n, max(1, threads), f"{cfg.model.kind} uses {threads} thread(s) per process")
    if workers is None:
        cores, why = machine_workers()
        n = max(1, min(cores, n_runs))
        why = f"{why}, {n_runs} run(s)"
    else:
        n = max(1, min(workers, n_runs))
        why = f"--workers {workers}, {n_runs} run(s)"
    if threads > 1:
        why += f"; {threads} threads not applied: {cfg.model.kind} runs faster on one thread per process"
    if n > 1 and not invariant and (problem := blas_problem()) is not None:
        if probe is None or not blas_reproducible():  # alignment-dependent paths: no probe can tell
            return Parallelism(1, 1, f"{problem}: one process keeps the results identical")
        t0 = time.perf_counter()
        own = probe()
        if own is not None:
            return Parallelism(1, 1, f"{problem}, and for this experiment: {own}: one process keeps the results identical")
        why += (f"; {problem}, but this experiment's own steps and metrics give every run the same bits in "
                f"pieces of its groups (probed in {time.perf_counter() - t0:.1f} s)")
    return Parallelism(n, 1, why)


def blas_problem() -> str | None:
    """Why torch's BLAS could give a run of a batch other bits in a piece of it (one line), or None:
    MKL not in strict mode (:func:`blas_reproducible`), or a product failing the probe
    (:func:`blas_batch_invariance`)."""
    if not blas_reproducible():
        return ("MKL runs without MKL_CBWR=AUTO,STRICT (it was started before sgdlab was imported; set "
                "MKL_CBWR=AUTO,STRICT before Python starts to spread the runs)")
    return blas_batch_invariance()


@contextlib.contextmanager
def run_threads(n: int):
    """torch's intra-op threads, and the pools of the BLAS libraries loaded so far (numpy's and
    scipy's OpenBLAS, through threadpoolctl), set to ``n`` inside the block, restored after (the
    caller's settings are theirs). The BLAS pools matter because numpy is imported with sgdlab,
    before the ``sgdlab`` command sets ``OMP_NUM_THREADS``: its OpenBLAS has sized its pool to
    every core by then, and a toy run's numpy linear algebra (a batched SVD of the rank metric)
    would otherwise run on every core in each of the processes side by side."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(n, user_api="blas"):
            yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
