"""Diagonal-net numbers: README's table, docs/diag-net.md (results, eta = 0.27, window, n = 40,
loss-surface setting)."""

from __future__ import annotations

import numpy as np

from sgdlab.core.config import to_dict
from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    Stat,
    add_late_levels,
    arm_finals,
    cell,
    compare,
    configure,
    constant_arm,
    div,
    label,
    md_table,
    num,
    only_metrics,
    seeds_text,
    stat,
)
from sgdlab.frontends.docs_numbers.tables import pretty, significance_lines

MAIN_SEEDS = 32  # eta = 0.282 is at the window's edge: 2-3 of 8 seeds diverge per arm, so 4x the default
QUICK = ["extra_figures=[]", "snapshots=0"]
METRICS = ["train_loss", "test_loss", "l0", "l0_robust", "jacobian_rank"]
CONST, GD = "SGD eta=0.25", "GD eta=1.0"
DECAYS = ("SGD eta=0.282 /4.8 at 10%", "SGD eta=0.282 /3.4 at 30%", "SGD eta=0.282 /1.5 at 50%")
# The authors' single saved seed (their notebook), in DECAYS order after CONST.
AUTHORS_TEST = (3.5e-3, 6.6e-4, 2.8e-4, 1.5e-4)
AUTHORS_L0 = (200, 156, 89, 71)


# --------------------------------------------------------------------------- main table

def _main_produce(ctx) -> dict:
    cfg = configure("diag-net", [f"seeds={MAIN_SEEDS}"])
    res = ctx.run("diag-net", cfg)
    ctx.figure(res.path / "figures" / "diag-net.png", "diag-net.png")
    return {"seeds": seeds_text(MAIN_SEEDS), "steps": cfg.steps, "arms": arm_finals(res, METRICS)}


def _main_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    order = (CONST, *DECAYS, GD)
    readme = md_table(
        ["arm", "diverged", "test loss, median [IQR]", "`‖u⊙v‖₀`, median [IQR]"],
        [[pretty(a), div(stat(arms, a, "test_loss")), cell(stat(arms, a, "test_loss")),
          cell(stat(arms, a, "l0"))] for a in order])
    full = md_table(
        ["arm", "diverged", "test loss", "‖u⊙v‖₀ (1e-50)", "‖u⊙v‖₀ (1e-3)", "rank φ"],
        [[pretty(a), div(stat(arms, a, "test_loss"))] + [cell(stat(arms, a, m)) for m in METRICS[1:]]
         for a in order])
    authors = (f"The authors' single saved seed (one seed, not a median): test loss "
               f"{' / '.join(num(x, 2) for x in AUTHORS_TEST)} and ‖u⊙v‖₀ "
               f"{' / '.join(map(str, AUTHORS_L0))} for the four SGD arms in this order.")
    pairs = [(DECAYS[1], DECAYS[0]), (DECAYS[2], DECAYS[1]), (DECAYS[2], CONST)]
    sig = significance_lines(arms, pairs, {"test_loss": "test loss", "l0": "‖u⊙v‖₀"})
    n = d["seeds"].split()[0]
    intro = (f"Medians over the non-diverged seeds of {n} (`sgdlab run diag-net --seeds {n}`; the "
             f"quick-start default runs 8), {d['steps']:,} steps; GD is deterministic and runs once.")
    return {"diag-net-main": f"{intro}\n\n{readme}\n\n{sig}\n\n{authors}",
            "diag-net-results": f"{intro}\n\n{full}\n\n{sig}\n\n{authors}"}


register(Spec("diag-net-main", ("diag-net-main", "diag-net-results"),
              "diag-net (paper Fig. 1) with 32 seeds: README table, docs/diag-net.md results, figure",
              _main_produce, _main_render, cost=6.0))


# --------------------------------------------------------------------------- eta = 0.27

def _027_produce(ctx) -> dict:
    sets = [f"seeds={MAIN_SEEDS}", "eval.grid='log'", "eval.points=30"]
    sets += [f"arms.{i}.schedule.lr=0.27" for i in (1, 2, 3)]
    sets += [f"arms.{i}.name='{a.replace('0.282', '0.27')}'" for i, a in enumerate(DECAYS, start=1)]
    res = ctx.run("diag-net-027", configure("diag-net", sets))
    return {"seeds": seeds_text(MAIN_SEEDS), "arms": arm_finals(res, METRICS)}


