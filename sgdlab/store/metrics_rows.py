"""The rows of ``metrics.jsonl``: one JSON object per evaluation step, ``{"step": t, metric:
[value of run 0, run 1, ...]}`` with ``null`` for a missing (non-finite) value; parsed and checked
line by line (a kill may cut the last line), and turned into ``(steps (E,), {metric: (E, R)})``
arrays."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

# The types a metric value may have in a row (JSON numbers, null); checked by type, not by
# isinstance, because a run's file holds hundreds of thousands of values and this is the fast way.
_NUMBER_TYPES = frozenset({int, float, bool, type(None)})

__all__ = ["MetricsLine", "metrics_row", "parse_row", "rows_to_arrays"]


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
