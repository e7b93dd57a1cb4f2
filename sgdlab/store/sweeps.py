"""A sweep directory on disk: ``SWEEP/index.json`` (grid points -> jobs and arms) and one run
directory per job under ``SWEEP/jobs/``. Planning and executing a sweep are the workflows'
(:mod:`sgdlab.workflows.sweep`); this is what every reader of a sweep needs.

``index.json``: ``experiment``, ``axes`` ([key, values] per grid axis), ``sets``, ``points`` (one
:class:`Point` each) and ``jobs`` (``id``, ``dir``, ``config``, ``status``: pending / done / failed,
``error`` of a failed job, ``n_runs_hint``). Written atomically after every finished job.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from sgdlab.core.errors import CheckpointError
from sgdlab.store.runs import RunDir, atomic_write_text, dumps, ensure_writable_dir

INDEX = "index.json"
JOBS = "jobs"

__all__ = ["INDEX", "JOBS", "Point", "SweepDir"]


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


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)




class SweepDir:
    """A sweep directory: its index, grid points and pending jobs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _check_new(self) -> None:
        """Refuse a path that is a file, already holds a sweep, or is a non-empty other directory."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{str(self.path)!r} is a file; choose a directory for the sweep")
        if (self.path / INDEX).exists():
            raise CheckpointError(f"{str(self.path)!r} already holds a sweep; resume it with "
                                  f"`sgdlab sweep --resume {self.path}` (nothing was changed)")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise CheckpointError(f"{str(self.path)!r} exists and is not a sweep directory; choose an empty or new --out")

    def _init(self, index: dict) -> None:
        ensure_writable_dir(self.path, "sweep directory")
        self._write(index)

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
