"""Figures drawn from run directories (`sgdlab plot DIR` redraws them all).

Every experiment gets its metric panels (config ``figure``); experiments may add named
figures (config ``extra_figures``) registered in :data:`FIGURES`: a function
``fn(run_dir: RunDir) -> list[Path]`` that reads what it needs from disk.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SgdlabError
from ..registry import Registry
from ..runs import RunDir
from .panels import draw_metric_panels, plot_panels

FIGURES: Registry = Registry("figure")


def plot_run(path: str | Path, names: tuple[str, ...] | None = None, fmt: str = "png",
             errors: list[str] | None = None, trust_imports: bool = False) -> list[Path]:
    """Draw the panels (``names`` or the config's ``figure``) and the experiment's extra figures.

    Unknown panel names raise (listing the logged metrics) before anything is drawn. With an
    ``errors`` list, a figure that fails is recorded there and the others are still drawn. The
    run's modules are imported only if they are the caller's own or ``trust_imports``
    (:mod:`sgdlab.trust`); a figure that one of them registers is then not drawn, and says so.
    """
    import sys

    from ..trust import TRUST_HINT, untrusted

    rd = RunDir(path, trust_imports=trust_imports)
    cfg = rd.config()
    out = plot_panels(rd, names, fmt)
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


__all__ = ["FIGURES", "draw_metric_panels", "plot_panels", "plot_run"]

from . import (
    curvature,  # noqa: F401  (registers sharpness_edge, sharpest_directions)
    monitor,  # noqa: F401  (registers monitor: run directories written by sgdlab.Monitor)
    related,  # noqa: F401  (registers linear2_large_step, support_identification, replacement)
    relu,  # noqa: F401  (registers neuron_movement, neuron_movement_gif, learned_function_1d)
    surface,  # noqa: F401  (registers loss_surface, loss_surface_gif)
)
