"""Published numbers an experiment is meant to reproduce, printed beside sgdlab's own.

An experiment file lists them as ``[[references]]`` tables::

    [[references]]
    metric = "test_error"                  # a metric the experiment logs, in its own units
    value = 0.06                           # the published number (94% accuracy = 0.06 error)
    where = ["model.name=cnn", "data.shuffle_seq=false"]   # the settings it was published for
    source = "MNIST-1D README"

The tables of ``sgdlab run``, ``sgdlab sweep`` and ``sgdlab compare`` add a column
``METRIC (published)`` to every row whose run matches ``where`` (every ``KEY=VALUE`` equal to the
run's recorded config; an empty ``where`` matches every run; a key the config does not have,
after a kind switch say, matches no run). Matching reads the recorded config as plain data, so a
run directory from elsewhere is never imported to show its references.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sgdlab.core.config import check, parse_value, value_at

__all__ = ["Reference", "matching"]


@dataclass(frozen=True)
class Reference:
    metric: str  # a metric name of the experiment (metrics.names or one its model logs)
    value: float  # the published number, in the metric's own units
    # KEY=VALUE settings (dotted config keys, as --set) the number was published for; empty: every run
    where: tuple[str, ...] = ()
    source: str = ""  # where the number comes from (paper, table, README), shown in `sgdlab show`

    def __post_init__(self):
        check(bool(self.metric.strip()), "references: metric must name a metric, got an empty string")
        check(math.isfinite(self.value), f"references: value of {self.metric!r} must be finite, got {self.value}")
        for w in self.where:
            key, sep, _ = w.partition("=")
            check(bool(sep and key.strip()), f"references: where item {w!r} must look like key.path=value")

    def conditions(self) -> list[tuple[list[str], object]]:
        """``where`` as (dotted key split, parsed value) pairs."""
        out = []
        for w in self.where:
            key, _, text = w.partition("=")
            out.append((key.strip().split("."), parse_value(text.strip())))
        return out


def _equal(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def matching(table: dict) -> dict[str, dict]:
    """``metric -> {"value", "source"}`` of the references in plain-dict config ``table`` (a run's
    config.toml) whose ``where`` holds for that config; a metric matched twice keeps the first."""
    out: dict[str, dict] = {}
    for entry in table.get("references") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            continue  # a hand-edited table: nothing to show rather than a traceback
        try:
            ref = Reference(metric=entry["metric"], value=float(entry.get("value", math.nan)),
                            where=tuple(entry.get("where") or ()), source=str(entry.get("source", "")))
            ok = all(_equal(value_at(table, keys), value) for keys, value in ref.conditions())
        except (KeyError, TypeError, ValueError):  # a malformed entry of a recorded config: data, not code
            continue
        if ok and ref.metric not in out:
            out[ref.metric] = {"value": ref.value, "source": ref.source}
    return out
