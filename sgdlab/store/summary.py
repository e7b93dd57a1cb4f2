"""Per-run and per-arm summaries of a finished run, and the table printed at the end."""

from __future__ import annotations

import math

import numpy as np

from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.spec.experiment import ExperimentConfig


def table_columns(cfg: ExperimentConfig | dict) -> tuple[str, ...]:
    """The metrics the end-of-run table shows: the experiment's own choice, whatever the model family.

    ``metrics.names`` when given (the requested metrics, in that order), then the ``figure``
    panels; without ``metrics.names``, the registry's summary-table metrics (MetricSpec.table, in
    that order) and then the figure panels. ``cfg``: a config, or a run directory's config table
    as read from disk (nothing of the run is imported to print its table)."""
    if isinstance(cfg, dict):
        names, figure = tuple((cfg.get("metrics") or {}).get("names") or ()), tuple(cfg.get("figure") or ())
    else:
        names, figure = cfg.metrics.names, cfg.figure
    first = names or tuple(METRIC_SPECS.table_names())
    return tuple(METRIC_SPECS.canonical_names(dict.fromkeys((*first, *figure)), "metrics.names"))


def _stats(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"median": None, "q25": None, "q75": None, "min": None, "max": None, "n": 0}
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "min": float(x.min()),
            "max": float(x.max()), "n": int(x.size)}


def summarize(cfg: ExperimentConfig, runs: list[dict], steps: np.ndarray, metrics: dict[str, np.ndarray],
              diverged: np.ndarray, wall_seconds: float) -> dict:
    """Final metrics per run (None for diverged runs) and medians/quartiles per arm."""
    per_run = []
    for r in runs:
        i = r["index"]
        d = int(diverged[i])
        final = {k: (None if d >= 0 or not math.isfinite(v[-1, i]) else float(v[-1, i])) for k, v in metrics.items()}
        per_run.append({**r, "diverged_at": d if d >= 0 else None, "final": final})
    arms = {}
    for arm in cfg.arms:
        idx = [r["index"] for r in runs if r["arm"] == arm.label]
        div = [runs[i]["seed"] for i in idx if diverged[i] >= 0]
        arms[arm.label] = {
            "schedule": arm.describe()[0],
            "n_runs": len(idx),
            "n_diverged": len(div),
            "diverged_seeds": div,
            "final": {k: _stats(np.where(diverged[idx] >= 0, np.nan, v[-1, idx])) for k, v in metrics.items()},
        }
    return {"experiment": cfg.name, "steps": cfg.steps, "n_runs": len(runs), "wall_seconds": wall_seconds,
            "arms": arms, "runs": per_run}


def _fmt(x) -> str:
    if x is None:
        return "-"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.4g}"
    return f"{x:.2e}"


def format_table(summary: dict, columns: tuple[str, ...] | None = None, published: dict | None = None) -> str:
    """Plain-text table: one row per arm, medians [q25, q75] over non-diverged seeds, of the metrics
    ``columns`` (``table_columns(cfg)``; default: the registry's summary-table metrics) that were logged;
    ``published``: ``metric -> {"value", ...}`` (``sgdlab.spec.references.matching``) shown beside them."""
    published = published or {}
    arms = {name: {**a, "final": METRIC_SPECS.canonical_keys(a["final"])} for name, a in summary["arms"].items()}
    wanted = list(columns or METRIC_SPECS.table_names())
    wanted += [m for m in published if m not in wanted]  # a published number is always shown
    present = [m for m in wanted if any(m in a["final"] for a in arms.values())]
    head = ["arm", "diverged"]
    for m in present:
        head += [f"{m} (median [IQR])"] + [f"{m} (published)"] * (m in published)
    rows = []
    for name, a in arms.items():
        cells = [name, f"{a['n_diverged']}/{a['n_runs']}"]
        for m in present:
            s = a["final"].get(m)
            cells.append("-" if s is None or s["median"] is None else
                         f"{_fmt(s['median'])} [{_fmt(s['q25'])}, {_fmt(s['q75'])}]")
            if m in published:
                cells.append(_fmt(published[m]["value"]))
        rows.append(cells)
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    title = (f"{summary['experiment']}: {summary['n_runs']} runs x {summary['steps']} steps "
             f"in {summary['wall_seconds']:.1f} s")
    out = [title, line(head), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)
