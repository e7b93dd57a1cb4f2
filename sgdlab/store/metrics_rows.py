"""The rows of ``metrics.jsonl``: one JSON object per evaluation step, ``{"step": t, metric:
[value of run 0, run 1, ...]}`` with ``null`` for a missing (non-finite) value; parsed and checked
line by line (a kill may cut the last line), turned into ``(steps (E,), {metric: (E, R)})``
arrays, and checked against a checkpoint before a resume appends to them."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from sgdlab.core.errors import CheckpointError
from sgdlab.metrics.registry import METRIC_SPECS

# The types a metric value may have in a row (JSON numbers, null); checked by type, not by
# isinstance, because a run's file holds hundreds of thousands of values and this is the fast way.
_NUMBER_TYPES = frozenset({int, float, bool, type(None)})

__all__ = ["MetricsLine", "metrics_row", "parse_row", "resumable_rows", "rows_to_arrays"]


@dataclasses.dataclass
class MetricsLine:
    """One line of metrics.jsonl: its 1-based number, the parsed row (None if corrupt), and
    whether it ended with a newline (a line without one was cut by a kill or is being written)."""

    number: int
    row: dict | None
    complete: bool
    error: str = ""


def parse_row(text: str) -> tuple[dict | None, str]:
    """The row of one line, or None and what is wrong with it."""
    try:
        row = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg})"
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        return None, "no integer 'step'"
    for k, v in row.items():
        if k != "step" and not (isinstance(v, list) and set(map(type, v)) <= _NUMBER_TYPES):
            return None, f"metric {k!r} is not a list of numbers"
    return row, ""


def metrics_row(step: int, values: dict[str, np.ndarray]) -> dict:
    """The row of step ``step``: every metric's (R,) values as a list, non-finite ones as None."""
    row = {"step": int(step)}
    row.update({k: [None if not math.isfinite(x) else float(x) for x in v] for k, v in values.items()})
    return row


def rows_to_arrays(rows: list[dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(steps (E,), {metric: (E, R) float64, NaN where None})`` of the rows."""
    steps = np.array([r["step"] for r in rows], dtype=np.int64)
    names = [k for k in (rows[0] if rows else {}) if k != "step"]
    out = {k: np.array([r[k] for r in rows], dtype=np.float64) for k in names}  # None -> NaN
    return steps, out


def resumable_rows(lines: list[MetricsLine], eval_steps, last_step: int, n_runs: int, where: str,
                   advice: str) -> tuple[list[dict], int | None]:
    """What :meth:`sgdlab.store.runs.RunDir.validated_rows` keeps of ``lines`` (the file
    ``where``): one valid row per evaluation step <= ``last_step``, or the step at the checkpoint
    to recompute; any other problem raises, naming the line, followed by ``advice``."""
    expected = [int(t) for t in eval_steps if t <= last_step]
    keep: list[dict] = []
    names = None
    for i, t in enumerate(expected):
        ln = lines[i] if i < len(lines) else None
        at_checkpoint = t == last_step
        problem = None
        if ln is None:
            problem = f"has no row for evaluation step {t} (it ends after {len(lines)} lines)"
        elif ln.row is None:
            problem = f"line {ln.number} is corrupt ({ln.error})"
        elif ln.row["step"] != t:
            problem = f"line {ln.number} has step {ln.row['step']}, expected evaluation step {t}"
        else:
            row = METRIC_SPECS.canonical_keys(ln.row)  # rows an earlier release wrote: current names
            bad = [k for k, v in row.items() if k != "step" and len(v) != n_runs]
            row_names = sorted(k for k in row if k != "step")
            if bad:
                problem = f"line {ln.number}: metric {bad[0]!r} has {len(row[bad[0]])} values for {n_runs} runs"
            elif names is not None and row_names != names:
                problem = f"line {ln.number} logs other metrics than line 1"
            names = names or row_names
        if problem is None:
            keep.append(row)
            continue
        if at_checkpoint:
            return keep, t
        raise CheckpointError(f"{where} {problem}; it cannot be recomputed from the checkpoint at step "
                              f"{last_step}: {advice}")
    return keep, None
