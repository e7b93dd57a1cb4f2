"""Sweeps: grids over any config keys, planned into as few batched jobs as possible.

The grid syntax and the planner are :mod:`sgdlab.workflows.grid`; the directory on disk is
:class:`sgdlab.store.sweeps.SweepDir`; the executors (in-process, process pool, Ray, SLURM, and
any a user registers) are :mod:`sgdlab.workflows.executors`. Each job is an ordinary run directory
under ``SWEEP/jobs/``, and ``SWEEP/index.json`` maps grid points to jobs and arms.

A job that raises is recorded as failed (with its error) and the others go on; a killed sweep
resumes with only unfinished jobs re-run (a half-done job continues from its checkpoint).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sgdlab.core.config import to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.spec.config_paths import resolve_paths
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.store.locking import DirLock, check_unlocked
from sgdlab.store.sweeps import INDEX, JOBS, Point, SweepDir
from sgdlab.workflows.executors import EXECUTORS, ExecutorContext, run_job
from sgdlab.workflows.grid import Job, check_grid_size, parse_axis, parse_values, plan
from sgdlab.workflows.progress import SweepProgress

__all__ = ["EXECUTORS", "INDEX", "JOBS", "Job", "Point", "Sweep", "check_grid_size", "parse_axis", "parse_values",
           "plan", "run_job"]


class Sweep(SweepDir):
    """A sweep directory: plan, index, execution and results."""

    @classmethod
    def create(cls, path, base: ExperimentConfig, axes, sets=(), experiment: str = "") -> Sweep:
        sw = cls(path)
        sw._check_new()
        points, jobs = plan(base, axes, tuple(sets))
        sw._init({
            "experiment": experiment or base.name,
            "axes": [[k, v] for k, v in axes],
            "sets": list(sets),
            "points": [dataclasses.asdict(p) for p in points],
            "jobs": [{"id": j.id, "dir": j.dir, "config": resolve_paths(to_dict(j.config), Path.cwd()), "status": "pending",
                      "n_runs_hint": len(j.config.arms) * j.config.seeds} for j in jobs],
        })
        return sw

    def execute(self, executor: str = "inprocess", workers: int | None = None, address: str | None = None,
                progress: bool = True, slurm=None, trust_imports: bool = False) -> dict:
        """Run every unfinished job; returns {job id: status}. Failures are recorded, not raised.

        The sweep directory is locked for the duration, and a job directory still held by a live
        process (a worker of a killed sweep) makes the whole call refuse before anything runs.
        ``workers``: processes (in-process: each job's runs spread over them, as ``sgdlab run
        --workers``; pool: in all) or the CPUs of a local Ray cluster; None: one per physical core
        this process may use, within its CPU quota (:func:`sgdlab.workflows.cores.machine_workers`;
        a deep net's job runs in one process). ``slurm``: the
        :class:`sgdlab.workflows.slurm.SlurmOptions` of the slurm executor (None: saved / defaults).
        The jobs' modules must be the caller's own or ``trust_imports`` (:mod:`sgdlab.store.trust`): a sweep
        directory from elsewhere is code, not data.
        """
        from sgdlab.store.trust import check_trusted

        run = EXECUTORS.get(executor)
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        with DirLock(self.path, "sweep directory"):
            todo = self.pending()
            for j in todo[:1] if not trust_imports else ():  # the jobs of a sweep share their imports
                check_trusted(j["config"], f"sweep directory {str(self.path)!r}", "running its jobs")
            # SLURM tasks of an earlier submission may still hold their job directories on other
            # hosts: the slurm executor waits for those instead (sgdlab.workflows.slurm.run_slurm).
            for j in todo if executor != "slurm" else ():
                check_unlocked(self.path / j["dir"], f"job {j['id']} of the sweep")
            return self._execute(todo, run, executor, ExecutorContext(self.path, workers, address, slurm, progress))

    def _execute(self, todo, run, executor: str, ctx: ExecutorContext) -> dict:
        results: dict[int, dict] = {}
        progress = ctx.progress
        bar = SweepProgress(self.path, todo, progress and executor != "inprocess")
        ctx.poll = bar.poll

        def record(job_id: int, res: dict):
            results[job_id] = res
            index = self.index()
            spread = ""
            for j in index["jobs"]:
                if j["id"] == job_id:
                    j["status"] = res["status"]
                    j.pop("error", None)
                    if "error" in res:
                        j["error"] = res["error"]
                    if (k := _processes(self.path / j["dir"])) > 1:
                        spread = f", its runs over {k} processes"
            self._write(index)
            if progress:
                bar.finished(job_id, f"job {job_id} ({len(results)}/{len(todo)}): {res['status']}{spread}"
                             + (f" ({res['error']})" if "error" in res else ""))

        args = [(j["config"], str(self.path / j["dir"])) for j in todo]
        try:
            for job_id, res in run(todo, args, ctx):
                record(job_id, res)
        finally:
            bar.close()
        return results


def _processes(job_dir: Path) -> int:
    """The processes a job's runs were spread over, as its meta.json records them (1 if it
    records none, or cannot be read: a job that failed before it started)."""
    from sgdlab.store.runs import RunDir

    try:
        return int(RunDir(job_dir).meta().get("workers", 1))
    except (OSError, ValueError, TypeError):  # CheckpointError is an OSError
        return 1
