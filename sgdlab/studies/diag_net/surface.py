"""The 2-D loss-surface slice of the diagonal net with GF / GD / SGD trajectories projected on
it (Andriushchenko et al. 2023, loss-surface figure), and its animation.

Parameters w = (u, v) in R^{2d}. The slice passes through the initialization w0 and is spanned by
  e1 = (sqrt(beta*), sqrt(beta*)) - w0       (toward the sparse interpolator),
  e2 = (w_GF - w0) orthogonalized against e1 (toward gradient flow's limit, w_GF = the first
       arm's final parameters),
so w(a, b) = w0 + a e1 + b e2; the train loss is drawn on a grid a, b in [-0.5, 2.3] on a log
scale, and each arm's trajectory (its first seed, from the run's parameter snapshots) is
projected on (e1, e2) by least squares. As in the authors' notebook, trajectories are drawn with
|u|, |v| (SGD's iterates wander between sign-symmetric copies of the valley). Needs ``snapshots > 0``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from sgdlab.plots.panels import save_figure
from sgdlab.store.runs import RunDir

GRID = np.linspace(-0.5, 2.3, 121)  # the authors' range of both slice coordinates
LOSS_FLOOR = 1e-12  # the log-scale contour needs positive values
GIF_FPS = 8


def _slice(rd: RunDir):
    cfg = rd.config()
    data = cfg.data.build()
    snaps = rd.snapshots()
    if not snaps:
        return None
    first = {}
    for r in rd.runs():
        first.setdefault(r["arm"], r["index"])
    flat = lambda p: torch.cat([p["u"], p["v"]]).double().abs().numpy()
    traj = {arm: np.stack([flat(params[i]) for _, params in snaps]) for arm, i in first.items()}
    w0 = traj[cfg.arms[0].label][0]
    root = np.sqrt(data.extras["beta_star"].double().numpy())
    e1 = np.concatenate([root, root]) - w0
    g = traj[cfg.arms[0].label][-1] - w0
    e2 = g - (g @ e1) / (e1 @ e1) * e1
    basis = np.stack([e1, e2], 1)  # (2d, 2)
    coords = {arm: np.linalg.lstsq(basis, (t - w0).T, rcond=None)[0].T for arm, t in traj.items()}
    A, B = np.meshgrid(GRID, GRID)
    W = w0 + A.reshape(-1, 1) * e1 + B.reshape(-1, 1) * e2  # (G, 2d)
    d = len(root)
    beta = W[:, :d] * W[:, d:]
    x, y = data.x_train.double().numpy(), data.y_train.double().numpy()
    loss = 0.5 * ((beta @ x.T - y) ** 2).mean(1).reshape(A.shape)
    steps = [s for s, _ in snaps]
    return A, B, np.maximum(loss, LOSS_FLOOR), coords, steps, cfg


def _draw(ax, A, B, loss, coords, upto=None):
    ax.contourf(A, B, loss, levels=np.logspace(np.log10(loss.min()), np.log10(loss.max()), 30),
                norm=LogNorm(), cmap="viridis")
    for k, (arm, c) in enumerate(coords.items()):
        c = c if upto is None else c[: upto + 1]
        ax.plot(c[:, 0], c[:, 1], "-", color=f"C{k + 1}", lw=1.5, label=arm)
        ax.plot(c[-1:, 0], c[-1:, 1], "o", color=f"C{k + 1}", ms=5)
    ax.plot([0], [0], "ks", ms=5)
    ax.plot([1], [0], "r*", ms=10)  # the sparse interpolator (sqrt(beta*), sqrt(beta*))
    ax.set_xlim(GRID[0], GRID[-1])
    ax.set_ylim(GRID[0], GRID[-1])
    ax.set_xlabel("toward (sqrt(beta*), sqrt(beta*))")
    ax.set_ylabel("toward gradient flow's limit")


def loss_surface(rd: RunDir) -> list[Path]:
    """A 2-D slice of the loss surface with the GF / GD / SGD trajectories drawn on it."""
    s = _slice(rd)
    if s is None:
        return []
    A, B, loss, coords, _, cfg = s
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    _draw(ax, A, B, loss, coords)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"{cfg.name}: train loss on a 2-D slice (log scale)")
    return [save_figure(fig, rd.figures / "loss_surface.png")]


def loss_surface_gif(rd: RunDir) -> list[Path]:
    """The loss-surface slice as an animation (GIF), the trajectories advancing."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    s = _slice(rd)
    if s is None:
        return []
    A, B, loss, coords, steps, _cfg = s
    fig = Figure(figsize=(5, 4.2), layout="constrained")
    ax = fig.subplots()

    def frame(i):
        ax.clear()
        _draw(ax, A, B, loss, coords, upto=i)
        ax.set_title(f"step {steps[i]}")

    out = rd.figures / "loss_surface.gif"
    tmp = out.with_name(".loss_surface.tmp.gif")
    FuncAnimation(fig, frame, frames=len(steps)).save(tmp, writer=PillowWriter(fps=GIF_FPS))
    tmp.replace(out)
    return [out]
