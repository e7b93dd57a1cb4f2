"""Numbers of docs/curvature.md: Edge of Stability, Edge of Stochastic Stability, sharpest
directions. Sharpness values are divided by each arm's 2/eta (the GD stability threshold of the
loss being trained)."""

from __future__ import annotations

import numpy as np

from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    Stat,
    arm_finals,
    cell,
    compare,
    configure,
    label,
    md_table,
    seeds_text,
    stat,
)
from sgdlab.frontends.docs_numbers.tables import pretty

EOS_SEEDS = 16
EOS_POINTS = 151  # sharpness every 200 steps (the config: every 100) -- the edge is a plateau of ~10^4 steps
SHARPENING_BELOW = 0.75  # progressive sharpening: some measurement in the first third below 0.75 x 2/eta
EDGE_REACHED = 0.9


def _div_cell(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)}"


def _eta(cfg, arm) -> float:
    return float(np.broadcast_to(arm.schedule.build(cfg.steps)(np.array([0])), (1,))[0])


def _eos_produce(ctx) -> dict:
    cfg = configure("eos-chebyshev", [f"seeds={EOS_SEEDS}", f"eval.points={EOS_POINTS}", "extra_figures=[]"])
    res = ctx.run("eos-chebyshev", cfg)
    steps = res.steps
    first = (steps > 0) & (steps <= steps[-1] / 3)
    last = steps >= 2 * steps[-1] / 3
    t3 = int(np.searchsorted(steps, steps[-1] // 3))
    out, flags = {}, arm_finals(res, [])
    for a in cfg.arms:
        edge = 2 / _eta(cfg, a)
        idx = res.arm(label(a))
        lam = res.metrics["sharpness"][:, idx] / edge
        loss = res.metrics["train_loss"][:, idx]
        with np.errstate(all="ignore"):
            reached = [int(np.argmax(lam[:, j] >= EDGE_REACHED)) if (lam[:, j] >= EDGE_REACHED).any() else None
                       for j in range(len(idx))]
            out[label(a)] = {
                "eta": _eta(cfg, a), "diverged": flags[label(a)]["diverged"],
                "init": lam[0].tolist(), "min_first_third": np.nanmin(lam[first], 0).tolist(),
                "median_last_third": np.nanmedian(lam[last], 0).tolist(), "max": np.nanmax(lam, 0).tolist(),
                "loss_t3": loss[t3].tolist(), "final_loss": loss[-1].tolist(),
                "edge_step": [None if r is None else int(steps[r]) for r in reached],
                "n_increases_after_edge": [0 if r is None else int((np.diff(loss[r:, j]) > 0).sum())
                                           for j, r in enumerate(reached)],
            }
    return {"seeds": seeds_text(EOS_SEEDS), "steps": cfg.steps, "every": int(steps[1]), "arms": out}


def _eos_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    rows = []
    for e in arms.values():
        sharpened = sum(m < SHARPENING_BELOW for m in e["min_first_third"])
        at_edge = sum(0.9 <= m <= 1.2 for m in e["median_last_third"])
        rows.append([f"{e['eta']:g}", _div_cell(e["diverged"]), cell(Stat.of(e["init"])), cell(Stat.of(e["min_first_third"])),
                     cell(Stat.of(e["median_last_third"])), cell(Stat.of(e["max"])),
                     f"{sharpened}/{len(e['init'])}", f"{at_edge}/{len(e['init'])}", cell(Stat.of(e["final_loss"]), 2)])
    table = md_table(["η", "diverged", "at init", "min over first third", "median over last third", "max",
                      f"seeds sharpening from < {SHARPENING_BELOW}", "seeds at the edge (0.9-1.2)", "final train loss"],
                     rows)
    intro = (f"Sharpness / (2/η), median [IQR] over {d['seeds']}, {d['steps']:,} steps, measured every "
             f"{d['every']} steps:")
    return {"eos-chebyshev": f"{intro}\n\n{table}"}


register(Spec("eos-chebyshev", ("eos-chebyshev",), "Edge of Stability on chebyshev-4 (Cohen et al.'s init), 16 seeds",
              _eos_produce, _eos_render, cost=14.0))


# --------------------------------------------------------------------------- EoSS

EOSS_SEEDS = 16
EDGE_SCALED = ("sharpness", "batch_sharpness", "gni")  # curvatures: reported as multiples of 2/eta
EOSS_POINTS = 11  # every 1000 steps (the config: 500); the last third holds 4 measurements


def _last_third_medians(res, cfg, names) -> dict:
    steps = res.steps
    last = steps >= 2 * steps[-1] / 3
    out, flags = {}, arm_finals(res, [])
    for a in cfg.arms:
        edge = 2 / _eta(cfg, a)
        idx = res.arm(label(a))
        entry = {"diverged": flags[label(a)]["diverged"]}
        for n in names:
            if n not in res.metrics:
                continue
            v = res.metrics[n][last][:, idx]
            with np.errstate(all="ignore"):
                med = np.nanmedian(v, 0) / (edge if n in EDGE_SCALED else 1.0)
            entry[n] = [None if not np.isfinite(x) else float(x) for x in med]
        out[label(a)] = entry
    return out


def _eoss_produce(ctx) -> dict:
    cfg = configure("eoss-small", [f"seeds={EOSS_SEEDS}", f"eval.points={EOSS_POINTS}", "extra_figures=[]"])
    res = ctx.run("eoss-small", cfg)
    return {"seeds": seeds_text(EOSS_SEEDS), "steps": cfg.steps, "arms": _last_third_medians(
        res, cfg, ["sharpness", "batch_sharpness", "gni", "train_loss"])}


def _eoss_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    rows = [[pretty(a), _div_cell(arms[a]["diverged"]), cell(stat(arms, a, "sharpness")), cell(stat(arms, a, "batch_sharpness")),
             cell(stat(arms, a, "gni")), cell(stat(arms, a, "train_loss"), 2)] for a in arms]
    table = md_table(["arm", "diverged", "λ_max / (2/η)", "batch sharpness / (2/η)", "GNI / (2/η)", "train loss"], rows)
    names = list(arms)
    lam = compare(stat(arms, names[0], "sharpness"), stat(arms, names[1], "sharpness"))
    lines = [f"- λ_max, {pretty(names[0])} vs {pretty(names[1])}: {lam}"]
    for a in names[:2]:
        lines.append(f"- {pretty(a)}, batch sharpness vs λ_max: "
                     f"{compare(stat(arms, a, 'batch_sharpness'), stat(arms, a, 'sharpness'))}")
    intro = f"Medians over the last third of the run (steps ≥ 2T/3), then median [IQR] over {d['seeds']}:"
    return {"eoss-small": f"{intro}\n\n{table}\n\n" + "\n".join(lines)}


register(Spec("eoss-small", ("eoss-small",), "Edge of Stochastic Stability (SGD b=8, 32, GD), 16 seeds",
              _eoss_produce, _eoss_render, cost=38.0))


# --------------------------------------------------------------------------- sharpest directions

SD_SEEDS = 16
SD_METRICS = ("sharpness", "hessian_cond", "dead_fraction", "train_loss")


def _sd_produce(ctx) -> dict:
    cfg = configure("sharpest-directions", [f"seeds={SD_SEEDS}", "eval.points=2", "extra_figures=[]"])
    res = ctx.run("sharpest-directions", cfg)
    return {"seeds": seeds_text(SD_SEEDS), "steps": cfg.steps, "arms": arm_finals(res, SD_METRICS)}


def _sd_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    rows = [[pretty(a), _div_cell(arms[a]["diverged"])] + [cell(stat(arms, a, m), 3 if m != "train_loss" else 2)
                                                          for m in SD_METRICS] for a in arms]
    table = md_table(["arm", "diverged", "λ₁", "λ₁/λ₅", "dead fraction", "train loss"], rows)
    pairs = [("eta=0.05 b=10", "eta=0.05 b=100"), ("eta=0.02 b=10", "eta=0.02 b=100"),
             ("eta=0.01 b=10", "eta=0.01 b=100"), ("eta=0.05 b=10", "eta=0.02 b=10"),
             ("eta=0.05 b=100", "eta=0.02 b=100")]
    lines = [f"- {pretty(a)} vs {pretty(b)}: λ₁ {compare(stat(arms, a, 'sharpness'), stat(arms, b, 'sharpness'))}; "
             f"λ₁/λ₅ {compare(stat(arms, a, 'hessian_cond'), stat(arms, b, 'hessian_cond'))}" for a, b in pairs]
    intro = f"At step {d['steps']:,}, median [IQR] over {d['seeds']}:"
    return {"sharpest-directions": f"{intro}\n\n{table}\n\n" + "\n".join(lines)}


register(Spec("sharpest-directions", ("sharpest-directions",), "SGD smooths the sharpest directions (eta x b), 16 seeds",
              _sd_produce, _sd_render, cost=24.0))

