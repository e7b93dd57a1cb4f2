"""Metric panels: per arm the median over seeds with an interquartile band."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure  # OO API: no pyplot global state, works headless

from ..runs import RunDir

# Metrics spanning many decades are drawn on a log axis.
LOG_METRICS = {"train_loss", "test_loss", "l1", "balancedness"}
# Plain Unicode, not mathtext: parsing mathtext (pyparsing) was most of a figure's save time.
LABELS = {
    "train_loss": "train loss", "test_loss": "test loss", "jacobian_rank": "rank φ(X)",
    "l0": "‖u⊙v‖₀", "l0_robust": "‖u⊙v‖₀ (>10⁻³)", "l1": "‖u⊙v‖₁",
    "support_mass": "support mass", "param_norm": "‖(u,v)‖₂", "balancedness": "‖|u|−|v|‖",
}
PANEL_INCHES = (4.2, 3.4)  # width, height of one metric panel
MARGIN_INCHES = (0.62, 0.12, 0.5, 0.62, 0.72)  # left, right, bottom, top (title + suptitle), between panels
PNG_COMPRESS_LEVEL = 1
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


def draw_metric_panels(steps, metrics, runs, names, arms, title="", diverged=None) -> Figure:
    """One panel per metric; per arm the median over seeds with an interquartile band;
    an x marks where a run diverged (at its last finite value)."""
    width, height = PANEL_INCHES[0] * len(names), PANEL_INCHES[1]
    fig = Figure(figsize=(width, height))
    # Fixed margins (inches) instead of constrained layout, which measures every tick label in
    # an extra layout pass (about half of the save time).
    left, right, bottom, top, gap = MARGIN_INCHES
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=gap / (PANEL_INCHES[0] - gap))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    colors = [f"C{i}" for i in range(10)]
    for ax, name in zip(axes, names):
        if name not in metrics:
            ax.set_title(f"{name}: not logged")
            continue
        vals = metrics[name]
        for k, arm in enumerate(arms):
            idx = np.array([r["index"] for r in runs if r["arm"] == arm])
            c = colors[k % len(colors)]
            med, lo, hi = _band(vals[:, idx])
            n_div = 0 if diverged is None else sum(diverged.get(int(i)) is not None for i in idx)
            label = f"{arm}" + (f" ({n_div}/{len(idx)} diverged)" if n_div else "")
            ax.plot(steps, med, color=c, lw=1.6, label=label)
            if len(idx) > 1:
                ax.fill_between(steps, lo, hi, color=c, alpha=0.2, lw=0)
            if diverged:
                for i in idx:
                    d = diverged.get(int(i))
                    if d is None:
                        continue
                    finite = np.isfinite(vals[:, i])
                    if finite.any():
                        j = np.nonzero(finite)[0][-1]
                        ax.plot([d], [vals[j, i]], marker="x", color=c, ms=7, mew=2, ls="none")
        if name in LOG_METRICS:
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_title(LABELS.get(name, name))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
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


def plot_panels(rd: RunDir, names: tuple[str, ...] | None = None, fmt: str = "png") -> list[Path]:
    """Draw the experiment's metric panels (config `figure`) into DIR/figures; returns the files."""
    cfg = rd.config()
    steps, metrics = rd.metrics()
    if steps.size == 0:
        return []
    runs = rd.runs()
    summary = rd.summary() or {}
    diverged = {r["index"]: r.get("diverged_at") for r in summary.get("runs", [])}
    if not summary:  # unfinished run: divergence = a run whose last logged values are NaN
        last = metrics["train_loss"][-1]
        diverged = {r["index"]: (int(steps[-1]) if not np.isfinite(last[r["index"]]) else None) for r in runs}
    arms = [a.name for a in cfg.arms]
    names = tuple(names or cfg.figure)
    fig = draw_metric_panels(steps, metrics, runs, names, arms,
                             title=f"{cfg.name}: median over seeds, band = interquartile range", diverged=diverged)
    return [save_figure(fig, rd.figures / f"{cfg.name}.{fmt}")]
