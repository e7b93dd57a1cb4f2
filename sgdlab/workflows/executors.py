"""Sweep executors behind one protocol, in a registry users extend (``sgdlab.register_executor``).

An executor runs a sweep's unfinished jobs and yields ``(job id, result)`` as each ends::

    def executor(todo: list[dict], args: list[tuple[dict, str]], ctx: ExecutorContext) -> Iterator[tuple[int, dict]]

``todo``: the index entries of the jobs; ``args``: per job ``(config dict, job directory)``, what
:func:`run_job` takes in whatever process runs it; ``ctx``: workers, cluster address, the sweep
directory, the SLURM options, and ``poll()`` to call while waiting (it refreshes the progress bar).
A result is ``{"status": "done"}`` or ``{"status": "failed", "error": ...}``; an executor never
raises for a failed job. Bundled: ``inprocess``, ``pool`` (local processes that die with the
driver), ``ray`` (a local or remote Ray cluster) and ``slurm`` (:mod:`sgdlab.workflows.slurm`).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.core.registry import Registry
from sgdlab.core.startup import collector_paused
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.workflows.children import die_with_parent
from sgdlab.workflows.progress import POLL_SECONDS

__all__ = ["EXECUTORS", "Executor", "ExecutorContext", "run_job"]


@dataclass
class ExecutorContext:
    """What an executor may need besides the jobs."""

    sweep: Path  # the sweep directory
    # processes (in-process: each job's; pool: in all) or CPUs of a local Ray cluster; None: the
    # default, one per physical core within the CPU quota (sgdlab.workflows.cores.machine_workers)
    workers: int | None = None
    address: str | None = None  # Ray cluster address; None = start a local one
    slurm: Any = None  # sgdlab.workflows.slurm.SlurmOptions; None = saved with the sweep / defaults
    progress: bool = False  # show a job's own progress (in-process)
    poll: Callable[[], None] = field(default=lambda: None)  # call while waiting: refreshes the sweep's bar


class Executor(Protocol):
    def __call__(self, todo: list[dict], args: list[tuple[dict, str]],
                 ctx: ExecutorContext) -> Iterator[tuple[int, dict]]: ...


EXECUTORS: Registry[Executor] = Registry("executor")


def run_job(cfg_dict: dict, job_dir: str, threads: int | None = None, progress: bool = False,
            lock_wait: float = 0.0, workers: int | None = None, cpus: int | None = None) -> dict:
    """Run (or resume) one job; never raises: returns {"status": ..., "error": ...}. ``lock_wait``:
    how long a resume waits for the job directory's lock (see sgdlab.store.locking).

    The CPUs it uses (sgdlab.workflows.cores): ``cpus``: the job was given that many (a pool
    slot's share, a Ray task's CPUs, a SLURM task's ``--cpus``): a toy model's runs are spread
    over ``cpus`` single-threaded processes (sgdlab.workflows.shards), a deep net runs on ``cpus``
    threads in one. Otherwise as ``sgdlab run``: ``workers`` processes (None: its default, one
    per physical core within the CPU quota for a toy model, one for a deep net), with torch on
    ``threads`` threads (None: the calling process's setting, left as it is)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with collector_paused():  # torch's import: sgdlab.core.startup
            import torch

            from sgdlab.store.runs import RunDir
            from sgdlab.workflows import api
            from sgdlab.workflows.cores import threaded

        cfg = from_dict(ExperimentConfig, cfg_dict)
        if cpus is not None:
            workers, threads = (1, cpus) if threaded(cfg) else (cpus, 1)
        if threads is not None:
            torch.set_num_threads(threads)
        rd = RunDir(job_dir)
        if rd.complete():
            return {"status": "done"}
        if (rd.path / "config.toml").exists():  # started before: resume (from step 0 if it has no checkpoint)
            api.resume(rd.path, progress=progress, quiet=True, lock_wait=lock_wait, workers=workers)
        else:
            api.run(cfg, rd.path, progress=progress, quiet=True, overwrite=True, workers=workers)
        return {"status": "done"}
    except Exception as e:  # a failing job is recorded, the sweep goes on  # noqa: BLE001
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def machine_share(ctx: ExecutorContext) -> int:
    """The processes (pool) or CPUs (local Ray cluster) a sweep uses: ``ctx.workers``, by default
    one per physical core this process may use, within its CPU quota (``cores.machine_workers``)."""
    from sgdlab.workflows.cores import machine_workers

    return ctx.workers if ctx.workers is not None else machine_workers()[0]


@EXECUTORS.register("inprocess")
def _inprocess(todo, args, ctx: ExecutorContext):
    """One job after the other from this process (the default), each spread as ``sgdlab run``
    spreads an experiment: over ``ctx.workers`` processes, by default one per physical core for
    a toy model (sgdlab.workflows.cores)."""
    for j, a in zip(todo, args):
        yield j["id"], run_job(*a, progress=ctx.progress, workers=ctx.workers)


@EXECUTORS.register("pool")
def _pool(todo, args, ctx: ExecutorContext):
    """A local process pool (--workers N); the workers die with the driver."""
    import multiprocessing as mp
    import os
    from concurrent.futures import FIRST_COMPLETED, wait

    shards = shares(machine_share(ctx), len(todo))
    pool = ProcessPoolExecutor(max_workers=len(shards), mp_context=mp.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    ok = False
    try:
        futs = {pool.submit(run_job, *a, cpus=shards[i % len(shards)]): j["id"]
                for i, (j, a) in enumerate(zip(todo, args))}
        pending = set(futs)
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for f in done:
                try:
                    res = f.result()
                except Exception as e:  # the worker process died  # noqa: BLE001
                    res = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                yield futs[f], res
            ctx.poll()
        ok = True
    finally:
        if not ok:  # interrupted: stop the workers now, do not wait for their jobs to end
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
        pool.shutdown(wait=ok, cancel_futures=not ok)


def shares(workers: int, jobs: int) -> list[int]:
    """Processes per pool slot: ``min(workers, jobs)`` slots run jobs side by side; with fewer jobs
    than workers each job's runs are spread over the slot's share of the workers
    (sgdlab.workflows.shards), so a sweep merged into one batched job still uses every worker."""
    slots = max(1, min(workers, jobs))
    return [workers // slots + (i < workers % slots) for i in range(slots)]


@EXECUTORS.register("ray")
def _ray(todo, args, ctx: ExecutorContext):
    """A Ray cluster (--ray starts a local one of --workers CPUs, --address joins one; pip install
    -e ".[ray]"). Its CPUs are shared out as the pool shares its processes (:func:`shares`): with
    fewer jobs than CPUs each job's task requests several, up to the largest node's."""
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'sgdlab[ray]'") from None
    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
        if ctx.address:
            ray.init(address=ctx.address, **kw)
        else:
            ray.init(num_cpus=machine_share(ctx), **kw)
        started = True
    try:
        remote = ray.remote(run_job)
        # a job given k CPUs uses them as a SLURM task its --cpus: a toy job's runs spread over k
        # processes, a deep net on k threads (run_job with cpus=k, sgdlab.workflows.cores)
        refs = {remote.options(num_cpus=k).remote(*a, cpus=k): j["id"]
                for j, a, k in zip(todo, args, task_cpus(ray, len(todo)))}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            ctx.poll()
            for r in done:
                try:
                    res = ray.get(r)
                except Exception as e:  # worker died  # noqa: BLE001
                    res = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                yield refs[r], res
    finally:
        if started:
            ray.shutdown()


def task_cpus(ray, jobs: int) -> list[int]:
    """The CPUs each of ``jobs`` Ray tasks requests: the connected cluster's CPUs shared out by
    :func:`shares`, none above its largest live node's (a task runs on one node)."""
    total = max(1, int(ray.cluster_resources().get("CPU", 1)))
    largest = max([1, *(int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive"))])
    per = [min(k, largest) for k in shares(total, jobs)]
    return [per[i % len(per)] for i in range(jobs)]


@EXECUTORS.register("slurm")
def _slurm(todo, args, ctx: ExecutorContext):
    """One SLURM array job (--partition, --time, --cpus, --gpus, --mem; pip install -e ".[slurm]")."""
    from sgdlab.workflows.slurm import resolve_options, run_slurm

    opts = ctx.slurm or resolve_options(ctx.sweep)
    yield from run_slurm(todo, args, ctx.sweep, opts, run_job, ctx.poll)
