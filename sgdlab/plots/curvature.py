"""Figures of the curvature experiments (docs/curvature.md), registered in FIGURES by sgdlab.plots:

* ``sharpness_edge``: per arm, sharpness (and batch sharpness when logged) over training against
  the stability threshold 2/eta_t (dashed), following the arm's schedule step by step (decays,
  warm-ups and phases included), median over seeds; train loss (log scale) beside.
  Curvature is measured at every ``metrics.curvature.every``-th eval step: only those are drawn.
* ``sharpest_directions``: final lambda_1, lambda_1 / lambda_k and dead-neuron fraction against
  eta, one line per batch size (median over seeds, error bars = min/max over seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sgdlab.plots.panels import quiet_nan, save_figure
from sgdlab.store.runs import RunDir


def _arms(cfg, runs):
    """[(arm name, eta at step 0, batch size or None, run indices)] (a phased arm: its first phase)."""
    out = []
    for a in cfg.arms:
        eta = float(np.broadcast_to(a.step_size(cfg.steps)(np.array([0])), (1,))[0])
        idx = np.array([r["index"] for r in runs if r["arm"] == a.label])
        out.append((a.label, eta, getattr(a.phase_list[0].optimizer, "batch_size", None), idx))
    return out


# Steps at which 2/eta_t is drawn: every step up to this many, else this many evenly spaced ones
# (plus the schedule's jumps, found on that grid, and the evaluation steps).
THRESHOLD_POINTS = 200_000


def threshold_curve(arm, total_steps: int, eval_steps) -> tuple[np.ndarray, np.ndarray]:
    """(t, 2 / eta_t) of ``arm``'s step-size schedule over the run (inf where eta_t = 0)."""
    if total_steps <= THRESHOLD_POINTS:
        t = np.arange(total_steps + 1)
    else:
        t = np.unique(np.concatenate([np.linspace(0, total_steps, THRESHOLD_POINTS).astype(np.int64),
                                      np.asarray(eval_steps, dtype=np.int64)]))
    eta = np.broadcast_to(np.asarray(arm.step_size(total_steps)(t), dtype=np.float64), t.shape)
    with np.errstate(divide="ignore"):
        return t, np.where(eta > 0, 2.0 / eta, np.inf)


def _median_finite(steps, vals):
    """Steps where any run has a value, and the median over runs there."""
    ok = np.isfinite(vals).any(axis=1)
    if not ok.any():
        return steps[:0], vals[:0, 0]
    return steps[ok], np.nanmedian(vals[ok], axis=1)


def sharpness_edge(rd: RunDir) -> list[Path]:
    """Sharpness (and batch sharpness, when logged) per arm against 2/eta_t, the stability threshold along the schedule."""
    cfg = rd.config()
    steps, m = rd.metrics()
    if "sharpness" not in m:
        raise ValueError("sharpness_edge needs metrics.curvature.every > 0")
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax, axl = fig.subplots(1, 2)
    for k, (arm, (name, _, _, idx)) in enumerate(zip(cfg.arms, _arms(cfg, rd.runs()))):
        c = f"C{k % 10}"
        s, v = _median_finite(steps, m["sharpness"][:, idx])
        ax.plot(s, v, color=c, lw=1.5, label=f"{name}: $\\lambda_{{max}}$")
        if "batch_sharpness" in m:
            s, v = _median_finite(steps, m["batch_sharpness"][:, idx])
            ax.plot(s, v, color=c, lw=1.0, ls=":", label=f"{name}: batch sharpness")
        t, edge = threshold_curve(arm, cfg.steps, steps)
        ax.plot(t, edge, color=c, ls="--", lw=1.0, alpha=0.8, drawstyle="steps-post")
        s, v = _median_finite(steps, m["train_loss"][:, idx])
        axl.plot(s, v, color=c, lw=1.2, label=name)
    ax.set_xlabel("iteration")
    ax.set_title("sharpness (dashed: 2/$\\eta_t$ along the schedule)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    axl.set_yscale("log")
    axl.set_xlabel("iteration")
    axl.set_title("train loss")
    axl.grid(alpha=0.3)
    fig.suptitle(f"{cfg.name}: median over seeds")
    return [save_figure(fig, rd.figures / f"{cfg.name}-sharpness.png")]


def sharpest_directions(rd: RunDir) -> list[Path]:
    """Top Hessian eigenvalues and conditioning per arm at the end of training, against eta / b."""
    cfg = rd.config()
    _steps, m = rd.metrics()
    panels = [("sharpness", "$\\lambda_1$ (final)"), ("hessian_cond", f"$\\lambda_1/\\lambda_{cfg.metrics.curvature.k}$"),
              ("dead_fraction", "dead neurons (fraction)")]
    panels = [(k, t) for k, t in panels if k in m]
    fig = Figure(figsize=(4 * len(panels), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    by_b: dict = {}
    for _, eta, b, idx in _arms(cfg, rd.runs()):
        by_b.setdefault(b, []).append((eta, idx))
    for ax, (key, title) in zip(axes, panels):
        for k, (b, items) in enumerate(sorted(by_b.items(), key=lambda t: t[0] or 0)):
            items.sort()
            etas = np.array([e for e, _ in items])
            final = [m[key][np.isfinite(m[key]).any(axis=1).nonzero()[0][-1], idx] for _, idx in items]
            with quiet_nan():
                med = np.array([np.nanmedian(v) for v in final])
                lo = med - np.array([np.nanmin(v) for v in final])
                hi = np.array([np.nanmax(v) for v in final]) - med
            ax.errorbar(etas, med, yerr=[lo, hi], marker="o", color=f"C{k}", capsize=3,
                        label="GD" if b is None else f"b = {b}")
        ax.set_xscale("log")
        ax.set_xlabel("$\\eta$")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{cfg.name}: at the last measurement, median over seeds (bars: min-max)")
    return [save_figure(fig, rd.figures / f"{cfg.name}-sharpest.png")]
