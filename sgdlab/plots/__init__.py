"""Figures drawn from run directories (`sgdlab plot DIR` redraws them all).

Every experiment gets its metric panels (config ``figure``); experiments may add named
figures (config ``extra_figures``) registered in :data:`FIGURES`: a function
``fn(run_dir: RunDir) -> list[Path]`` that reads what it needs from disk.
"""

from __future__ import annotations

from pathlib import Path

from sgdlab.core.errors import SgdlabError
from sgdlab.core.registry import Registry
from sgdlab.store.runs import RunDir
from sgdlab.plots.panels import draw_metric_panels, plot_panels

FIGURES: Registry = Registry("figure")


def plot_run(path: str | Path, names: tuple[str, ...] | None = None, fmt: str = "png",
             errors: list[str] | None = None) -> list[Path]:
    """Draw the panels (``names`` or the config's ``figure``) and the experiment's extra figures.

    Unknown panel names raise (listing the logged metrics) before anything is drawn. With an
    ``errors`` list, a figure that fails is recorded there and the others are still drawn.
    """
    rd = RunDir(path)
    cfg = rd.config()
    out = plot_panels(rd, names, fmt)
    if names is None:
        for fig in cfg.extra_figures:
            draw = FIGURES.get(fig)
            try:
                out += draw(rd)
            except (SgdlabError, OSError, ValueError, RuntimeError) as e:
                if errors is None:
                    raise
                errors.append(f"{fig}: {type(e).__name__}: {e}")
    return out


__all__ = ["FIGURES", "draw_metric_panels", "plot_panels", "plot_run"]

from sgdlab.plots import (
    curvature,  # noqa: F401  (registers sharpness_edge, sharpest_directions)
    monitor,  # noqa: F401  (registers monitor: run directories written by sgdlab.Monitor)
    related,  # noqa: F401  (registers linear2_large_step, support_identification, replacement)
    relu,  # noqa: F401  (registers neuron_movement, neuron_movement_gif, learned_function_1d)
    surface,  # noqa: F401  (registers loss_surface, loss_surface_gif)
)
