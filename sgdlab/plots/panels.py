"""Metric panels: per arm the median over seeds with an interquartile band."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # OO API: no pyplot global state, works headless

from ..errors import ConfigError, choices_message
from ..runs import RunDir

# The main figure's panels when a config names none: these, where logged.
DEFAULT_PANELS = ("train_loss", "test_loss", "jacobian_rank", "l0")


def default_panels(logged) -> tuple[str, ...]:
    """DEFAULT_PANELS that were logged, else the first four logged metrics."""
    return tuple(m for m in DEFAULT_PANELS if m in logged) or tuple(sorted(logged))[:4]


# Metrics spanning many decades are drawn on a log axis.
LOG_METRICS = {"train_loss", "test_loss", "l1", "balancedness"}
LABELS = {
    "train_loss": "train loss", "test_loss": "test loss", "jacobian_rank": r"rank $\phi_\theta(X)$",
    "l0": r"$\|u\odot v\|_0$", "l0_robust": r"$\|u\odot v\|_0$ ($>10^{-3}$)", "l1": r"$\|u\odot v\|_1$",
    "support_mass": "support mass", "param_norm": r"$\|(u,v)\|_2$", "balancedness": r"$\||u|-|v|\|$",
}


@contextlib.contextmanager
def quiet_nan():
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings: a fully diverged arm or
    grid point is expected, drawn as a gap, and reported in the tables."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _band(values: np.ndarray):
    """median, q25, q75 over runs (axis 1), ignoring NaN (diverged / not yet reached)."""
    with np.errstate(all="ignore"):
        ok = np.isfinite(values).any(axis=1)
        med = np.full(values.shape[0], np.nan)
        lo, hi = med.copy(), med.copy()
        if ok.any():
            q = np.nanpercentile(values[ok], [25, 50, 75], axis=1)
            lo[ok], med[ok], hi[ok] = q
    return med, lo, hi


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


def phase_boundaries(cfg) -> dict[str, list[int]]:
    """Arm label -> the steps where its next phase starts (empty for a plain arm)."""
    return {a.label: [s for s, _ in a.bounds(cfg.steps)[1:]] for a in cfg.arms}


def draw_metric_panels(steps, metrics, runs, names, arms, title="", diverged=None, boundaries=None) -> Figure:
    """One panel per metric; per arm the median over seeds with an interquartile band;
    an x marks where a run diverged (at its last finite value); a dashed vertical line in the
    arm's colour marks each phase boundary (``boundaries``: arm -> steps). Log panels choose
    their lower limit with :func:`log_lower_limit`; one legend below the panels."""
    fig = Figure(figsize=(4.2 * len(names), 3.4 + 0.25 * (len(arms) + 1) // 2), layout="constrained")
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
            if diverged:
                for i in idx:
                    d = diverged.get(int(i))
                    if d is None:
                        continue
                    finite = np.isfinite(vals[:, i])
                    if finite.any():
                        j = np.nonzero(finite)[0][-1]
                        ax.plot([d], [vals[j, i]], marker="x", color=c, ms=7, mew=2, ls="none")
        for k, arm in enumerate(arms):
            for b in (boundaries or {}).get(arm, []):
                ax.axvline(b, color=colors[k % len(colors)], ls="--", lw=1.0, alpha=0.7)
        if name in LOG_METRICS:
            ax.set_yscale("log")
            limit, cut = log_lower_limit(minima)
            if limit is not None:
                ax.set_ylim(bottom=limit)
                note = "; ".join(f"{a}: min {minima[a]:.1e}" for a in cut)
                ax.text(0.98, 0.02, f"below axis: {note}", transform=ax.transAxes, ha="right", va="bottom",
                        fontsize=6.5, color="0.3")
        ax.set_xlabel("iteration")
        ax.set_title(LABELS.get(name, name))
        ax.grid(alpha=0.3)
    if handles:
        labels = [h.get_label() for h in handles.values()]
        fig.legend(list(handles.values()), labels, loc="outside lower center", ncol=min(len(labels), 3),
                   fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, out: Path, dpi: int = 130) -> Path:
    """Write atomically (a kill never leaves a torn image)."""
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    fig.savefig(tmp, dpi=dpi)
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
    arms = [a.label for a in cfg.arms]
    custom = bool(names)
    names = tuple(names or cfg.figure or default_panels(metrics))
    for n in names:
        if n not in metrics:
            raise ConfigError(f"{rd.path}: {choices_message('metric', n, metrics)} (the metrics this run logged)")
    bounds = phase_boundaries(cfg)
    dashed = ", dashed = phase boundary" if any(bounds.values()) else ""
    fig = draw_metric_panels(steps, metrics, runs, names, arms, diverged=diverged, boundaries=bounds,
                             title=f"{cfg.name}: median over seeds, band = interquartile range{dashed}")
    # Chosen panels go to their own file: the experiment's own figure is never replaced by them.
    stem = f"{cfg.name}-{'-'.join(names)}" if custom else cfg.name
    return [save_figure(fig, rd.figures / f"{stem}.{fmt}")]
