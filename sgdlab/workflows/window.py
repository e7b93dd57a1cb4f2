"""Stabilization-window finder: the range of step sizes where the loss neither converges
nor diverges, per seed, by a batched grid refined by bisection.

A constant-step run of the chosen arm is classified from its train loss over the last
``level_frac`` of the evaluation steps (its *level*, the median there):
  diverged   - the engine froze it (NaN/inf or explosion);
  converged  - level < tol x initial train loss;
  stabilized - otherwise (the large-step regime of Andriushchenko et al. 2023).
Per seed the window is [lower, upper]: lower between the largest converging step below the
first stabilizing one and that step; upper between the last stabilizing step and the first
diverging one above it; each boundary is bisected ``bisect`` times. All runs of a round
(grid points x seeds, or midpoints x seeds) advance as one batched job.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdlab.core.config import check
from sgdlab.engine.train import train
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.store.files import atomic_write_text, dumps

CONVERGED, STABILIZED, DIVERGED = 0, 1, 2
STATUS_NAMES = {CONVERGED: "converged", STABILIZED: "stabilized", DIVERGED: "diverged"}


@dataclass
class WindowResult:
    seeds: list[int]
    lrs: np.ndarray  # (G,) all step sizes tried, sorted
    status: np.ndarray  # (G, S) int: CONVERGED / STABILIZED / DIVERGED; -1 = not run for that seed
    level: np.ndarray  # (G, S) loss level (NaN if diverged or not run)
    lower: np.ndarray  # (S,) lower edge (NaN if no stabilizing step found)
    upper: np.ndarray  # (S,) upper edge

    def to_dict(self):
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dataclasses.asdict(self).items()}


def _classify(cfg: ExperimentConfig, lrs_per_seed: dict[int, list[float]], tol: float, level_frac: float):
    """Run constant-step arms (one per (lr, seed)) as one batched job; {(lr, seed): (status, level)}."""
    base_arm = cfg.arms[0]
    check(base_arm.phases is None, f"window: arm {base_arm.label!r} has phases; the stabilization window "
                                   f"is found for one optimizer: give arm 0 an optimizer and schedule")
    arms = []
    for seed, lrs in lrs_per_seed.items():
        for lr in sorted(set(lrs)):
            arms.append(ArmConfig(f"lr={lr!r} seed={seed}", base_arm.optimizer, Constant(lr=float(lr)), seeds=(seed,)))
    if not arms:
        return {}
    eng, state, m = train(dataclasses.replace(cfg, arms=tuple(arms)))
    steps = eng.eval_steps
    late = steps >= steps[-1] * (1 - level_frac)
    loss0 = m["train_loss"][0]
    out = {}
    for r in eng.runs:
        lr = float(r.arm.split(" ")[0][3:])
        if state.diverged[r.index] >= 0:
            out[(lr, r.seed)] = (DIVERGED, np.nan)
            continue
        lvl = float(np.nanmedian(m["train_loss"][late, r.index]))
        out[(lr, r.seed)] = (STABILIZED if lvl >= tol * loss0[r.index] else CONVERGED, lvl)
    return out


def check_window_args(cfg: ExperimentConfig, lo: float, hi: float, points: int, bisect: int) -> None:
    """What find_window refuses, checked before any work or any file (the CLI calls it first)."""
    check(0 < lo < hi, f"need 0 < lo < hi, got lo={lo}, hi={hi}")
    check(points >= 2 and bisect >= 0, "points must be >= 2 and bisect >= 0")
    arm = cfg.arms[0]
    check(arm.phases is None, f"window: arm {arm.label!r} has phases; the stabilization window "
                              f"is found for one optimizer: give arm 0 an optimizer and schedule")


def find_window(cfg: ExperimentConfig, lo: float, hi: float, points: int = 12, bisect: int = 3,
                tol: float = 1e-3, level_frac: float = 0.1, eval_points: int = 40) -> WindowResult:
    """Find each seed's stabilization window for the optimizer of ``cfg.arms[0]``."""
    check_window_args(cfg, lo, hi, points, bisect)
    cfg = dataclasses.replace(cfg, eval=EvalConfig("linear", eval_points),
                              metrics=dataclasses.replace(cfg.metrics, names=("train_loss",)))
    seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
    grid = np.geomspace(lo, hi, points).tolist()
    results = _classify(cfg, {s: grid for s in seeds}, tol, level_frac)
    brackets, gaps = {}, {}
    for s in seeds:
        st = [results[(lr, s)][0] for lr in grid]
        first_stab = next((i for i, x in enumerate(st) if x == STABILIZED), None)
        if first_stab is None:
            # no stabilizing grid step: search the converged -> diverged gap for one
            i = next((i for i in range(1, len(st)) if st[i] == DIVERGED and st[i - 1] == CONVERGED), None)
            brackets[s] = None
            gaps[s] = None if i is None else (grid[i - 1], grid[i])
            continue
        low = (grid[first_stab - 1], grid[first_stab]) if first_stab > 0 and st[first_stab - 1] == CONVERGED else None
        last = first_stab
        while last + 1 < len(st) and st[last + 1] == STABILIZED:
            last += 1
        up = (grid[last], grid[last + 1]) if last + 1 < len(st) and st[last + 1] == DIVERGED else None
        brackets[s] = [low, up, grid[first_stab], grid[last]]
    gmid = lambda x: float(np.sqrt(x[0] * x[1]))
    for _ in range(bisect):
        mids = {s: [gmid(x) for x in b[:2] if x is not None] for s, b in brackets.items() if b is not None}
        for s, g in gaps.items():
            if g is not None and brackets[s] is None:
                mids[s] = [gmid(g)]
        res = _classify(cfg, mids, tol, level_frac)
        results.update(res)
        for s, b in brackets.items():
            if b is None:
                g = gaps.get(s)
                if g is None:
                    continue
                mid = gmid(g)
                st = res[(mid, s)][0]
                if st == STABILIZED:
                    brackets[s] = [(g[0], mid), (mid, g[1]), mid, mid]
                gaps[s] = (mid, g[1]) if st == CONVERGED else (g[0], mid) if st == DIVERGED else None
                continue
            if b[0] is not None:
                mid = gmid(b[0])
                b[0] = (b[0][0], mid) if res[(mid, s)][0] == STABILIZED else (mid, b[0][1])
            if b[1] is not None:
                mid = gmid(b[1])
                b[1] = (mid, b[1][1]) if res[(mid, s)][0] == STABILIZED else (b[1][0], mid)
    lrs = np.array(sorted({lr for lr, _ in results}))
    status = np.full((len(lrs), len(seeds)), -1)
    level = np.full((len(lrs), len(seeds)), np.nan)
    for (lr, s), (st, lvl) in results.items():
        i, j = int(np.searchsorted(lrs, lr)), seeds.index(s)
        status[i, j], level[i, j] = st, lvl
    lower = np.array([np.nan if b is None else (b[0][1] if b[0] else b[2]) for b in brackets.values()])
    upper = np.array([np.nan if b is None else (b[1][0] if b[1] else b[3]) for b in brackets.values()])
    return WindowResult(seeds, lrs, status, level, lower, upper)


