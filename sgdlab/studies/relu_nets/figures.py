"""Figures of the ReLU-network experiments, drawn from a run directory's parameter snapshots.

* ``neuron_movement``: two-layer net on 2-D inputs; per arm (its first seed) the teacher's
  neurons as black arrows from the origin (``w_k`` scaled by ``|a_k|``) and each student neuron's
  first-layer weight ``W1[j]`` as an arrow from its first to its last snapshot.
* ``neuron_movement_gif``: the same, animated over the snapshots (matplotlib ``PillowWriter``).
* ``learned_function_1d``: 1-D regression; the function learned by every arm's first seed on the
  fine grid of test inputs, with the training points.

Each needs ``snapshots > 0`` in the experiment config (``RunDir.snapshots()``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from sgdlab.plots.panels import save_figure
from sgdlab.store.runs import RunDir

# Arrow head width relative to the plotted extent; GIF frame rate (frames = snapshots).
HEAD_FRACTION = 0.03
GIF_FPS = 6


def _first_seed_runs(rd: RunDir) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rd.runs():
        out.setdefault(r["arm"], r["index"])
    return out


def _snapshots_or_none(rd: RunDir):
    snaps = rd.snapshots()
    return snaps if snaps else None


def _teacher(rd: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    ex = rd.config().data.build().extras
    if "teacher_W1" not in ex or "teacher_W2" not in ex:
        return None
    return ex["teacher_W1"].numpy(), ex["teacher_W2"].numpy().reshape(-1)


def _draw_neurons(ax, teacher, w_from, w_to, extent):
    hw = HEAD_FRACTION * extent
    if teacher is not None:
        for w, a in zip(*teacher):
            v = w * abs(a)
            ax.arrow(0, 0, v[0], v[1], color="k", width=hw / 4, head_width=hw, length_includes_head=True, zorder=3)
    for p, q in zip(w_from, w_to):
        ax.plot([p[0]], [p[1]], "o", color="C0", ms=2.5, alpha=0.6)
        d = q - p
        if np.hypot(*d) > 1e-12:
            ax.arrow(p[0], p[1], d[0], d[1], color="C3", width=hw / 6, head_width=0.6 * hw,
                     length_includes_head=True, alpha=0.8)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.axhline(0, color="0.8", lw=0.5)
    ax.axvline(0, color="0.8", lw=0.5)


def _w1_series(snaps, run: int) -> np.ndarray:
    """(S, m, 2) first-layer weights of one run over the snapshots."""
    return np.stack([s[1][run]["W1"].double().numpy() for s in snaps])


def _extent(series: list[np.ndarray], teacher) -> float:
    vals = [np.abs(s).max() for s in series]
    if teacher is not None:
        vals.append(np.abs(teacher[0] * np.abs(teacher[1])[:, None]).max())
    return 1.1 * max(vals + [1e-3])


def _neurons(rd: RunDir):
    """(cfg, snapshots, teacher, {arm: W1 over snapshots}, plot extent), or None without 2-D
    inputs or snapshots: the shared setup of both neuron figures."""
    snaps = _snapshots_or_none(rd)
    if snaps is None or snaps[0][1][0]["W1"].shape[-1] != 2:
        return None
    teacher = _teacher(rd)
    series = {arm: _w1_series(snaps, i) for arm, i in _first_seed_runs(rd).items()}
    return rd.config(), snaps, teacher, series, _extent(list(series.values()), teacher)


def neuron_movement(rd: RunDir) -> list[Path]:
    """Two-layer ReLU net: the hidden neurons' weight directions at the saved snapshots."""
    setup = _neurons(rd)
    if setup is None:
        return []
    cfg, snaps, teacher, series, ext = setup
    fig = Figure(figsize=(3.6 * len(series), 3.8), layout="constrained")
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    for ax, (arm, w) in zip(axes, series.items()):
        _draw_neurons(ax, teacher, w[0], w[-1], ext)
        ax.set_title(arm, fontsize=9)
    fig.suptitle(f"{cfg.name}: teacher (black), student W1 from init to step {snaps[-1][0]} (red)")
    return [save_figure(fig, rd.figures / f"{cfg.name}-neurons.png")]


def neuron_movement_gif(rd: RunDir) -> list[Path]:
    """The neuron movement as an animation (GIF) over the saved snapshots."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    setup = _neurons(rd)
    if setup is None:
        return []
    cfg, snaps, teacher, series, ext = setup
    fig = Figure(figsize=(3.2 * len(series), 3.4), layout="constrained")
    axes = fig.subplots(1, len(series), squeeze=False)[0]

    def frame(k):
        for ax, (arm, w) in zip(axes, series.items()):
            ax.clear()
            _draw_neurons(ax, teacher, w[0], w[k], ext)
            ax.set_title(f"{arm}\nstep {snaps[k][0]}", fontsize=8)
        return []

    anim = FuncAnimation(fig, frame, frames=len(snaps))
    out = rd.figures / f"{cfg.name}-neurons.gif"
    tmp = out.with_name(f".{out.name}.tmp.gif")
    anim.save(tmp, writer=PillowWriter(fps=GIF_FPS))
    tmp.replace(out)
    return [out]


def learned_function_1d(rd: RunDir) -> list[Path]:
    """The learned 1-D function of each arm at the saved snapshots, with the training points."""
    snaps = _snapshots_or_none(rd)
    cfg = rd.config()
    if snaps is None:
        return []
    data = cfg.data.build()
    model = cfg.model.build(data)
    grid = data.x_test
    fig = Figure(figsize=(6, 3.8), layout="constrained")
    ax = fig.subplots()
    for k, (arm, i) in enumerate(_first_seed_runs(rd).items()):
        p = {name: v.unsqueeze(0).double() for name, v in snaps[-1][1][i].items()}
        with torch.no_grad():
            f = model.forward(p, grid)[0].numpy()
        ax.plot(grid[:, 0].numpy(), f, color=f"C{k}", lw=1.4, label=arm)
    ax.plot(data.x_train[:, 0].numpy(), data.y_train.numpy(), "ko", ms=4, label="training points")
    ax.legend(fontsize=7)
    ax.set_xlabel("x")
    ax.set_title(f"{cfg.name}: learned function at step {snaps[-1][0]} (first seed)")
    return [save_figure(fig, rd.figures / f"{cfg.name}-function.png")]
