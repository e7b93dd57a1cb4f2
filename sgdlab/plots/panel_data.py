"""What a run's panel figure is drawn from, read from its run directory as plain values.

Kept apart from the drawing (:mod:`sgdlab.plots.panels`, which imports matplotlib) so that a
process can gather a figure's inputs without importing matplotlib and hand them to another
process that draws them (:mod:`sgdlab.workflows.plotter`): the figure is the same file either
way, since :class:`PanelFigure` holds everything the drawing reads, the metric registry's labels
and log axes included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.registry import METRIC_SPECS

if TYPE_CHECKING:
    from sgdlab.store.runs import RunDir

__all__ = ["DEFAULT_PANEL_COUNT", "PanelFigure", "default_panels", "metric_styles", "panel_figure",
           "phase_boundaries"]

# Panels drawn when an experiment names none: the first logged metrics in summary-table order
# (MetricSpec.table: train loss, test loss, then what the model family describes as its headline).
DEFAULT_PANEL_COUNT = 4


@dataclass(frozen=True)
class PanelFigure:
    """One figure of metric panels, as plain values (picklable; no registry lookups left).

    ``steps`` (E,) and ``metrics`` name -> (E, R), only the drawn names; ``runs``: runs.json's
    entries (``index``, ``arm``); ``diverged``: run index -> step it diverged or None;
    ``boundaries``: arm -> steps where its next phase starts; ``styles``: name -> (panel title,
    log axis) from the metric registry."""

    out: Path  # the image file written
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    runs: list[dict]
    names: tuple[str, ...]
    arms: list[str]
    diverged: dict[int, int | None]
    boundaries: dict[str, list[int]]
    styles: dict[str, tuple[str, bool]]
    title: str


def default_panels(logged) -> tuple[str, ...]:
    """The first DEFAULT_PANEL_COUNT logged table metrics, else the first logged metrics."""
    return (tuple(m for m in METRIC_SPECS.table_names() if m in logged)[:DEFAULT_PANEL_COUNT]
            or tuple(sorted(logged))[:DEFAULT_PANEL_COUNT])


def phase_boundaries(cfg) -> dict[str, list[int]]:
    """Arm label -> the steps where its next phase starts (empty for a plain arm)."""
    return {a.label: [s for s, _ in a.bounds(cfg.steps)[1:]] for a in cfg.arms}


def metric_styles(names) -> dict[str, tuple[str, bool]]:
    """name -> (panel title, log axis), from the metric registry (a spec's ``label``, plain
    Unicode, and ``log_scale``)."""
    return {n: (METRIC_SPECS.label(n), METRIC_SPECS.log_scale(n)) for n in names}


def panel_figure(rd: RunDir, names: tuple[str, ...] | None = None, fmt: str = "png") -> PanelFigure | None:
    """The experiment's panel figure (config ``figure``, else :func:`default_panels`; ``names``:
    chosen panels, drawn into their own file) of the run in ``rd``; None before its first
    evaluation. Unknown names raise, listing the logged metrics."""
    cfg = rd.config()
    steps, metrics = rd.metrics()
    if steps.size == 0:
        return None
    runs = rd.runs()
    summary = rd.summary() or {}
    diverged = {r["index"]: r.get("diverged_at") for r in summary.get("runs", [])}
    if not summary:  # unfinished run: divergence = a run whose last logged values are NaN
        last = metrics["train_loss"][-1]
        diverged = {r["index"]: (int(steps[-1]) if not np.isfinite(last[r["index"]]) else None) for r in runs}
    custom = bool(names)
    names = METRIC_SPECS.canonical_names(names, "metrics") if names else ()
    names = tuple(names or cfg.figure or default_panels(metrics))
    for n in names:
        if n not in metrics:
            raise ConfigError(f"{rd.path}: {METRIC_SPECS.choices(n, metrics)} (the metrics this run logged)")
    bounds = phase_boundaries(cfg)
    dashed = ", dashed = phase boundary" if any(bounds.values()) else ""
    # Chosen panels go to their own file: the experiment's own figure is never replaced by them.
    stem = f"{cfg.name}-{'-'.join(names)}" if custom else cfg.name
    return PanelFigure(out=rd.figures / f"{stem}.{fmt}", steps=steps, metrics={n: metrics[n] for n in names},
                       runs=runs, names=names, arms=[a.label for a in cfg.arms], diverged=diverged,
                       boundaries=bounds, styles=metric_styles(names),
                       title=f"{cfg.name}: median over seeds, band = interquartile range{dashed}")
