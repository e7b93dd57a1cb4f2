"""Figures drawn from run directories (`sgdlab plot DIR` redraws them all).

Every experiment gets its metric panels (config ``figure``); experiments may add named
figures (config ``extra_figures``) registered in :data:`FIGURES`: a function
``fn(run_dir: RunDir) -> list[Path]`` that reads what it needs from disk.

Importing this package stays light (no matplotlib): registering a figure must not cost the
commands that only read configs. :func:`lazy_figure` names a drawing function by module, imported
when the figure is drawn.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from sgdlab.core.errors import SgdlabError
from sgdlab.core.registry import Registry

if TYPE_CHECKING:
    from sgdlab.plots.panel_data import PanelFigure
    from sgdlab.store.runs import RunDir

FIGURES: Registry = Registry("figure")

__all__ = ["FIGURES", "draw_metric_panels", "lazy_figure", "plot_panels", "plot_run"]


def lazy_figure(module: str, function: str) -> Callable:
    """``fn(run_dir) -> list[Path]`` that imports ``module`` and calls its ``function`` when drawn."""

    def draw(rd) -> list[Path]:
        return getattr(importlib.import_module(module), function)(rd)

    draw.__qualname__ = draw.__name__ = function
    draw.__doc__ = f"{module}.{function} (imported when drawn)"
    return draw


# Figures of the framework itself; each study registers its own through sgdlab.register_figure.
FIGURES.add("sharpness_edge", lazy_figure("sgdlab.plots.curvature", "sharpness_edge"))
FIGURES.add("sharpest_directions", lazy_figure("sgdlab.plots.curvature", "sharpest_directions"))
FIGURES.add("monitor", lazy_figure("sgdlab.plots.monitor", "monitor_figure"))


def plot_run(path: str | Path | RunDir, names: tuple[str, ...] | None = None, fmt: str = "png",
             errors: list[str] | None = None, trust_imports: bool = False,
             draw_panels: Callable[[PanelFigure], Path] | None = None) -> list[Path]:
    """Draw the panels (``names`` or the config's ``figure``) and the experiment's extra figures.

    Unknown panel names raise (listing the logged metrics) before anything is drawn. With an
    ``errors`` list, a figure that fails is recorded there and the others are still drawn. The
    run's modules are imported only if they are the caller's own or ``trust_imports``
    (:mod:`sgdlab.store.trust`); a figure that one of them registers is then not drawn, and says so.
    ``path``: the run directory, or its open ``RunDir`` (whose ``trust_imports`` then applies).
    ``draw_panels``: draws the panel figure, gathered here (by default in this process; the
    ``sgdlab`` command hands it to a process that imported matplotlib while it started:
    :mod:`sgdlab.workflows.plotter`).
    """
    import sys

    from sgdlab.plots.panel_data import panel_figure
    from sgdlab.store.runs import RunDir
    from sgdlab.store.trust import TRUST_HINT, untrusted

    rd = path if isinstance(path, RunDir) else RunDir(path, trust_imports=trust_imports)
    trust_imports = rd.trust_imports
    cfg = rd.config()
    job = panel_figure(rd, names, fmt)
    out = [] if job is None else [(draw_panels or _draw_here)(job)]
    if names is None:
        foreign = [] if trust_imports else untrusted(rd.config_table())
        for fig in cfg.extra_figures:
            if foreign and fig not in FIGURES:
                note = f"{fig}: not drawn: it comes from the run's modules, which were not imported ({TRUST_HINT})"
                if errors is None:
                    print(f"note: figure {note}", file=sys.stderr)
                else:
                    errors.append(note)
                continue
            draw = FIGURES.get(fig)
            try:
                out += draw(rd)
            except (SgdlabError, OSError, ValueError, RuntimeError) as e:
                if errors is None:
                    raise
                errors.append(f"{fig}: {type(e).__name__}: {e}")
    return out


def _draw_here(job: PanelFigure) -> Path:
    from sgdlab.plots.panels import draw_panel_figure

    return draw_panel_figure(job)


def __getattr__(name):  # the panel functions, imported on first use (matplotlib)
    if name in ("draw_metric_panels", "plot_panels"):
        from sgdlab.plots import panels

        return getattr(panels, name)
    raise AttributeError(f"module 'sgdlab.plots' has no attribute {name!r}")
