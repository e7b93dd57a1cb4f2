"""One progress bar over the steps of a sweep's pending jobs, fed by reading their metrics files
(works for every executor: the workers write where the driver can read)."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

__all__ = ["SweepProgress"]

# Seconds between progress polls (reads of every pending job's metrics file).
POLL_SECONDS = 1.0
# Bytes first read from the end of a metrics file to find its last row (grown if a row is longer).
TAIL_BYTES = 65536


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


class SweepProgress:
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
