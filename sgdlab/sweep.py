"""Sweeps: grids over any config keys, planned into as few batched jobs as possible.

A grid point is the base experiment with some keys overridden. Points that differ only in
their arms (step sizes, schedules, batch sizes, samplers) run as *one* job: their arms are
merged into one experiment, which the engine batches as a tensor dimension. Points that
differ in anything else (data, model, steps, seeds, ...) become separate jobs. Jobs run
in-process, in a local process pool, or on Ray; each job is an ordinary run directory under
``SWEEP/jobs/``, and ``SWEEP/index.json`` maps grid points to jobs and arms.

A job that raises is recorded as failed (with its error) and the others go on; a killed sweep
resumes with only unfinished jobs re-run (a half-done job continues from its checkpoint).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import from_dict, override, to_dict, toml_value
from .errors import CheckpointError, ConfigError
from .experiment import ExperimentConfig
from .limits import MAX_AXIS_VALUES, MAX_GRID_POINTS
from .locking import DirLock, check_unlocked
from .runs import RunDir, atomic_write_text, dumps, ensure_writable_dir

INDEX = "index.json"
JOBS = "jobs"
EXECUTORS = ("inprocess", "pool", "ray", "slurm")


# --------------------------------------------------------------------------- grid syntax

_RANGE = re.compile(r"^(linspace|logspace|loguniform|uniform)\((.*)\)$")


def parse_values(text: str) -> list:
    """Values of one grid axis.

    ``0.1,0.2,0.3`` (TOML values, comma separated; lists in brackets stay whole),
    ``linspace(lo, hi, n)``, ``logspace(lo, hi, n)`` (lo, hi are the values, not exponents),
    ``uniform(lo, hi, n, seed)`` and ``loguniform(lo, hi, n, seed)`` (random, sorted).
    """
    text = text.strip()
    m = _RANGE.match(text)
    if m:
        fn, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        try:
            lo, hi, n = float(args[0]), float(args[1]), int(args[2])
            seed = int(args[3]) if len(args) > 3 else 0
        except (ValueError, IndexError):
            raise ConfigError(f"grid range {text!r}: expected {fn}(lo, hi, n"
                              f"{', seed' if 'uniform' in fn else ''})") from None
        if n < 1 or (fn in ("logspace", "loguniform") and (lo <= 0 or hi <= 0)):
            raise ConfigError(f"grid range {text!r}: need n >= 1 and, on a log scale, lo, hi > 0")
        if n > MAX_AXIS_VALUES:  # before a single value is computed
            raise ConfigError(f"grid range {text!r}: n = {n} values exceed the limit of {MAX_AXIS_VALUES} per axis "
                              f"(sgdlab.limits.MAX_AXIS_VALUES)")
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"grid range {text!r}: lo and hi must be finite numbers")
        if fn == "linspace":
            return np.linspace(lo, hi, n).tolist()
        if fn == "logspace":
            return np.geomspace(lo, hi, n).tolist()
        rng = np.random.default_rng(seed)
        if fn == "uniform":
            return np.sort(rng.uniform(lo, hi, n)).tolist()
        return np.sort(np.exp(rng.uniform(math.log(lo), math.log(hi), n))).tolist()
    import tomllib

    try:
        vals = tomllib.loads(f"v = [{text}]")["v"]
    except tomllib.TOMLDecodeError:
        vals = [v.strip() for v in text.split(",")]  # bare words: strings
    if not vals:
        raise ConfigError(f"grid axis {text!r} has no values")
    return vals


def check_grid_size(axes: list[tuple[str, list]]) -> int:
    """The number of grid points, refused above the limits (sgdlab.limits) before any is planned."""
    total = 1
    for k, vals in axes:
        if not isinstance(vals, (list, tuple)) or not vals:
            raise ConfigError(f"grid axis {k!r} must be a non-empty list of values, got {vals!r}")
        if len(vals) > MAX_AXIS_VALUES:
            raise ConfigError(f"grid axis {k!r} has {len(vals)} values; the limit is {MAX_AXIS_VALUES} per axis "
                              f"(sgdlab.limits.MAX_AXIS_VALUES)")
        total *= len(vals)
    if total > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {total} points ({' x '.join(str(len(v)) for _, v in axes)}); the limit is "
                          f"{MAX_GRID_POINTS} (sgdlab.limits.MAX_GRID_POINTS): split the sweep")
    return total


def parse_axis(spec: str) -> tuple[str, list]:
    if "=" not in spec:
        raise ConfigError(f"grid axis {spec!r} must look like key.path=v1,v2,... or key=logspace(lo,hi,n)")
    key, text = spec.split("=", 1)
    return key.strip(), parse_values(text)


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class Point:
    id: int
    values: dict  # axis key -> value
    job: int
    arms: dict  # arm label in the base experiment -> arm label inside the job
    labels: dict = dataclasses.field(default_factory=dict)  # base label -> the arm's label at this point

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in self.values.items())


@dataclass
class Job:
    id: int
    config: ExperimentConfig

    @property
    def dir(self) -> str:
        return f"{JOBS}/job-{self.id:04d}"


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _job_key(cfg: ExperimentConfig) -> str:
    d = to_dict(cfg)
    for k in ("arms", "name", "description"):
        d.pop(k, None)
    return json.dumps(d, sort_keys=True)


def plan(base: ExperimentConfig, axes: list[tuple[str, list]], sets: tuple[str, ...] = ()) -> tuple[list[Point], list[Job]]:
    """Expand the grid and merge points that can share one batched job.

    Within a job, identical arms (same optimizer and schedule) are run once and shared by
    every point that has them; other arms are renamed ``"<arm> | <point label>"``.
    """
    base = override(base, list(sets)) if sets else base
    # Points are named by the base experiment's arm labels (after `sets`, before the axes), so an
    # arm keeps one identity across the grid while its resolved label follows each point's values.
    base_labels = [a.label for a in base.arms]
    keys = [k for k, _ in axes]
    check_grid_size(axes)
    if len(set(keys)) != len(keys):
        raise ConfigError(f"grid axes repeat a key: {keys}")
    points_cfg = []
    for combo in itertools.product(*[vals for _, vals in axes]) if axes else [()]:
        values = dict(zip(keys, combo))
        cfg = override(base, [f"{k}={toml_value(v)}" for k, v in values.items()])
        points_cfg.append((values, cfg))
    jobs: dict[str, dict] = {}
    points = []
    for pid, (values, cfg) in enumerate(points_cfg):
        key = _job_key(cfg)
        if key not in jobs:
            jobs[key] = {"id": len(jobs), "cfg": cfg, "arms": {}}
        job = jobs[key]
        mapping, labels = {}, {}
        label = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        literal = label.replace("{", "{{").replace("}", "}}")  # arm names may hold {placeholders}
        for base_label, arm in zip(base_labels, cfg.arms):
            sig = json.dumps(to_dict(dataclasses.replace(arm, name="_")), sort_keys=True)
            if sig not in job["arms"]:
                name = arm.name if not label else f"{arm.name} | {literal}"
                job["arms"][sig] = dataclasses.replace(arm, name=name)
            mapping[base_label] = job["arms"][sig].label
            labels[base_label] = arm.label
        points.append(Point(pid, values, job["id"], mapping, labels))
    out_jobs = []
    for j in sorted(jobs.values(), key=lambda j: j["id"]):
        cfg = dataclasses.replace(j["cfg"], arms=tuple(j["arms"].values()),
                                  name=f"{base.name}-job{j['id']}")
        out_jobs.append(Job(j["id"], cfg))
    return points, out_jobs


# --------------------------------------------------------------------------- execution

# Seconds between checks of the driver's liveness in pool workers, and between progress polls.
WATCHDOG_SECONDS = 0.5
POLL_SECONDS = 1.0
# Bytes first read from the end of a metrics file to find its last row (grown if a row is longer).
TAIL_BYTES = 65536
# Linux prctl option: signal a child when its parent dies.
PR_SET_PDEATHSIG = 1


def run_job(cfg_dict: dict, job_dir: str, threads: int = 1, progress: bool = False, lock_wait: float = 0.0) -> dict:
    """Run (or resume) one job; never raises: returns {"status": ..., "error": ...}. ``lock_wait``:
    how long a resume waits for the job directory's lock (see sgdlab.locking)."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch

        torch.set_num_threads(threads)
        from . import api

        cfg = from_dict(ExperimentConfig, cfg_dict)
        rd = RunDir(job_dir)
        if rd.complete():
            return {"status": "done"}
        if (rd.path / "config.toml").exists():  # started before: resume (from step 0 if it has no checkpoint)
            api.resume(rd.path, progress=progress, quiet=True, lock_wait=lock_wait)
        else:
            api.run(cfg, rd.path, progress=progress, quiet=True, overwrite=True)
        return {"status": "done"}
    except Exception as e:  # a failing job is recorded, the sweep goes on  # noqa: BLE001
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: a worker never outlives the sweep (PID ``parent``) that started it
    (a killed driver would otherwise leave workers writing into job directories for many seconds,
    or waiting for work forever)."""
    import os
    import threading

    try:  # Linux: the kernel kills us when the parent dies
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the driver died while this worker was starting
        os._exit(1)

    def watch():  # everywhere: we are re-parented when the driver dies
        import time

        while os.getppid() == parent:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _last_step(job_dir: Path) -> int:
    """Step of the last complete row of a job's metrics.jsonl (0 if none yet). Reads the file's
    tail, growing it until it holds a whole row (a row of many runs can be longer than one read)."""
    p = job_dir / "metrics.jsonl"
    chunk = TAIL_BYTES
    try:
        with open(p, "rb") as f:
            size = f.seek(0, 2)
            while True:
                f.seek(max(0, size - chunk))
                lines = f.read().decode(errors="replace").split("\n")[:-1]  # after the last newline: torn
                whole = lines if chunk >= size else lines[1:]  # the first may be cut by the seek
                for line in reversed(whole):
                    try:
                        return int(json.loads(line)["step"])
                    except (ValueError, KeyError, TypeError):
                        continue
                if chunk >= size:
                    return 0
                chunk *= 4
    except OSError:
        return 0


class _Progress:
    """One bar over the steps of all pending jobs, fed by reading their metrics files (works for
    every executor: the workers write where the driver can read)."""

    def __init__(self, root: Path, todo: list[dict], enabled: bool):
        self.root, self.todo = root, todo
        self.bar = None
        if enabled and todo:
            from tqdm.auto import tqdm

            total = sum(int(j["config"]["steps"]) for j in todo)
            self.bar = tqdm(total=total, desc=f"sweep ({len(todo)} jobs)", unit="step", unit_scale=True,
                            dynamic_ncols=True, mininterval=POLL_SECONDS, file=sys.stderr)
        self.done: set[int] = set()
        self._polled = -math.inf  # time.monotonic() of the last poll that read the files

    def poll(self, force: bool = False) -> None:
        """Read the jobs' progress, at most once per POLL_SECONDS unless ``force``: the executors
        call this after every finished job, and each call reads every pending job's metrics file
        (without the limit, N jobs ending back to back cost N^2 file reads)."""
        if self.bar is None:
            return
        now = time.monotonic()
        if not force and now - self._polled < POLL_SECONDS:
            return
        self._polled = now
        n = sum(int(j["config"]["steps"]) if j["id"] in self.done else _last_step(self.root / j["dir"])
                for j in self.todo)
        self.bar.update(max(0, n - self.bar.n))

    def finished(self, job_id: int, line: str) -> None:
        self.done.add(job_id)
        if self.bar is None:
            print(line, flush=True)
            return
        self.bar.write(line, file=sys.stderr)
        self.poll()

    def close(self) -> None:
        if self.bar is not None:
            self.poll(force=True)
            self.bar.close()


class Sweep:
    """A sweep directory: plan, index, execution and results."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path, base: ExperimentConfig, axes, sets=(), experiment: str = "") -> Sweep:
        sw = cls(path)
        if sw.path.exists() and not sw.path.is_dir():
            raise CheckpointError(f"{str(sw.path)!r} is a file; choose a directory for the sweep")
        if (sw.path / INDEX).exists():
            raise CheckpointError(f"{str(sw.path)!r} already holds a sweep; resume it with "
                                  f"`sgdlab sweep --resume {sw.path}` (nothing was changed)")
        if sw.path.is_dir() and any(sw.path.iterdir()):
            raise CheckpointError(f"{str(sw.path)!r} exists and is not a sweep directory; choose an empty or new --out")
        points, jobs = plan(base, axes, tuple(sets))
        ensure_writable_dir(sw.path, "sweep directory")
        index = {
            "experiment": experiment or base.name,
            "axes": [[k, v] for k, v in axes],
            "sets": list(sets),
            "points": [dataclasses.asdict(p) for p in points],
            "jobs": [{"id": j.id, "dir": j.dir, "config": to_dict(j.config), "status": "pending",
                      "n_runs_hint": len(j.config.arms) * j.config.seeds} for j in jobs],
        }
        sw._write(index)
        return sw

    def index(self) -> dict:
        p = self.path / INDEX
        if not self.path.is_dir():
            raise CheckpointError(f"{str(self.path)!r} " + ("is a file, not a sweep directory" if self.path.exists()
                                                           else "does not exist"))
        if not p.exists():
            raise CheckpointError(f"{str(self.path)!r} is not a sweep directory: {INDEX} is missing")
        try:
            return json.loads(p.read_text())
        except ValueError as e:
            raise CheckpointError(f"{str(p)!r} is corrupt ({e})") from None

    def _write(self, index: dict) -> None:
        atomic_write_text(self.path / INDEX, dumps(index))

    def points(self) -> list[Point]:
        return [Point(p["id"], p["values"], p["job"], p["arms"], p.get("labels", {})) for p in self.index()["points"]]

    def pending(self) -> list[dict]:
        return [j for j in self.index()["jobs"] if not RunDir(self.path / j["dir"]).complete()]

    def execute(self, executor: str = "inprocess", workers: int = 2, address: str | None = None,
                progress: bool = True, slurm=None, trust_imports: bool = False) -> dict:
        """Run every unfinished job; returns {job id: status}. Failures are recorded, not raised.

        The sweep directory is locked for the duration, and a job directory still held by a live
        process (a worker of a killed sweep) makes the whole call refuse before anything runs.
        ``slurm``: the :class:`sgdlab.slurm.SlurmOptions` of the slurm executor (None: saved / defaults).
        The jobs' modules must be the caller's own or ``trust_imports`` (:mod:`sgdlab.trust`): a sweep
        directory from elsewhere is code, not data.
        """
        from .trust import check_trusted

        if executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        with DirLock(self.path, "sweep directory"):
            todo = self.pending()
            for j in todo[:1] if not trust_imports else ():  # the jobs of a sweep share their imports
                check_trusted(j["config"], f"sweep directory {str(self.path)!r}", "running its jobs")
            # SLURM tasks of an earlier submission may still hold their job directories on other
            # hosts: the slurm executor waits for those instead (sgdlab.slurm.run_slurm).
            for j in todo if executor != "slurm" else ():
                check_unlocked(self.path / j["dir"], f"job {j['id']} of the sweep")
            return self._execute(todo, executor, workers, address, progress, slurm)

    def _execute(self, todo, executor, workers, address, progress, slurm=None) -> dict:
        results: dict[int, dict] = {}
        bar = _Progress(self.path, todo, progress and executor != "inprocess")

        def record(job_id: int, res: dict):
            results[job_id] = res
            index = self.index()
            for j in index["jobs"]:
                if j["id"] == job_id:
                    j["status"] = res["status"]
                    j.pop("error", None)
                    if "error" in res:
                        j["error"] = res["error"]
            self._write(index)
            if progress:
                bar.finished(job_id, f"job {job_id} ({len(results)}/{len(todo)}): {res['status']}"
                             + (f" ({res['error']})" if "error" in res else ""))

        args = [(j["config"], str(self.path / j["dir"])) for j in todo]
        try:
            if executor == "inprocess":
                for j, a in zip(todo, args):
                    record(j["id"], run_job(*a, progress=progress))
            elif executor == "pool":
                self._pool(todo, args, workers, record, bar)
            elif executor == "slurm":
                from .slurm import resolve_options, run_slurm

                opts = slurm or resolve_options(self.path)
                for job_id, res in run_slurm(todo, args, self.path, opts, run_job, bar.poll):
                    record(job_id, res)
            else:
                for job_id, res in _run_ray(todo, args, workers, address, bar.poll):
                    record(job_id, res)
        finally:
            bar.close()
        return results

    @staticmethod
    def _pool(todo, args, workers, record, bar) -> None:
        import multiprocessing as mp
        import os
        from concurrent.futures import FIRST_COMPLETED, wait

        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                   initializer=_die_with_parent, initargs=(os.getpid(),))
        ok = False
        try:
            futs = {pool.submit(run_job, *a): j["id"] for j, a in zip(todo, args)}
            pending = set(futs)
            while pending:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for f in done:
                    try:
                        res = f.result()
                    except Exception as e:  # the worker process died  # noqa: BLE001
                        res = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    record(futs[f], res)
                bar.poll()
            ok = True
        finally:
            if not ok:  # interrupted: stop the workers now, do not wait for their jobs to end
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.kill()
            pool.shutdown(wait=ok, cancel_futures=not ok)


def _run_ray(todo, args, workers, address, poll=lambda: None):
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'sgdlab[ray]'") from None
    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=workers, **kw)
        started = True
    try:
        remote = ray.remote(num_cpus=1)(run_job)
        refs = {remote.remote(*a): j["id"] for j, a in zip(todo, args)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
            poll()
            for r in done:
                try:
                    res = ray.get(r)
                except Exception as e:  # worker died  # noqa: BLE001
                    res = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                yield refs[r], res
    finally:
        if started:
            ray.shutdown()