def _027_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    dec = [a.replace("0.282", "0.27") for a in DECAYS]
    rows = [[pretty(a), div(stat(arms, a, "test_loss"))] + [cell(stat(arms, a, m)) for m in ("test_loss", "l0_robust", "l0")]
            for a in (CONST, *dec)]
    table = md_table(["arm", "diverged", "test loss", "‖u⊙v‖₀ (1e-3)", "‖u⊙v‖₀ (1e-50)"], rows)
    sig = significance_lines(arms, [(dec[1], dec[0]), (dec[2], dec[1]), (dec[2], CONST)],
                             {"test_loss": "test loss", "l0_robust": "‖u⊙v‖₀ (1e-3)"})
    return {"diag-net-027": f"With η = 0.27 instead of 0.282 (inside the window; `sgdlab run diag-net --seeds "
                            f"{d['seeds'].split()[0]} --set arms.1.schedule.lr=0.27 ...` for arms 1-3):\n\n{table}\n\n{sig}"}


register(Spec("diag-net-027", ("diag-net-027",), "diag-net with the large step 0.27 (inside the window), 32 seeds",
              _027_produce, _027_render, cost=0.8))


# --------------------------------------------------------------------------- stabilization window

WINDOW_ETAS = (0.20, 0.22, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.30)
WINDOW_SEEDS = 16


def _window_produce(ctx) -> dict:
    arms = [constant_arm(f"eta={e:g}", e, {"kind": "sgd", "batch_size": 1}) for e in WINDOW_ETAS]
    cfg = configure("diag-net", [f"seeds={WINDOW_SEEDS}", "eval.grid='linear'", "eval.points=101",
                                 *only_metrics(["train_loss"])], arms)
    res = ctx.run("window", cfg)
    finals = add_late_levels(res, arm_finals(res, ["train_loss"]))
    return {"seeds": seeds_text(WINDOW_SEEDS), "steps": cfg.steps, "arms": finals}


def _window_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    rows = [[f"{float(a.split('=')[1]):.2f}", div(stat(arms, a, "train_loss")), cell(stat(arms, a, "late_level"), 2),
             cell(stat(arms, a, "train_loss"), 2)] for a in arms]
    table = md_table(["η", "diverged", "train loss, median over steps T/2..T (median [IQR] over seeds)",
                      "final train loss"], rows)
    return {"diag-net-window": f"Constant-η SGD (batch 1) on the diag-net data, {d['steps']:,} steps:\n\n{table}"}


register(Spec("diag-net-window", ("diag-net-window",), "stabilization window of constant-eta SGD on diag-net, 9 etas x 16 seeds",
              _window_produce, _window_render, cost=0.4))


# --------------------------------------------------------------------------- n = 40

N40_SEEDS = 16
N40_GD = ("GD eta=2.0", "GD eta=3.53 /4.8 at 10%", "GD eta=3.53 /3.4 at 30%", "GD eta=3.53 /1.5 at 50%")
N40_SGD = ("SGD eta=0.25", "SGD eta=0.26 /20 at 50%")
N40_AUTHORS = {"GD eta=2.0": 0.168, "GD eta=3.53 /4.8 at 10%": 0.449, "GD eta=3.53 /3.4 at 30%": 0.438,
               "GD eta=3.53 /1.5 at 50%": 0.497, "SGD eta=0.272 /20 at 50%": 0.0385}
N40_WINDOW = (0.26, 0.27)


def _n40_produce(ctx) -> dict:
    base = configure("diag-net-n40", [f"seeds={N40_SEEDS}"])
    res = ctx.run("n40", base)
    gd_arms = [{**to_dict(a), "name": label(a)} for a in base.arms if label(a) in N40_GD]
    torch_res = ctx.run("n40-torch-path", configure("diag-net-n40", ["fused=false"], gd_arms))
    sgd = {"kind": "sgd", "batch_size": 1}
    extra = [constant_arm(f"SGD eta={e:g}", e, sgd) for e in N40_WINDOW]
    extra.append({"name": "SGD eta=0.272 /20 at 50%", "optimizer": sgd,
                  "schedule": {"kind": "piecewise", "lr": 0.272, "milestones": [0.5], "factors": [20.0]}})
    win = ctx.run("n40-window", configure("diag-net-n40", [f"seeds={N40_SEEDS}", "eval.grid='log'", "eval.points=30",
                                                           *only_metrics(["train_loss", "test_loss", "l0"])], extra))
    return {"seeds": seeds_text(N40_SEEDS), "arms": arm_finals(res, ["test_loss", "l0"]),
            "torch_path": arm_finals(torch_res, ["test_loss", "l0"]), "window": arm_finals(win, ["test_loss", "l0"])}


