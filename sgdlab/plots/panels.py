"""Metric panels: per arm the median over seeds with an interquartile band."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure  # OO API: no pyplot global state, works headless

from sgdlab.plots.panel_data import PanelFigure, metric_styles, panel_figure
from sgdlab.store.runs import RunDir

# Panel titles and log axes come from the metric registry (sgdlab.metrics.registry: a spec's
# ``label``, plain Unicode, and ``log_scale``).
PANEL_INCHES = (4.2, 3.4)  # width, height of one metric panel
MARGIN_INCHES = (0.62, 0.12, 0.5, 0.62, 0.72)  # left, right, bottom, top (title + suptitle), between panels
PNG_COMPRESS_LEVEL = 1
# The legend sits below the panels (never over a curve): this many arms per row, rows this tall.
LEGEND_COLUMNS = 3
LEGEND_ROW_INCHES = 0.22
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


class PlainLogFormatter(ticker.LogFormatterSciNotation):
    """matplotlib's default log-axis labels (same ticks, same text) as plain Unicode, e.g. 10⁻⁵
    and 2×10⁻⁵ instead of mathtext."""

    def __call__(self, x, pos=None):
        label = super().__call__(x, pos)
        m = re.fullmatch(r"\$\\mathdefault\{(.*)\}\$", label)
        if m is None:
            return label
        body = m.group(1).replace(r"\times", "×")
        body = re.sub(r"\^\{([^}]*)\}", lambda e: e.group(1).translate(_SUPERSCRIPT), body)
        return body.replace("-", "−")


def plain_tick_labels(fig: Figure) -> None:
    """Swap the default mathtext log-axis formatters of ``fig`` for :class:`PlainLogFormatter`."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for get, set_ in ((axis.get_major_formatter, axis.set_major_formatter),
                              (axis.get_minor_formatter, axis.set_minor_formatter)):
                f = get()
                if type(f) is ticker.LogFormatterSciNotation:
                    set_(PlainLogFormatter(axis.get_transform().base, labelOnlyBase=f.labelOnlyBase,
                                           minor_thresholds=f.minor_thresholds))


@contextlib.contextmanager
def quiet_nan():
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings: a fully diverged arm or
    grid point is expected, drawn as a gap, and reported in the tables."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _band(values: np.ndarray):
    """median, q25, q75 over runs (axis 1), ignoring NaN (diverged / not yet reached): numpy's
    linear-interpolation percentiles, vectorized over rows (nanpercentile loops over them)."""
    v = np.where(np.isfinite(values), values, np.nan)
    srt = np.sort(v, axis=1)  # NaN last
    cnt = np.isfinite(v).sum(axis=1)
    out = []
    for q in (0.5, 0.25, 0.75):
        pos = q * np.maximum(cnt - 1, 0)
        i = np.floor(pos).astype(int)
        j = np.minimum(i + 1, np.maximum(cnt - 1, 0))
        a = np.take_along_axis(srt, i[:, None], 1)[:, 0]
        b = np.take_along_axis(srt, j[:, None], 1)[:, 0]
        with np.errstate(invalid="ignore"):
            val = a + (b - a) * (pos - i)
        out.append(np.where(cnt > 0, val, np.nan))
    return tuple(out)


# Log-axis lower limit. An arm whose median curve falls more than OUTLIER_GAP_DECADES below the
# lowest point of every other arm (e.g. deterministic GD interpolating to the float64 rounding
# floor, ~1e-32, while SGD arms stabilize at 1e-3..1e-8) would stretch the axis and flatten the
# others: the axis then stops MARGIN_DECADES below the other arms and the panel states the cut
# arm's minimum. 6 decades: far more than any seed spread or stabilized-loss difference seen.
OUTLIER_GAP_DECADES = 6.0
MARGIN_DECADES = 1.0


def log_lower_limit(arm_minima: dict[str, float]) -> tuple[float | None, list[str]]:
    """Lower y-limit of a log panel from each arm's smallest positive median value.

    Returns (limit or None for matplotlib's automatic choice, arms cut by it). Arms are
    dropped from the bottom while the next-lowest arm lies more than OUTLIER_GAP_DECADES
    above; the limit is MARGIN_DECADES below the lowest arm that stays.
    """
    finite = {a: v for a, v in arm_minima.items() if np.isfinite(v) and v > 0}
    order = sorted(finite, key=finite.get)
    cut = []
    while len(order) - len(cut) >= 2:
        low, nxt = order[len(cut)], order[len(cut) + 1]
        if np.log10(finite[nxt]) - np.log10(finite[low]) <= OUTLIER_GAP_DECADES:
            break
        cut.append(low)
    if not cut:
        return None, []
    return 10.0 ** (np.log10(finite[order[len(cut)]]) - MARGIN_DECADES), cut


