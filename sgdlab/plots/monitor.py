"""The figure of a run directory written by ``sgdlab.Monitor`` (registered as ``monitor``).

Panels, each drawn when its metrics were logged: (1) sharpness lambda_1 (lambda_2 faint) against
the logged stability threshold 2/eta (dashed; it follows the step-size schedule) and the
momentum-corrected one (dotted, when momentum > 0), with batch sharpness / MiniBS / GNI as
markers; with an adaptive optimizer the preconditioned sharpness lambda_max(P^-1 H) against its
edge (2 + 2 beta1)/((1 - beta1) eta) instead of 2/eta; (2) per layer the merged feature sparsity (solid) and the raw positive fraction
(dashed); (3) train loss on a log axis. Every metric is drawn at the steps where it was measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sgdlab.plots.panels import save_figure
from sgdlab.store.runs import RunDir

_BATCH = (("batch_sharpness", "batch sharpness", "o"), ("minibs", "MiniBS", "^"), ("gni", "GNI", "s"),
          ("step_sharpness", "step sharpness", "v"))


def _series(steps: np.ndarray, m: dict, name: str):
    v = m[name][:, 0]
    ok = np.isfinite(v)
    return steps[ok], v[ok]


def _curvature(ax, steps, m) -> None:
    if "sharpness" in m:
        ax.plot(*_series(steps, m, "sharpness"), color="C0", lw=1.5, label=r"$\lambda_{max}$")
    if "hessian_eig2" in m:
        ax.plot(*_series(steps, m, "hessian_eig2"), color="C0", lw=0.8, alpha=0.4, label=r"$\lambda_2$")
    adaptive = "preconditioned_sharpness" in m and np.isfinite(m["preconditioned_sharpness"]).any()
    if adaptive:
        ax.plot(*_series(steps, m, "preconditioned_sharpness"), color="C5", lw=1.5,
                label=r"$\lambda_{max}(P^{-1}H)$")
    if "threshold" in m:
        label = r"(2+2$\beta_1$)/((1-$\beta_1$)$\eta$)" if adaptive else r"2/$\eta$"
        ax.step(*_series(steps, m, "threshold"), where="post", color="k", ls="--", lw=1.0, label=label)
    if not adaptive and "threshold_momentum" in m and np.nanmax(np.nan_to_num(m.get("momentum", np.zeros(1)), nan=0.0)) > 0:
        ax.step(*_series(steps, m, "threshold_momentum"), where="post", color="k", ls=":", lw=1.0,
                label=r"(2+2$\mu$)/$\eta$")
    for k, (name, label, marker) in enumerate(_BATCH):
        if name in m:
            ax.plot(*_series(steps, m, name), color=f"C{k + 1}", marker=marker, ms=4, lw=0.8, label=label)
    ax.set_title("curvature (loss as trained)")


def _sparsity(ax, steps, m, layers) -> None:
    for k, layer in enumerate(layers):
        c = f"C{k % 10}"
        ax.plot(*_series(steps, m, f"{layer}_sparsity"), color=c, lw=1.4, label=f"{layer} (merged)")
        if f"{layer}_active" in m:
            ax.plot(*_series(steps, m, f"{layer}_active"), color=c, lw=0.9, ls="--", label=f"{layer} (raw)")
    ax.set_title("feature sparsity")


def _loss(ax, steps, m) -> None:
    s, v = _series(steps, m, "train_loss")
    ax.plot(s, v, color="C3", lw=1.4)
    if (v > 0).all() and len(v):
        ax.set_yscale("log")
    ax.set_title("train loss (measurement set)")


def monitor_figure(rd: RunDir) -> list[Path]:
    """A monitored loop: sharpness vs the logged 2/eta threshold, batch sharpness, feature sparsity, loss."""
    cfg = rd.config()
    steps, m = rd.metrics()
    if steps.size == 0:
        return []
    layers = [k[: -len("_sparsity")] for k in m if k.endswith("_sparsity")]
    panels = []
    if {"sharpness", "batch_sharpness", "minibs", "gni", "step_sharpness"} & set(m):
        panels.append(lambda ax: _curvature(ax, steps, m))
    if layers:
        panels.append(lambda ax: _sparsity(ax, steps, m, layers))
    if "train_loss" in m:
        panels.append(lambda ax: _loss(ax, steps, m))
    if not panels:
        return []
    fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
    for ax, draw in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        draw(ax)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"{cfg.name}: sgdlab.Monitor")
    return [save_figure(fig, rd.figures / f"{cfg.name}-monitor.png")]