def _n40_render(d: dict) -> dict[str, str]:
    arms, tp, win = d["arms"], d["torch_path"], d["window"]
    rows = []
    for a in N40_GD:
        s, t = stat(arms, a, "test_loss"), stat(tp, a, "test_loss")
        rows.append([pretty(a), "deterministic, 1 run", num(s.median),
                     num(t.median), num(N40_AUTHORS[a]), num(stat(arms, a, "l0").median)])
    for a in N40_SGD:
        s = stat(arms, a, "test_loss")
        rows.append([pretty(a), f"{div(s)} diverged", cell(s), "", "",
                     cell(stat(arms, a, "l0"))])
    table = md_table(["arm", "runs", "test loss (compiled kernel)", "test loss (torch path)", "authors (one seed)",
                      "‖u⊙v‖₀"], rows)
    wrow = ", ".join(f"{pretty(a)}: {div(stat(win, a, 'test_loss'))}" for a in win)
    gd_best = stat(arms, N40_GD[0], "test_loss")
    sgd_dec = stat(arms, N40_SGD[1], "test_loss")
    note = (f"Diverged seeds of further SGD arms ({d['seeds']}): {wrow}. "
            f"{pretty(N40_SGD[1])} vs {pretty(N40_GD[0])}: test loss {num(sgd_dec.median)} vs {num(gd_best.median)}, "
            f"{compare(sgd_dec, gd_best)}; vs {pretty(N40_SGD[0])}: "
            f"{compare(sgd_dec, stat(arms, N40_SGD[0], 'test_loss'))}.")
    return {"diag-net-n40": f"{table}\n\n{note}"}


register(Spec("diag-net-n40", ("diag-net-n40",), "diag-net-n40 (GD vs SGD) with 16 seeds, GD on both step paths",
              _n40_produce, _n40_render, cost=2.0))


# --------------------------------------------------------------------------- loss-surface setting

SURFACE_SEEDS = 16
SURFACE_AUTHORS = {"GF (GD eta=0.03)": 0.0149096, "GD eta=3.0 /3 at 50%": 0.126488, "SGD eta=0.6 /3 at 50%": 4.0e-8}


def _surface_produce(ctx) -> dict:
    cfg = configure("diag-net-surface", [f"seeds={SURFACE_SEEDS}", "eval.grid='log'", "eval.points=30",
                                         *only_metrics(["train_loss", "test_loss", "l0_robust"])] + QUICK)
    res = ctx.run("surface", cfg)
    return {"seeds": seeds_text(SURFACE_SEEDS), "arms": arm_finals(res, ["test_loss", "l0_robust"])}


def _surface_render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    rows = []
    for a, auth in SURFACE_AUTHORS.items():
        s, l0 = stat(arms, a, "test_loss"), stat(arms, a, "l0_robust")
        one = arms[a]["test_loss"][0]
        if s.n == 1:  # deterministic: one run stands for every seed
            rows.append([pretty(a), "1 run (deterministic)", f"{one:.7g}", "",
                         f"{auth:g}", num(l0.median)])
        else:
            rows.append([pretty(a), f"{s.n} seeds, {s.diverged} diverged", cell(s),
                         num(one), f"{auth:g}", cell(l0)])
    table = md_table(["arm", "runs", "test loss (median [IQR])", "seed 0", "authors (one seed)", "‖u⊙v‖₀ (1e-3)"], rows)
    return {"diag-net-surface": table}


register(Spec("diag-net-surface", ("diag-net-surface",), "loss-surface setting n=20: GF, GD and SGD (16 seeds)",
              _surface_produce, _surface_render, cost=0.5))


# --------------------------------------------------------------------------- window finder (docs/sweeps.md)

FINDER_SEEDS = 16
FINDER = {"lo": 0.15, "hi": 0.35, "points": 9, "bisect": 4}


def _finder_produce(ctx) -> dict:
    from sgdlab.workflows.window import find_window

    cfg = configure("diag-net", [f"seeds={FINDER_SEEDS}"])
    ctx.log(f"window finder on arm {label(cfg.arms[0])!r}, {FINDER}")
    res = find_window(cfg, FINDER["lo"], FINDER["hi"], points=FINDER["points"], bisect=FINDER["bisect"])
    return {"seeds": seeds_text(FINDER_SEEDS), "settings": FINDER, "lower": res.lower.tolist(),
            "upper": res.upper.tolist()}


