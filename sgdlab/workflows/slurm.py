"""Sweeps on a SLURM cluster: every unfinished job of a sweep as one task of one array job.

``sgdlab sweep ... --executor slurm`` submits, through `submitit <https://github.com/facebookincubator/submitit>`_
(``pip install 'sgdlab[slurm]'``), one SLURM array whose task i runs sweep job i exactly as the
in-process executor does (:func:`sgdlab.workflows.executors.run_job`: run or resume the job's run directory
under ``SWEEP/jobs/``), then waits and yields each task's result as it ends, so that the sweep's
``index.json`` is written as with every other executor. The sweep directory must be on a file
system that the compute nodes share (as usual on clusters).

* Resources per task come from :class:`SlurmOptions`: command-line options, else the ``[slurm]``
  table of a sweep file, else the options saved at submission (a resumed sweep keeps them),
  else the defaults (GPUs: 1 when the jobs' configs run on ``cuda``).
* A task that reaches its time limit or is preempted is checkpointed by submitit and requeued;
  it resumes from the run's last checkpoint (``checkpoint_seconds``).
* Resume: ``sgdlab sweep --resume SWEEP --executor slurm`` waits for tasks of an earlier
  submission that SLURM still lists as pending or running (their ids are in
  ``SWEEP/slurm/submitted.json``) and submits a new array for every other unfinished job.
* Logs and submitit's files: ``SWEEP/slurm/<array id>_<task>/``.
* A task has ended when its result file exists, or when ``squeue`` no longer lists it (twice in a
  row): that also works where the cluster keeps no accounting (``sacct`` disabled), and a task
  cancelled with ``scancel`` or killed is recorded as failed (``--resume`` runs it again from its
  checkpoint).
* Tasks run with the driver's Python (``sys.executable``: the same virtual environment) and its
  environment (``sbatch`` exports it: ``PYTHONPATH``, ``OMP_NUM_THREADS``, ...); ``setup`` lines
  run before each task where a node needs more (``module load ...``).
"""

from __future__ import annotations

import json
import subprocess
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sgdlab.core.config import check, from_dict, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.store.files import atomic_write_text

__all__ = ["SLURM_DIR", "SlurmOptions", "SweepTask", "resolve_options", "run_slurm"]

SLURM_DIR = "slurm"
OPTIONS_FILE = "options.json"
SUBMITTED_FILE = "submitted.json"
# SLURM states of a task that will still run (or is running): wait for it instead of resubmitting.
ACTIVE_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING")
CLUSTERS = ("slurm", "local", "debug")
# Default wall-clock limit of a task (minutes): SLURM requeues tasks that hit it (they resume).
DEFAULT_TIME_MIN = 240
# A task absent from squeue this many status checks in a row, without a result, has ended (once
# is not enough: a task leaves the queue a moment before its result file shows on a shared disk).
VANISHED_CHECKS = 2


@dataclass(frozen=True)
class SlurmOptions:
    """Per-task resources and submission settings of a sweep's array job."""

    partition: str = ""  # "" = the cluster's default partition
    time: int = DEFAULT_TIME_MIN  # wall-clock minutes per task; at the limit a task is requeued and resumes
    cpus: int = 1  # CPUs per task: a deep net's torch threads, a toy model's worker processes (sgdlab.workflows.cores)
    gpus: int = -1  # GPUs per task; -1 = 1 if the jobs' configs use device cuda, else 0
    mem: float = 0.0  # GB of memory per task; 0 = the partition's default
    parallelism: int = 0  # at most this many tasks at once (0 = no limit)
    account: str = ""  # sbatch --account, if the cluster needs one
    qos: str = ""  # sbatch --qos
    setup: tuple[str, ...] = ()  # shell lines run before each task (module load ..., source venv/bin/activate)
    cluster: str = "slurm"  # submitit backend: slurm; local = subprocesses on this machine (tests); debug = in-process
    poll: float = 10.0  # seconds between status checks while waiting

    def __post_init__(self):
        check(self.cluster in CLUSTERS, f"slurm.cluster: unknown {self.cluster!r}; allowed: {', '.join(CLUSTERS)}")
        check(self.time >= 1, f"slurm.time must be >= 1 minute, got {self.time}")
        check(self.cpus >= 1, f"slurm.cpus must be >= 1, got {self.cpus}")
        check(self.gpus >= -1, f"slurm.gpus must be >= 0 (or -1 = from the config), got {self.gpus}")
        check(self.mem >= 0 and self.parallelism >= 0 and self.poll > 0,
              "slurm.mem and slurm.parallelism must be >= 0, slurm.poll > 0")


