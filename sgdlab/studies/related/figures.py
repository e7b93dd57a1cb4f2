"""Figures of the related findings (docs/related-*.md), registered in FIGURES by the study (its __init__):

* ``linear2_large_step``: depth-2 linear net, GD over eta vs gradient flow from the same inits;
* ``support_identification``: first-layer column norms of irrelevant coordinates against eta * t;
* ``replacement``: SGD with vs without replacement, late-training level of a metric against eta.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from sgdlab.optim.flow import GF_ATOL, GF_METHOD, GF_RTOL, gradient_flow
from sgdlab.plots.panels import quiet_nan, save_figure
from sgdlab.store.runs import RunDir
from sgdlab.studies.related import metrics as rel

# Flow time for gradient flow's limit: near a global minimum the residual contracts at rate
# lambda >= 2 |Phi|, so t = GF_CONTRACTION / (2 |Phi|) leaves it below e^{-GF_CONTRACTION} |eps_0|.
GF_CONTRACTION = 100.0
# Points of the drawn gradient-flow trajectory in the (a, b) plane.
GF_TRAJ_POINTS = 400


def _arm_info(cfg, runs):
    """Per run: arm index, step size (first step), replacement flag, batch size (None for GD)."""
    arms = {a.label: a for a in cfg.arms}
    lr = np.array([arms[r["arm"]].step_size(cfg.steps)(np.array([0]))[0] for r in runs], dtype=float)
    return arms, lr


def _time_axis(cfg, arm, steps):
    """eta * t generalised to any schedule: sum of the step sizes before each evaluation step."""
    sched = arm.step_size(cfg.steps)
    cum = np.concatenate([[0.0], np.cumsum(np.broadcast_to(sched(np.arange(cfg.steps)), (cfg.steps,)))])
    return cum[steps]


def linear2_table(rd: RunDir) -> dict:
    """Per run: eta, seed, limit sharpness / norm / imbalance, steps to converge; per seed the
    gradient-flow limit from the same initial parameters (needs the step-0 snapshot)."""
    cfg = rd.config()
    steps, m = rd.metrics()
    runs = rd.runs()
    _, lr = _arm_info(cfg, runs)
    snaps = rd.snapshots()
    if not snaps or snaps[0][0] != 0:
        raise ValueError("linear2_large_step needs the initial parameters: set snapshots >= 1")
    p0 = snaps[0][1]
    data = cfg.data.build()
    model = cfg.model.build(data)
    first = {}
    for r in runs:
        first.setdefault(r["seed"], r["index"])
    seeds = sorted(first)
    params0 = {k: torch.stack([p0[first[s]][k] for s in seeds]).double() for k in p0[first[seeds[0]]]}
    t_end = GF_CONTRACTION / (2 * abs(float(cfg.data.phi)))
    times = np.concatenate([[0.0], np.geomspace(1e-3, t_end, GF_TRAJ_POINTS - 1)])
    flow = gradient_flow(model, params0, data, t_end, times=times)
    lim = flow.final()
    gf_sharp = model.sharpness(lim, data.x_train, data.y_train).numpy()
    conv = rel.steps_to_converge(steps, m["train_loss"])
    table = {
        "runs": [{"index": r["index"], "seed": r["seed"], "eta": float(lr[i]),
                  "sharpness": float(m["sharpness"][-1, i]), "norm_sq": float(m["norm_sq"][-1, i]),
                  "imbalance": float(m["imbalance"][-1, i]), "steps_to_converge": float(conv[i])}
                 for i, r in enumerate(runs)],
        "flow": [{"seed": s, "sharpness": float(gf_sharp[j]),
                  "norm_sq": float((lim["W"][j] ** 2).sum() + (lim["v"][j] ** 2).sum()),
                  "imbalance": float((lim["W"][j] ** 2).sum() - (lim["v"][j] ** 2).sum()),
                  "final_loss": float(flow.loss[j, -1]), "nfev": int(flow.nfev[j])} for j, s in enumerate(seeds)],
        "flow_tolerance": {"method": GF_METHOD, "rtol": GF_RTOL, "atol": GF_ATOL, "t_end": t_end},
    }
    table["_flow_traj"] = {s: (flow.params["W"][j, :, 0, 0].numpy(), flow.params["v"][j, :, 0].numpy())
                           for j, s in enumerate(seeds)}
    return table


def linear2_large_step(rd: RunDir) -> list[Path]:
    """Depth-2 linear net: every GD run against gradient flow from the same initial point."""
    cfg = rd.config()
    _steps, m = rd.metrics()
    runs = rd.runs()
    tab = linear2_table(rd)
    traj = tab.pop("_flow_traj")
    (rd.figures / "linear2_large_step.json").write_text(json.dumps(tab, indent=1, allow_nan=True))
    rows = tab["runs"]
    eta = np.array([r["eta"] for r in rows])
    seed = np.array([r["seed"] for r in rows])
    gf = {f["seed"]: f for f in tab["flow"]}
    fig = Figure(figsize=(14, 4.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    grid = np.linspace(eta.min(), eta.max(), 200)
    for k, s in enumerate(sorted(gf)):
        c = f"C{k % 10}"
        sel = seed == s
        ax1.plot(eta[sel], [r["sharpness"] for r in np.array(rows)[sel]], "o-", color=c, ms=3, label=f"GD seed {s}")
        ax1.axhline(gf[s]["sharpness"], color=c, ls="--", lw=1)
        ax2.plot(eta[sel], [r["steps_to_converge"] for r in np.array(rows)[sel]], "o-", color=c, ms=3)
        ax2.axvline(2 / gf[s]["sharpness"], color=c, ls=":", lw=1)
    ax1.plot(grid, 2 / grid, "k-", lw=1, label=r"$2/\eta$")
    ax1.plot([], [], "k--", lw=1, label="gradient flow limit")
    ax1.set(xlabel=r"$\eta$", ylabel="sharpness of the limit", ylim=(0, 1.3 * max(f["sharpness"] for f in gf.values())),
            title="limit sharpness (= norm $\\lambda$ at a minimum)")
    ax1.legend(fontsize=7)
    ax2.set(xlabel=r"$\eta$", ylabel=f"steps to loss $\\leq$ {rel.CONVERGED_LOSS:g}", yscale="log",
            title=r"steps to converge (dotted: $2/\lambda_{GF}$; gaps: diverged)")
    if cfg.model.width == 1:
        s0 = min(gf)
        idx = [r["index"] for r in runs if r["seed"] == s0 and np.isfinite(m["train_loss"][-1, r["index"]])]
        pick = [idx[j] for j in np.unique(np.linspace(0, len(idx) - 1, 5).round().astype(int))] if idx else []
        for j, i in enumerate(pick):
            ax3.plot(m["a1"][:, i], m["b1"][:, i], ".-", ms=2, lw=0.7, color=f"C{j}", label=f"GD eta={eta[i]:g}")
        a, b = traj[s0]
        ax3.plot(a, b, "k-", lw=1.5, label="gradient flow")
        phi = float(cfg.data.phi)
        lim = 1.2 * max(np.abs(a).max(), np.abs(b).max(), 1.5)
        for sign in (-1, 1):  # the two branches of the hyperbola of global minima
            xs = sign * np.geomspace(abs(phi) / lim, lim, 400)
            ax3.plot(xs, phi / xs, color="0.6", lw=1, label=r"$ab=\Phi$" if sign > 0 else None)
        ax3.set(xlabel="a", ylabel="b", xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
                title=f"trajectories, seed {s0}")
        ax3.legend(fontsize=6)
    else:
        ax3.plot(eta, [r["norm_sq"] for r in rows], "o", ms=3)
        ax3.set(xlabel=r"$\eta$", ylabel=r"$\lambda=\|a\|^2+\|b\|^2$ of the limit", title="limit norm")
    fig.suptitle(f"{cfg.name}: GD vs gradient flow ({GF_METHOD}, rtol {GF_RTOL:g}, atol {GF_ATOL:g})")
    return [save_figure(fig, rd.figures / "linear2_large_step.png")]


def support_identification(rd: RunDir) -> list[Path]:
    """Median over seeds (band: min-max) of irrelevant / relevant column norms and test loss vs eta*t."""
    cfg = rd.config()
    steps, m = rd.metrics()
    runs = rd.runs()
    names = [k for k in ("irrelevant_norm", "relevant_norm", "test_loss") if k in m]
    fig = Figure(figsize=(4.4 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for k, arm in enumerate(cfg.arms):
        idx = np.array([r["index"] for r in runs if r["arm"] == arm.label])
        x = _time_axis(cfg, arm, steps)
        for ax, name in zip(axes, names):
            v = m[name][:, idx]
            with quiet_nan():
                ax.plot(x, np.nanmedian(v, 1), color=f"C{k % 10}", lw=1.5, label=arm.label)
                ax.fill_between(x, np.nanmin(v, 1), np.nanmax(v, 1), color=f"C{k % 10}", alpha=0.15, lw=0)
    for ax, name in zip(axes, names):
        ax.set(xlabel=r"$\eta t$ (sum of step sizes)", title=name.replace("_", " ") +
               (" / init (RMS column norm)" if name.endswith("_norm") else ""))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"{cfg.name}: median over seeds, band = min..max")
    return [save_figure(fig, rd.figures / "support_identification.png")]


def replacement(rd: RunDir) -> list[Path]:
    """Late-training mean (second half of the run) of the first logged figure metric against eta,
    with (solid) vs without (dashed) replacement; one point per seed plus the mean."""
    cfg = rd.config()
    steps, m = rd.metrics()
    runs = rd.runs()
    name = "dist_opt" if "dist_opt" in m else (cfg.figure or ("train_loss",))[0]
    late = rel.late_mean(steps, m[name], cfg.steps // 2)
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    for rep, ls in ((True, "-"), (False, "--")):
        arms = [a for a in cfg.arms if getattr(a.optimizer, "replacement", None) is rep]
        if not arms:
            continue
        eta = np.array([a.schedule.lr for a in arms])
        vals = [late[[r["index"] for r in runs if r["arm"] == a.label]] for a in arms]
        for e, v in zip(eta, vals):
            ax.plot(np.full(v.shape, e), v, ".", color="C0" if rep else "C1", alpha=0.4)
        with quiet_nan():
            ax.plot(eta, [np.nanmean(v) for v in vals], ls, marker="o", color="C0" if rep else "C1",
                    label="with replacement" if rep else "without replacement (reshuffling)")
    ax.set(xscale="log", yscale="log", xlabel=r"$\eta$", ylabel=f"{name}, mean over the 2nd half")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.suptitle(cfg.name)
    return [save_figure(fig, rd.figures / "replacement.png")]