def save_window(res: WindowResult, out: str | Path, title: str = "") -> list[Path]:
    """window.json and window.png (status map over eta x seed, loss level vs eta)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    from sgdlab.plots.panels import save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "window.json", dumps(res.to_dict()))
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    a1, a2 = fig.subplots(1, 2)
    cmap = ListedColormap(["white", "tab:blue", "tab:green", "tab:red"])
    a1.pcolormesh(np.arange(len(res.seeds) + 1), np.r_[res.lrs, res.lrs[-1] * 1.02], res.status + 1,
                  cmap=cmap, vmin=0, vmax=3, shading="flat")
    a1.set_yscale("log")
    a1.set_xlabel("seed index")
    a1.set_ylabel("step size")
    a1.set_title("blue converged, green stabilized, red diverged")
    for j in range(len(res.seeds)):
        a1.plot([j, j + 1], [res.lower[j]] * 2, "k-", lw=2)
        a1.plot([j, j + 1], [res.upper[j]] * 2, "k--", lw=2)
    for j in range(len(res.seeds)):
        ok = np.isfinite(res.level[:, j])
        a2.plot(res.lrs[ok], res.level[ok, j], ".-", alpha=0.6)
    a2.set_xscale("log")
    if (np.nan_to_num(res.level, nan=0.0) > 0).any():  # every run diverged: nothing to draw on a log scale
        a2.set_yscale("log")
    a2.set_xlabel("step size")
    a2.set_ylabel("train loss level (late median)")
    fig.suptitle(title)
    return [out / "window.json", save_figure(fig, out / "window.png")]


def format_window(res: WindowResult) -> str:
    lines = ["seed   lower      upper"]
    for s, lo, hi in zip(res.seeds, res.lower, res.upper):
        lines.append(f"{s:<6d} {lo:<10.4g} {hi:<10.4g}")
    ok = np.isfinite(res.lower)
    if ok.any():
        lines.append(f"median window: [{np.median(res.lower[ok]):.4g}, {np.median(res.upper[ok]):.4g}] "
                     f"({ok.sum()}/{len(ok)} seeds stabilize somewhere)")
    return "\n".join(lines)