def resolve_options(sweep_dir: str | Path, overrides: dict | None = None, table: dict | None = None) -> SlurmOptions:
    """Options of a sweep: ``overrides`` (command line; None values ignored) over ``table`` (a
    sweep file's ``[slurm]``) over the options saved by an earlier submission over defaults."""
    saved = Path(sweep_dir) / SLURM_DIR / OPTIONS_FILE
    merged = json.loads(saved.read_text()) if saved.exists() else {}
    merged.update(table or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(SlurmOptions, merged, "slurm")


class SweepTask:
    """The callable of every array task: ``fn(config dict, job dir, cpus=N)`` (run_job; N: the task's ``--cpus``).

    submitit calls ``checkpoint`` when SLURM signals a time-out or preemption; resubmitting the
    same call resumes the job from its run directory's checkpoint.
    """

    def __init__(self, fn: Callable[..., dict]):
        self.fn = fn

    def __call__(self, cfg: dict, job_dir: str, cpus: int) -> dict:
        # A requeued task may start before its killed predecessor's lock goes stale: wait for it.
        from sgdlab.store.locking import HEARTBEAT_SECONDS, STALE_SECONDS

        return self.fn(cfg, job_dir, cpus=cpus, lock_wait=STALE_SECONDS + 2 * HEARTBEAT_SECONDS)

    def checkpoint(self, *args, **kwargs):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ConfigError("the slurm executor needs submitit: pip install 'sgdlab[slurm]'") from None
    return submitit


def _parameters(opts: SlurmOptions, todo: list[dict], name: str) -> dict:
    gpus = opts.gpus
    if gpus < 0:
        gpus = int(any(str(j["config"].get("device", "cpu")).startswith("cuda") for j in todo))
    p = {"name": name, "timeout_min": opts.time, "cpus_per_task": opts.cpus, "gpus_per_node": gpus,
         "slurm_setup": list(opts.setup)}
    if opts.mem:
        p["mem_gb"] = opts.mem
    if opts.partition:
        p["slurm_partition"] = opts.partition
    if opts.parallelism:
        p["slurm_array_parallelism"] = opts.parallelism
    extra = {k: v for k, v in (("account", opts.account), ("qos", opts.qos)) if v}
    if extra:
        p["slurm_additional_parameters"] = extra
    return p


def queued_ids() -> set[str] | None:
    """Ids ("ARRAY_TASK" and plain job ids) of every task SLURM lists as pending or running, one per
    array element (``squeue -r``); None where squeue cannot be asked."""
    try:
        p = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True, timeout=60,
                           check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return set(p.stdout.split()) if p.returncode == 0 else None


def still_active(job, queued: set[str] | None = None) -> bool:
    """Will this earlier task still run? (SLURM lists it in squeue, or as pending / running / requeued.)"""
    try:
        if job.paths.result_pickle.exists():
            return False
        if queued is not None and str(job.job_id) in queued:
            return True
        return str(job.state).split()[0].upper() in ACTIVE_STATES
    except Exception:  # the scheduler does not know it any more  # noqa: BLE001
        return False


class _EndWatch:
    """Which submitted tasks have ended: a result file, submitit's own check, or gone from squeue."""

    def __init__(self, use_squeue: bool):
        self.use_squeue = use_squeue
        self.absent: dict[str, int] = {}  # task id -> consecutive checks without it in squeue

    def ended(self, waiting: dict) -> list:
        queued = queued_ids() if self.use_squeue else None
        out = []
        for jid, job in waiting.items():
            if job.paths.result_pickle.exists():
                out.append(jid)
                continue
            if queued is not None:
                tid = str(job.job_id)
                self.absent[tid] = 0 if tid in queued else self.absent.get(tid, 0) + 1
                if self.absent[tid] >= VANISHED_CHECKS:
                    out.append(jid)
                    continue
            if job.done():
                out.append(jid)
        return out


def _outcome(job) -> dict:
    """The task's run_job result, or a failure naming what SLURM / submitit reported."""
    if not job.paths.result_pickle.exists() and not job.done():  # left the queue without a result
        log = job.paths.stderr
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        return {"status": "failed",
                "error": f"slurm task {job.job_id} ended without a result (cancelled, killed or its node "
                         f"failed){': ' + tail[0][:300] if tail else ''}; sgdlab sweep --resume runs it again"}
    try:
        return job.result()
    except Exception as e:  # killed, out of memory, time-outs exhausted, node failure  # noqa: BLE001
        msg = (str(e).strip().splitlines() or [""])[0][:300]
        return {"status": "failed", "error": f"{type(e).__name__} (slurm job {job.job_id}): {msg}",
                "traceback": traceback.format_exc()}


def run_slurm(todo: list[dict], args: list[tuple], sweep_dir: str | Path, opts: SlurmOptions,
              fn: Callable[..., dict], poll: Callable[[], None] = lambda: None
              ) -> Iterator[tuple[int, dict]]:
    """Run the sweep's unfinished jobs ``todo`` (index entries) as one array job; yield
    ``(job id, result)`` as tasks end. ``args[i] = (config dict, job dir)`` of ``todo[i]``;
    ``poll()`` is called between status checks (the sweep's progress display)."""
    submitit = _submitit()
    folder = Path(sweep_dir) / SLURM_DIR
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / OPTIONS_FILE, json.dumps(to_dict(opts), indent=1))
    record = folder / SUBMITTED_FILE
    submitted = json.loads(record.read_text()) if record.exists() else {}
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=opts.cluster)
    executor.update_parameters(**_parameters(opts, todo, Path(sweep_dir).name))
    waiting: dict[int, object] = {}
    fresh = []
    queued = queued_ids() if opts.cluster == "slurm" else None
    for j, a in zip(todo, args):
        old = submitted.get(str(j["id"]))
        job = submitit.SlurmJob(folder / "%j", old) if old and opts.cluster == "slurm" else None
        if job is not None and still_active(job, queued):
            waiting[j["id"]] = job
        else:
            fresh.append((j["id"], a))
    if fresh:
        task = SweepTask(fn)
        jobs = executor.map_array(task, [a[0] for _, a in fresh], [a[1] for _, a in fresh],
                                  [opts.cpus] * len(fresh))
        for (jid, _), job in zip(fresh, jobs):
            waiting[jid] = job
            submitted[str(jid)] = job.job_id
        atomic_write_text(record, json.dumps(submitted, indent=1))
    watch = _EndWatch(use_squeue=opts.cluster == "slurm")
    while waiting:
        for jid in watch.ended(waiting):
            yield jid, _outcome(waiting.pop(jid))
        poll()
        if waiting:
            time.sleep(opts.poll)
