"""Run directories: resolved config, provenance, append-only metrics, checkpoints, summary.

Layout of a run directory::

    config.toml     the resolved ExperimentConfig (re-runnable: sgdlab run config.toml)
    meta.json       sgdlab version, git revision, command, python/torch/numpy versions, host, times;
                    "finished" and the list of figures once the run is complete
    runs.json       one row per run: index, arm, seed, schedule, optimizer
    metrics.jsonl   one JSON line per evaluation step {"step": t, "<metric>": [value per run]},
                    appended and flushed as produced (readable while running)
    checkpoint.pt   latest training state (atomic replace; tensors only)
    snapshots/      parameters of every run at chosen steps (config `snapshots`), written in parts
                    (one file per checkpoint, holding every step since the last one)
    summary.json    per run: final metrics, seed, schedule, divergence step
    figures/        PNG figures
    .lock           the PID and host of the one process writing the directory (sgdlab.store.locking)

Guarantees:

* Every file except metrics.jsonl is written to a temporary name and renamed into place, so a
  kill at any moment leaves either the old or the new version, never a torn one; temporary files
  a kill leaves behind are removed by the next writer.
* Checkpoints and snapshots are loaded with ``torch.load(weights_only=True)``: a file can hold
  tensors, numbers, strings and containers, never code (a crafted pickle is refused).
* Reading metrics.jsonl refuses a corrupt line anywhere but at the end (a torn last line is a
  write in progress or a kill, and is ignored); resume checks every row against the checkpoint
  (:meth:`RunDir.validated_rows`).
* One writer at a time (:class:`~sgdlab.store.locking.DirLock`); ``overwrite`` swaps the whole old
  directory out with two renames, so no mix of old and new files is ever visible.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sgdlab._version import version as _sgdlab_version
from sgdlab.core.config import dump_toml, load_toml_table, to_dict
from sgdlab.core.errors import CheckpointError
from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.spec.config_paths import absolute_config
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.store.files import (  # noqa: F401  (re-exported: the run store's file primitives)
    atomic_write_bytes,
    atomic_write_text,
    check_writable_dir,
    dumps,
    ensure_writable_dir,
    git_revision,
    os_error,
    safe_load,
    to_tensors,
)
from sgdlab.store.inputs import changes, fingerprint
from sgdlab.store.locking import LOCK, DirLock, check_unlocked, pid_alive
from sgdlab.store.metrics_rows import (
    MetricsLine,
    metrics_row,
    parse_row,
    resumable_rows,
    rows_to_arrays,
)
from sgdlab.store.trust import load_config

if TYPE_CHECKING:
    import torch

CONFIG, META, RUNS, METRICS, CHECKPOINT, SUMMARY, FIGURES, SNAPSHOTS = (
    "config.toml", "meta.json", "runs.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "figures",
    "snapshots")
# meta.json keys: content hashes of the input files (sgdlab.store.inputs.fingerprint) and of runs.json.
INPUTS, RUNS_HASH = "inputs", "runs_sha256"
# Temporary files of atomic writes: ".<name>.tmp<pid>" (files) and ".<name>.tmp<suffix>" (figures).
TMP_GLOB = ".*.tmp*"
# A directory moved aside by overwrite, until it is deleted: ".<name>.overwritten-<pid>".
TRASH = ".{name}.overwritten-{pid}"


class RunDir:
    """Reads and writes one run directory; a writer holds its lock (``create``/``open_writer``)."""

    def __init__(self, path: str | Path, trust_imports: bool = False):
        self.path = Path(path)
        # Import the config's modules even when they are not the caller's own (sgdlab.store.trust).
        self.trust_imports = trust_imports
        self.lock: DirLock | None = None
        # create(keep_replaced=True): the overwritten run, moved aside until the first metrics row
        # of the new one (discard() puts it back).
        self.replaced: Path | None = None
        # metrics() of the writer that has them in memory (remember_metrics), while the file is
        # the one they were written to: the figures at the end of a run need not parse it again
        self._known: tuple[tuple[int, int], np.ndarray, dict[str, np.ndarray]] | None = None

    # ----------------------------------------------------------------- creation and locking
    @classmethod
    def create(cls, path: str | Path, cfg: ExperimentConfig, runs: list, overwrite: bool = False,
               keep_replaced: bool = False) -> RunDir:
        """A new run directory, locked by this process. With ``overwrite`` an existing run
        directory is replaced: it is renamed aside (atomic), the new one is created, then the old
        one is deleted, so a kill at any point leaves either the old run or a new one. With
        ``keep_replaced`` the old one is deleted only when the new run appends its first metrics
        row; :meth:`discard` (a run that failed before that) puts it back."""
        rd = cls(path)
        trash = None
        if _replaces_a_run(rd.path, overwrite):
            with DirLock(rd.path):  # refuses while another process writes the old run
                trash = rd.path.with_name(TRASH.format(name=rd.path.name, pid=os.getpid()))
                try:
                    os.replace(rd.path, trash)
                except OSError as e:
                    raise os_error("move aside the old run directory", rd.path, e) from None
        try:
            rd.path.mkdir(parents=True, exist_ok=True)
            rd.open_writer()
            (rd.path / FIGURES).mkdir(exist_ok=True)
            resolved = absolute_config(cfg)  # runs from any directory
            atomic_write_text(rd.path / CONFIG, dump_toml(resolved))
            runs_text = dumps([dataclasses.asdict(r) for r in runs])
            # content hashes of every input file and of runs.json: resume checks them (sgdlab.store.inputs)
            atomic_write_text(rd.path / META, dumps({**_provenance(), INPUTS: fingerprint(to_dict(resolved)),
                                                     RUNS_HASH: _sha(runs_text)}))
            atomic_write_text(rd.path / RUNS, runs_text)
            atomic_write_text(rd.path / METRICS, "")
        except OSError as e:
            rd.release()
            raise os_error("write the run directory", rd.path, e) from None
        except BaseException:
            rd.release()
            raise
        if trash is not None and keep_replaced:
            rd.replaced = trash
        elif trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        remove_stale_trash(rd.path)
        return rd

    def discard(self) -> None:
        """Remove a run directory that failed before its first evaluation (it holds no result),
        and put back the run it replaced, if any: a failed start leaves the disk as it was."""
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)
        if self.replaced is not None:
            os.replace(self.replaced, self.path)
            self.replaced = None

    @classmethod
    def check_target(cls, path: str | Path, overwrite: bool = False) -> None:
        """Everything ``create`` would refuse, checked before any work (so a long computation never
        ends in "cannot write"): a file in the way, a foreign or existing directory, a live writer,
        a location that cannot be written."""
        path = Path(path)
        if _replaces_a_run(path, overwrite):
            check_unlocked(path)
            check_writable_dir(path.parent, "parent directory")
            return
        check_writable_dir(path, "run directory")

    def open_writer(self, wait: float = 0.0) -> RunDir:
        """Take the directory's lock (fails if another live process writes it, after waiting up to
        ``wait`` seconds) and remove the temporary files a killed writer left behind."""
        if not self.path.is_dir():
            raise CheckpointError(f"run directory {str(self.path)!r} does not exist")
        self.lock = DirLock(self.path).acquire(wait)
        if self.lock.took_over:
            print(f"note: {self.path}: the previous writer (PID {self.lock.took_over.get('pid')}) is gone; "
                  f"its lock was stale and has been taken over", file=sys.stderr)
        for d in (self.path, self.path / FIGURES, self.path / SNAPSHOTS):
            for f in d.glob(TMP_GLOB) if d.is_dir() else []:
                f.unlink(missing_ok=True)
        return self

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ----------------------------------------------------------------- reading
    def _need(self, name: str) -> Path:
        p = self.path / name
        if not self.path.is_dir():
            what = "is a file, not" if self.path.exists() else "does not exist: it is not"
            raise CheckpointError(f"{str(self.path)!r} {what} a run directory")
        if not p.exists():
            raise CheckpointError(f"{str(self.path)!r} is not a complete sgdlab run directory: {name} is missing")
        return p

    def _json(self, name: str):
        p = self._need(name)
        try:
            return json.loads(p.read_text())
        except (ValueError, OSError) as e:
            raise CheckpointError(f"{str(p)!r} is unreadable or corrupt ({type(e).__name__}: {e})") from None

    def config_table(self) -> dict:
        """config.toml as a plain table (nothing imported)."""
        return load_toml_table(self._need(CONFIG))

    def config(self) -> ExperimentConfig:
        """The run's config; its modules are imported only if they are the caller's own or the
        reader trusts them (``trust_imports``; the rule is in :mod:`sgdlab.store.trust`)."""
        return load_config(self.config_table(), f"run directory {str(self.path)!r}", self.trust_imports)

    def input_changes(self) -> list[str]:
        """What differs from the inputs the run started with (content hashes of its input files
        and of runs.json, recorded in meta.json); empty for run directories that recorded none."""
        # meta.json missing: killed while the directory was created, before anything was recorded
        meta = self.meta() if (self.path / META).exists() else {}
        out = changes(meta[INPUTS], self.config_table()) if INPUTS in meta else []
        runs = self.path / RUNS  # missing: killed while being created; resume writes it afresh
        if RUNS_HASH in meta and runs.exists() and _sha(runs.read_text()) != meta[RUNS_HASH]:
            out.append(f"{RUNS} was edited since the run wrote it")
        return out

    def accept_inputs(self, runs: list) -> None:
        """Record today's inputs as the run's (after ``--accept-changed-inputs``): their hashes,
        and runs.json rewritten from the config."""
        runs_text = dumps([dataclasses.asdict(r) for r in runs])
        atomic_write_text(self.path / RUNS, runs_text)
        self.update_meta(**{INPUTS: fingerprint(self.config_table()), RUNS_HASH: _sha(runs_text)})

    def runs(self) -> list[dict]:
        return self._json(RUNS)

    def meta(self) -> dict:
        return self._json(META)

    def summary(self) -> dict | None:
        """summary.json; metric names a run written before used are read as their current names."""
        if not (self.path / SUMMARY).exists():
            return None
        s = self._json(SUMMARY)
        for entry in [*s.get("runs", []), *s.get("arms", {}).values()]:
            if isinstance(entry.get("final"), dict):
                entry["final"] = METRIC_SPECS.canonical_keys(entry["final"])
        return s

    def complete(self) -> bool:
        """Finished: its summary exists, it recorded its figures, and every one of them exists."""
        if self.summary() is None:
            return False
        meta = self.meta()
        if "finished" not in meta or "figures" not in meta:
            return False
        return all((self.path / f).exists() for f in meta["figures"])

    def lines(self) -> list[MetricsLine]:
        """Every line of metrics.jsonl, parsed (corrupt ones have ``row`` None and an error)."""
        raw = self._need(METRICS).read_bytes().decode(errors="replace")
        parts = raw.split("\n")
        out = []
        for i, text in enumerate(parts):
            last = i == len(parts) - 1
            if last and text == "":
                break
            row, err = parse_row(text)
            out.append(MetricsLine(i + 1, row, complete=not last, error=err))
        return out

    def rows(self) -> list[dict]:
        """The metric rows. A corrupt line in the middle raises (naming it); an incomplete last
        line (a write in progress, or a kill) is ignored: every row before it is intact."""
        out = []
        lines = self.lines()
        for ln in lines:
            if ln.row is None:
                if ln is lines[-1]:
                    break
                raise CheckpointError(f"{str(self.path / METRICS)!r} line {ln.number} is corrupt ({ln.error}); "
                                      f"the lines after it cannot be trusted to belong to this run")
            out.append(ln.row)
        return out

    def metrics(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(steps (E,), name -> (E, R) float64 with NaN for missing/diverged); metric names a run
        written before used are read as their current names (sgdlab.metrics.registry)."""
        if self._known is not None and self._known[0] == self._metrics_stamp():
            return self._known[1], self._known[2]
        return rows_to_arrays([METRIC_SPECS.canonical_keys(r) for r in self.rows()])

    def remember_metrics(self, steps: np.ndarray, metrics: dict[str, np.ndarray]) -> None:
        """The writer's own arrays of every row it wrote: :meth:`metrics` returns them, as reading
        the file would (non-finite values are missing, NaN), until the file changes."""
        self._known = (self._metrics_stamp(), np.asarray(steps, dtype=np.int64),
                       {k: np.where(np.isfinite(v), v, np.nan).astype(np.float64) for k, v in metrics.items()})

    def _metrics_stamp(self) -> tuple[int, int]:
        st = (self.path / METRICS).stat()
        return st.st_size, st.st_mtime_ns

    def validated_rows(self, eval_steps, last_step: int, n_runs: int) -> tuple[list[dict], int | None]:
        """Rows to keep when resuming from a checkpoint at ``last_step``: exactly one valid row per
        evaluation step <= last_step, in order, each with ``n_runs`` values per metric. Rows after
        the checkpoint are dropped (they are recomputed identically). The row *at* the checkpoint
        step may be missing or torn (it can be recomputed from the checkpoint): then the second
        value is that step. Any other gap, corrupt line or foreign row raises, naming the line."""
        advice = (f"restore the file, or start the run again (sgdlab run {self.path / CONFIG} --out "
                  f"{self.path} --overwrite)")
        return resumable_rows(self.lines(), eval_steps, last_step, n_runs, str(self.path / METRICS), advice)

    def write_rows(self, rows: list[dict]) -> None:
        atomic_write_text(self.path / METRICS, "".join(json.dumps(r) + "\n" for r in rows))

    # ----------------------------------------------------------------- writing
    def append_metrics(self, step: int, values: dict[str, np.ndarray]) -> None:
        try:
            with open(self.path / METRICS, "a") as f:
                f.write(json.dumps(metrics_row(step, values)) + "\n")
                f.flush()
        except OSError as e:  # e.g. a full disk: name the file (resume drops the torn row)
            raise os_error("append to", self.path / METRICS, e) from e
        if self.replaced is not None:  # the new run has its first row: the run it replaced goes now
            shutil.rmtree(self.replaced, ignore_errors=True)
            self.replaced = None

    def save_checkpoint(self, state: dict) -> None:
        buf = io.BytesIO()
        import torch  # here, not at import: reading a run directory's tables needs no torch

        torch.save(to_tensors(state), buf)
        atomic_write_bytes(self.path / CHECKPOINT, buf.getvalue())

    def has_checkpoint(self) -> bool:
        return (self.path / CHECKPOINT).exists()

    def restart(self, runs: list) -> None:
        """Back to the state right after ``create`` (config kept): for a run killed before its
        first checkpoint, which has nothing to continue from."""
        if not (self.path / META).exists():
            atomic_write_text(self.path / META, dumps(_provenance()))
        runs_text = dumps([dataclasses.asdict(r) for r in runs])
        atomic_write_text(self.path / RUNS, runs_text)
        self.update_meta(**{RUNS_HASH: _sha(runs_text)})
        atomic_write_text(self.path / METRICS, "")
        (self.path / FIGURES).mkdir(exist_ok=True)

    def load_checkpoint(self) -> dict:
        p = self.path / CHECKPOINT
        if not p.exists():
            raise CheckpointError(f"no checkpoint in {str(self.path)!r}: the run stopped before its first "
                                  f"checkpoint; start it again with `sgdlab run {self.path / CONFIG} --out "
                                  f"{self.path} --overwrite`")
        ckpt = safe_load(p, "checkpoint")
        if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state"), dict):
            raise CheckpointError(f"checkpoint {str(p)!r} does not hold an sgdlab training state")
        return ckpt

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / SUMMARY, dumps(summary))

    def update_meta(self, **kw) -> None:
        meta = self.meta()
        meta.update(kw)
        atomic_write_text(self.path / META, dumps(meta))

    def save_snapshots(self, snaps: dict[int, dict[int, dict[str, torch.Tensor]]]) -> None:
        """Parameters of every run at several steps, ``{step: {run index: {name: tensor}}}``, as
        one file (one atomic write for many steps: snapshots are buffered by the caller and
        written with each checkpoint, never one synced file per step)."""
        if not snaps:
            return
        d = self.path / SNAPSHOTS
        d.mkdir(exist_ok=True)
        steps = sorted(snaps)
        buf = io.BytesIO()
        import torch

        torch.save({"steps": steps, "params": {int(t): snaps[t] for t in steps}}, buf)
        atomic_write_bytes(d / f"part_{steps[0]:010d}_{steps[-1]:010d}.pt", buf.getvalue())

    def snapshots(self) -> list[tuple[int, dict[int, dict[str, torch.Tensor]]]]:
        """[(step, {run: {name: tensor}})] sorted by step; empty if none were saved. (A step
        written twice, by a run resumed from an earlier checkpoint, holds the same values.)"""
        d = self.path / SNAPSHOTS
        out: dict[int, dict] = {}
        for f in sorted(d.glob("*.pt")) if d.exists() else []:
            s = safe_load(f, "snapshot")
            if "steps" in s:  # a part: many steps
                out.update({int(t): v for t, v in s["params"].items()})
            else:  # one step (sgdlab <= 0.1)
                out[int(s["step"])] = s["params"]
        return sorted(out.items())

    def final_params(self) -> tuple[int, dict[int, dict[str, torch.Tensor]]] | None:
        """(step, {run: {name: tensor}}) of the checkpoint, if it records which runs each of its
        parameter groups holds (checkpoints of this version do)."""
        if not self.has_checkpoint():
            return None
        ck = self.load_checkpoint()
        groups = ck.get("groups")
        if groups is None:
            return None
        params = ck["state"]["params"]
        out = {int(r): {k: v[j] for k, v in p.items()} for runs, p in zip(groups, params) for j, r in enumerate(runs)}
        return int(ck["state"]["step"]), out

    def saved_params(self) -> dict[int, dict[int, dict[str, torch.Tensor]]]:
        """Every saved parameter state, ``{step: {run: {name: tensor}}}``: the snapshots and the
        checkpoint's final state (a snapshot at the same step wins: it holds the same values)."""
        out = dict(self.snapshots())
        final = self.final_params()
        if final is not None:
            out.setdefault(final[0], final[1])
        return out

    @property
    def figures(self) -> Path:
        (self.path / FIGURES).mkdir(exist_ok=True)
        return self.path / FIGURES


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _provenance() -> dict:
    import torch

    return {
        "sgdlab_version": _sgdlab_version(),
        "git_revision": git_revision(),
        "command": sys.argv,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(),
    }