def draw_metric_panels(steps, metrics, runs, names, arms, title="", diverged=None, boundaries=None,
                       styles=None) -> Figure:
    """One panel per metric; per arm the median over seeds with an interquartile band;
    an x marks where a run diverged (at its last finite value); a dashed vertical line in the
    arm's colour marks each phase boundary (``boundaries``: arm -> steps). Log panels choose
    their lower limit with :func:`log_lower_limit`; one legend below the panels. ``styles``:
    name -> (title, log axis), by default from the metric registry (:func:`metric_styles`)."""
    styles = styles or metric_styles(names)
    legend_rows = -(-len(arms) // LEGEND_COLUMNS)
    legend = LEGEND_ROW_INCHES * legend_rows
    width, height = PANEL_INCHES[0] * len(names), PANEL_INCHES[1] + legend
    fig = Figure(figsize=(width, height))
    # Fixed margins (inches) instead of constrained layout, which measures every tick label in
    # an extra layout pass (about half of the save time); the legend gets its rows below.
    left, right, bottom, top, gap = MARGIN_INCHES
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=(bottom + legend) / height,
                        top=1 - top / height, wspace=gap / (PANEL_INCHES[0] - gap))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colors = [f"C{i}" for i in range(10)]
    handles = {}
    for ax, name in zip(axes, names):
        if name not in metrics:
            ax.set_title(f"{name}: not logged")
            continue
        vals = metrics[name]
        minima = {}
        for k, arm in enumerate(arms):
            idx = np.array([r["index"] for r in runs if r["arm"] == arm])
            c = colors[k % len(colors)]
            med, lo, hi = _band(vals[:, idx])
            with np.errstate(invalid="ignore"):
                pos = med[np.isfinite(med) & (med > 0)]
            minima[arm] = float(pos.min()) if pos.size else np.nan
            n_div = 0 if diverged is None else sum(diverged.get(int(i)) is not None for i in idx)
            label = f"{arm}" + (f" ({n_div}/{len(idx)} diverged)" if n_div else "")
            (line,) = ax.plot(steps, med, color=c, lw=1.6, label=label)
            handles.setdefault(arm, line)
            if len(idx) > 1:
                ax.fill_between(steps, lo, hi, color=c, alpha=0.2, lw=0)
            if diverged:  # one marker artist per arm: hundreds of diverged runs draw as fast as one
                xs, ys = [], []
                for i in idx:
                    d = diverged.get(int(i))
                    finite = np.isfinite(vals[:, i])
                    if d is not None and finite.any():
                        xs.append(d)
                        ys.append(vals[np.nonzero(finite)[0][-1], i])
                if xs:
                    ax.plot(xs, ys, marker="x", color=c, ms=7, mew=2, ls="none")
        for k, arm in enumerate(arms):
            for b in (boundaries or {}).get(arm, []):
                ax.axvline(b, color=colors[k % len(colors)], ls="--", lw=1.0, alpha=0.7)
        label, log_axis = styles[name]
        if log_axis:
            ax.set_yscale("log")
            limit, cut = log_lower_limit(minima)
            if limit is not None:
                ax.set_ylim(bottom=limit)
                note = "; ".join(f"{a}: min {minima[a]:.1e}" for a in cut)
                ax.text(0.98, 0.02, f"below axis: {note}", transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=6.5, color="0.3")
        ax.set_xlabel("iteration")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if handles:
        labels = [h.get_label() for h in handles.values()]
        fig.legend(list(handles.values()), labels, loc="lower center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(labels), LEGEND_COLUMNS), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, out: Path, dpi: int = 130) -> Path:
    """Write atomically (a kill never leaves a torn image), log-axis labels as plain text."""
    plain_tick_labels(fig)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    # zlib level 1: a third of the encoding time of the default 6 for a slightly larger file.
    extra = {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}} if out.suffix.lower() == ".png" else {}
    fig.savefig(tmp, dpi=dpi, **extra)
    tmp.replace(out)
    return out


def draw_panel_figure(p: PanelFigure) -> Path:
    """Draw and write ``p`` (atomically); returns its file."""
    fig = draw_metric_panels(p.steps, p.metrics, p.runs, p.names, p.arms, diverged=p.diverged,
                             boundaries=p.boundaries, styles=p.styles, title=p.title)
    return save_figure(fig, p.out)


def plot_panels(rd: RunDir, names: tuple[str, ...] | None = None, fmt: str = "png") -> list[Path]:
    """Draw the experiment's metric panels (config `figure`) into DIR/figures; returns the files."""
    p = panel_figure(rd, names, fmt)
    return [] if p is None else [draw_panel_figure(p)]
