"""Run directories: resolved config, provenance, append-only metrics, checkpoints, summary.

Layout of a run directory::

    config.toml     the resolved ExperimentConfig (re-runnable: sgdlab run config.toml)
    meta.json       sgdlab version, git revision, command, python/torch/numpy versions, host, times
    runs.json       one row per run: index, arm, seed, schedule, optimizer
    metrics.jsonl   one JSON line per evaluation step {"step": t, "<metric>": [value per run]},
                    appended and flushed as produced (readable while running)
    checkpoint.pt   latest training state (atomic replace)
    snapshots/      parameters of every run at chosen steps (config `snapshots`), one file per step
    summary.json    per run: final metrics, seed, schedule, divergence step (written at the end)
    figures/        PNG figures

Every file except metrics.jsonl is written to a temporary name and renamed into place,
so a kill at any moment leaves either the old or the new version, never a torn one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import io
import json
import math
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import dump_toml, load_toml
from .errors import CheckpointError
from .experiment import ExperimentConfig

CONFIG, META, RUNS, METRICS, CHECKPOINT, SUMMARY, FIGURES, SNAPSHOTS = (
    "config.toml", "meta.json", "runs.json", "metrics.jsonl", "checkpoint.pt", "summary.json", "figures",
    "snapshots")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _clean(x):
    """NaN/inf -> None so that the JSON is standard (readable by any tool)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


def dumps(obj) -> str:
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default, allow_nan=True))), indent=1)


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    # ----------------------------------------------------------------- creation
    @classmethod
    def create(cls, path: str | Path, cfg: ExperimentConfig, runs: list, overwrite: bool = False) -> RunDir:
        rd = cls(path)
        if rd.path.exists() and any(rd.path.iterdir()):
            if (rd.path / CONFIG).exists() and not overwrite:
                raise CheckpointError(
                    f"run directory {str(rd.path)!r} already holds a run; resume it with "
                    f"`sgdlab run --resume {rd.path}` or choose another --out (nothing was changed)")
            if not (rd.path / CONFIG).exists():
                raise CheckpointError(f"{str(rd.path)!r} exists and is not an sgdlab run directory; "
                                      f"choose an empty or new --out")
        rd.path.mkdir(parents=True, exist_ok=True)
        (rd.path / FIGURES).mkdir(exist_ok=True)
        atomic_write_text(rd.path / CONFIG, dump_toml(cfg))
        meta = {
            "sgdlab_version": __version__,
            "git_revision": git_revision(),
            "command": sys.argv,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "host": socket.gethostname(),
            "platform": platform.platform(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(),
        }
        atomic_write_text(rd.path / META, dumps(meta))
        atomic_write_text(rd.path / RUNS, dumps([dataclasses.asdict(r) for r in runs]))
        (rd.path / METRICS).write_text("")
        return rd

    # ----------------------------------------------------------------- reading
    def _need(self, name: str) -> Path:
        p = self.path / name
        if not p.exists():
            raise CheckpointError(f"{str(self.path)!r} is not a complete sgdlab run directory: {name} is missing")
        return p

    def config(self) -> ExperimentConfig:
        return load_toml(ExperimentConfig, self._need(CONFIG))

    def runs(self) -> list[dict]:
        return json.loads(self._need(RUNS).read_text())

    def meta(self) -> dict:
        return json.loads(self._need(META).read_text())

    def summary(self) -> dict | None:
        p = self.path / SUMMARY
        return json.loads(p.read_text()) if p.exists() else None

    def metrics(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(steps (E,), name -> (E, R) float64 with NaN for missing/diverged)."""
        rows = []
        for line in self._need(METRICS).read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a torn last line from a kill: everything before it is intact
        steps = np.array([r["step"] for r in rows], dtype=np.int64)
        names = [k for k in (rows[0] if rows else {}) if k != "step"]
        out = {k: np.array([[np.nan if v is None else v for v in r[k]] for r in rows], dtype=np.float64)
               for k in names}
        return steps, out

    # ----------------------------------------------------------------- writing
    def append_metrics(self, step: int, values: dict[str, np.ndarray]) -> None:
        row = {"step": int(step)}
        row.update({k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in values.items()})
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def truncate_metrics(self, last_step: int) -> None:
        """Keep metric rows with step <= last_step (the checkpoint being resumed)."""
        keep = []
        for line in self._need(METRICS).read_text().splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError):
                break
        atomic_write_text(self.path / METRICS, "".join(l + "\n" for l in keep))

    def save_checkpoint(self, state: dict) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path / CHECKPOINT, buf.getvalue())

    def load_checkpoint(self) -> dict:
        p = self.path / CHECKPOINT
        if not p.exists():
            raise CheckpointError(f"no checkpoint in {str(self.path)!r}: the run stopped before its first "
                                  f"checkpoint; start it again with `sgdlab run {self.path / CONFIG}`")
        try:
            return torch.load(p, map_location="cpu", weights_only=False)
        except Exception as e:  # torch raises several types for torn/corrupt files  # noqa: BLE001
            raise CheckpointError(f"checkpoint {str(p)!r} is corrupt or unreadable ({type(e).__name__}: {e}); "
                                  f"the metrics written so far are intact in {METRICS}") from None

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / SUMMARY, dumps(summary))

    def update_meta(self, **kw) -> None:
        meta = self.meta()
        meta.update(kw)
        atomic_write_text(self.path / META, dumps(meta))

    def save_snapshot(self, step: int, params: dict[int, dict[str, torch.Tensor]]) -> None:
        """Parameters of every run at one step: {run index: {name: tensor}}."""
        d = self.path / SNAPSHOTS
        d.mkdir(exist_ok=True)
        buf = io.BytesIO()
        torch.save({"step": int(step), "params": params}, buf)
        atomic_write_bytes(d / f"step_{int(step):010d}.pt", buf.getvalue())

    def snapshots(self) -> list[tuple[int, dict[int, dict[str, torch.Tensor]]]]:
        """[(step, {run: {name: tensor}})] sorted by step; empty if none were saved."""
        d = self.path / SNAPSHOTS
        out = []
        for f in sorted(d.glob("step_*.pt")) if d.exists() else []:
            try:
                s = torch.load(f, map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(f"snapshot {str(f)!r} is corrupt ({type(e).__name__}: {e})") from None
            out.append((s["step"], s["params"]))
        return out

    @property
    def figures(self) -> Path:
        (self.path / FIGURES).mkdir(exist_ok=True)
        return self.path / FIGURES