def _replaces_a_run(path: Path, overwrite: bool) -> bool:
    """True if ``path`` holds a run that ``overwrite`` replaces; False if it is new or empty.
    Raises for a file in the way, a directory that is not a run, or a run without ``overwrite``."""
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{str(path)!r} is a file; choose a directory for --out")
    if not (path.is_dir() and any(path.iterdir())):
        return False
    if not _ours(path):
        raise CheckpointError(f"{str(path)!r} exists and is not an sgdlab run directory; choose an empty or "
                              f"new --out" + ("; --overwrite replaces run directories only" if overwrite else "")
                              + " (nothing was changed)")
    if not overwrite:
        raise CheckpointError(
            f"run directory {str(path)!r} already holds a run; resume it with `sgdlab run --resume {path}`, "
            f"replace it with --overwrite, or choose another --out (nothing was changed)")
    return True


def _ours(path: Path) -> bool:
    """A run directory, complete or cut short while being created: only sgdlab's own entries."""
    own = {CONFIG, META, RUNS, METRICS, CHECKPOINT, SUMMARY, FIGURES, SNAPSHOTS, LOCK}
    return (path / CONFIG).exists() or all(e.name in own or e.match(TMP_GLOB) for e in path.iterdir())


def remove_stale_trash(path: Path) -> None:
    """Delete directories that an interrupted overwrite of ``path`` moved aside (their owner is dead)."""
    for d in path.parent.glob(f".{path.name}.overwritten-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