def _finder_render(d: dict) -> dict[str, str]:
    lo = np.array([np.nan if x is None else x for x in d["lower"]], dtype=float)
    hi = np.array([np.nan if x is None else x for x in d["upper"]], dtype=float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    f = d["settings"]
    cmd = (f"`sgdlab window diag-net --set seeds={len(lo)} --lo {f['lo']} --hi {f['hi']} --points {f['points']} "
           f"--bisect {f['bisect']}`")
    if not ok.any():
        return {"diag-net-window-finder": f"{cmd}: no seed stabilizes anywhere in the range."}
    text = (f"{cmd}: {int(ok.sum())}/{len(lo)} seeds stabilize somewhere; over those, lower edge "
            f"{cell(Stat.of(lo[ok].tolist()), 3)}, upper edge {cell(Stat.of(hi[ok].tolist()), 3)} "
            f"and width {cell(Stat.of((hi[ok] - lo[ok]).tolist()), 2)} (median [IQR]).")
    return {"diag-net-window-finder": text}


register(Spec("diag-net-window-finder", ("diag-net-window-finder",), "stabilization-window finder on diag-net, 16 seeds",
              _finder_produce, _finder_render, cost=0.4))


# --------------------------------------------------------------------------- compiled kernel vs torch path

PATHS_FROM = 2000  # start state: step 2000 of the 1e5-step schedules (GD eta = 3.53 is in its large phase)
PATHS_AFTER = (1, 5, 100, 1000, 5000)
PATHS_SEEDS = 2


def _paths_produce(ctx) -> dict:
    from sgdlab.core.config import from_dict
    from sgdlab.engine.train import Engine
    from sgdlab.optim.stepper import advance
    from sgdlab.spec.experiment import ExperimentConfig

    def run(eng, params, t0, n, fused):
        out = []
        for g, p in zip(eng.groups, params):
            q = {k: v.clone() for k, v in p.items()}
            lr = np.stack([np.broadcast_to(s(np.arange(t0, t0 + n)), (n,)) for s in g.schedules]).astype(np.float64)
            advance(eng.model, q, eng.data, g.opt, {}, g.seeds, lr, t0, np.full(len(g.runs), -1, dtype=np.int64),
                    np.full(len(g.runs), np.inf), fused=fused)
            out.append(q)
        return out

    rows = {}
    for kind, lr in (("gd", 3.53), ("sgd", None)):
        d = to_dict(configure("diag-net-n40", [f"seeds={PATHS_SEEDS}"]))
        d["arms"] = [a for a in d["arms"] if a["optimizer"]["kind"] == kind and lr in (None, a["schedule"]["lr"])]
        eng = Engine(from_dict(ExperimentConfig, d))
        ctx.log(f"{kind}: {len(eng.runs)} runs from step {PATHS_FROM}, compiled vs torch")
        start = run(eng, eng.initial_state().params, 0, PATHS_FROM, True)
        rel = []
        for n in PATHS_AFTER:
            c, t = run(eng, start, PATHS_FROM, n, True), run(eng, start, PATHS_FROM, n, False)
            rel.append(max(float((c[i][k] - t[i][k]).abs().max() / t[i][k].abs().max()) for i in range(len(c))
                           for k in c[i]))
        rows["GD η=3.53 (decays at 10/30/50%)" if kind == "gd" else "SGD η=0.25 and 0.26 (batch 1)"] = rel
    return {"seeds": f"{PATHS_SEEDS} seeds per SGD arm, GD deterministic", "from": PATHS_FROM, "after": list(PATHS_AFTER),
            "rows": rows}


def _paths_render(d: dict) -> dict[str, str]:
    head = ["runs (diag-net-n40)"] + [f"after {n:,} step{'s' if n > 1 else ''}" for n in d["after"]]
    rows = [[name] + [f"{x:.1e}" for x in v] for name, v in d["rows"].items()]
    return {"diag-net-kernel-paths": f"Largest relative difference max|θ_compiled − θ_torch| / max|θ| over the "
                                     f"parameters of all runs, both paths started from the same state at step "
                                     f"{d['from']:,}:\n\n{md_table(head, rows)}"}


register(Spec("diag-net-kernel-paths", ("diag-net-kernel-paths",),
              "compiled kernel vs torch path from the same state (diag-net-n40): rounding growth",
              _paths_produce, _paths_render, cost=0.2))
