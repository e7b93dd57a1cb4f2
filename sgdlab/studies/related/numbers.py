"""Numbers of docs/related-*.md: depth-2 linear net, SGD with vs without replacement, support
identification."""

from __future__ import annotations

import numpy as np

from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    Stat,
    arm_finals,
    cell,
    compare,
    configure,
    div,
    label,
    md_table,
    num,
    seeds_text,
    stat,
)
from sgdlab.frontends.docs_numbers.tables import experiment_spec, pretty

SEEDS = 16

# --------------------------------------------------------------------------- depth-2 linear net


def exact_prefix(steps: np.ndarray) -> int:
    """Largest N such that every step 0..N is on the evaluation grid (the grid is exact up to N)."""
    s = np.asarray(steps, dtype=np.int64)
    gaps = np.nonzero(np.diff(s) != 1)[0]
    return int(s[gaps[0]]) if gaps.size else int(s[-1])


def _linear2_produce(ctx) -> dict:
    from sgdlab.store.runs import RunDir
    from sgdlab.studies.related.figures import linear2_table

    cfg = configure("linear2-large-step")
    res = ctx.run("linear2-large-step", cfg)
    ctx.figure(res.path / "figures" / "linear2_large_step.png", "related-linear2-large-step.png")
    tab = linear2_table(RunDir(res.path))
    tab.pop("_flow_traj")
    steps = [int(s) for s in res.steps]
    diverged = {r["index"]: r.get("diverged_at") is not None for r in res.summary["runs"]}
    conv = []
    for r in tab["runs"]:  # the logged step before the first converged one: the true step is in (prev, k]
        k = r["steps_to_converge"]
        prev = steps[steps.index(int(k)) - 1] if np.isfinite(k) else None
        conv.append({"seed": r["seed"], "eta": r["eta"], "sharpness": r["sharpness"], "norm_sq": r["norm_sq"],
                     "converged_at": int(k) if np.isfinite(k) else None, "previous_logged": prev,
                     "diverged": diverged[r["index"]]})
    return {"seeds": f"{cfg.seeds} seeds (0-{cfg.seeds - 1}), deterministic per seed", "steps": cfg.steps,
            "grid_points": len(steps), "grid_exact_to": exact_prefix(np.array(steps)),
            "runs": conv, "flow": tab["flow"]}


def _steps_cell(r: dict) -> str:
    k, p = r["converged_at"], r["previous_logged"]
    if k is None:
        return "–"
    return str(k) if k - p == 1 else f"{p + 1}–{k}"


def _linear2_render(d: dict) -> dict[str, str]:
    by = {(r["seed"], r["eta"]): r for r in d["runs"]}
    etas = sorted({r["eta"] for r in d["runs"]})
    show = (0, 1)  # seeds 2 and 3 repeat 1 and 0 up to (a, b) -> (-a, -b) for d = 1
    rows = []
    for e in etas:
        rs = [by[(s, e)] for s in show]
        rows.append([f"{e:g}"] + [num(r["sharpness"], 4) if r["converged_at"] is not None else
                                  ("diverged" if r["diverged"] else "not converged") for r in rs]
                    + [_steps_cell(r) for r in rs])
    table = md_table(["η", "limit sharpness, seed 0", "limit sharpness, seed 1", "steps to converge, seed 0",
                      "steps to converge, seed 1"], rows)
    gf = d["flow"]
    grid = (f"\"Steps to converge\": the first logged step after which the train loss stays ≤ 1e-12. The "
            f"log grid has {d['grid_points']} points over {d['steps']:,} steps and holds every step only up to "
            f"step {d['grid_exact_to']}; beyond, a count is known to lie between the previous logged step + 1 and "
            f"the logged one, written as a range (a–b).")
    flow = (f"Gradient flow's limit: sharpness {num(gf[0]['sharpness'], 5)} (seed 0), "
            f"{num(gf[1]['sharpness'], 5)} (seed 1); Q conserved ({num(gf[0]['imbalance'], 5)}).")
    return {"linear2-grid": grid, "linear2-table": f"{table}\n\n{flow}"}


register(Spec("linear2-large-step", ("linear2-grid", "linear2-table"),
              "depth-2 linear net: GD limit sharpness and steps to converge over eta (deterministic)",
              _linear2_produce, _linear2_render, cost=0.6))


# --------------------------------------------------------------------------- with vs without replacement

def _quadratic_produce(ctx) -> dict:
    from sgdlab.studies.related.metrics import late_mean

    cfg = configure("replacement-quadratic", [f"seeds={SEEDS}", "extra_figures=[]"])
    res = ctx.run("replacement-quadratic", cfg)
    late = late_mean(res.steps, res.metrics["dist_opt"], cfg.steps // 2)
    out = {}
    for a in cfg.arms:
        out[label(a)] = {"eta": a.schedule.lr, "replacement": a.optimizer.replacement,
                       "late": [float(v) for v in late[res.arm(label(a))]]}
    return {"seeds": seeds_text(SEEDS), "steps": cfg.steps, "arms": out}


def _quadratic_render(d: dict) -> dict[str, str]:
    from sgdlab.studies.related.metrics import loglog_slope

    arms = d["arms"]
    etas = sorted({a["eta"] for a in arms.values()})
    pick = lambda e, rep: next(a["late"] for a in arms.values() if a["eta"] == e and a["replacement"] is rep)
    rows, med = [], {True: [], False: []}
    for e in etas:
        w, r = Stat.of(pick(e, True)), Stat.of(pick(e, False))
        med[True].append(w.median)
        med[False].append(r.median)
        rows.append([f"{e:g}", cell(w), cell(r), num(r.median / w.median, 2), compare(r, w)])
    table = md_table(["η", "with replacement", "without (epoch ends)", "ratio of medians", "without vs with"], rows)
    x = np.array(etas)
    slopes = (f"Log-log slopes of the medians against η: {loglog_slope(x, np.array(med[True])):.2f} with "
              f"replacement, {loglog_slope(x, np.array(med[False])):.2f} without.")
    intro = (f"‖θ − θ*‖² averaged over the epoch ends of the second half, median [IQR] over {d['seeds']}, "
             f"{d['steps']:,} steps:")
    return {"replacement-quadratic": f"{intro}\n\n{table}\n\n{slopes}"}


register(Spec("replacement-quadratic", ("replacement-quadratic",),
              "finite-sum quadratic: epoch-end distance to the optimum with vs without replacement, 16 seeds",
              _quadratic_produce, _quadratic_render, cost=0.7))

_PAIRS_DIAG = [("RR eta=0.05", "SGD eta=0.05"), ("RR eta=0.15", "SGD eta=0.15")]
experiment_spec(
    "replacement-diag", "replacement-diag", SEEDS,
    {"test_loss": "test loss", "l0_robust": "‖β‖₀ (>1e-3)", "l1": "‖β‖₁", "train_loss": "train loss"},
    pairs=_PAIRS_DIAG, intro="Diagonal net (n = 40, d = 100, r = 5, u₀ = 0.1, batch 1), {seeds}, {steps} steps:",
    about="diagonal net with vs without replacement, 16 seeds", cost=0.1, sig=4)

_PAIRS_RELU = [("RR eta=0.01", "SGD eta=0.01"), ("RR eta=0.02", "SGD eta=0.02")]
experiment_spec(
    "replacement-relu", "replacement-relu", SEEDS,
    {"test_loss": "test loss", "irrelevant_norm": "irrelevant / init", "train_loss": "train loss"},
    pairs=_PAIRS_RELU, intro="ReLU net (width 10, support-regression data, batch 1), {seeds}, {steps} steps:",
    about="two-layer ReLU net with vs without replacement, 16 seeds", cost=0.3)


# --------------------------------------------------------------------------- support identification

SUPPORT_METRICS = {"irrelevant_norm": "irrelevant / init", "relevant_norm": "relevant / init",
                   "train_loss": "train loss", "test_loss": "test loss"}


def _support_spec(name: str, cost: float) -> Spec:
    def produce(ctx) -> dict:
        from sgdlab.studies.related.metrics import value_at_time

        cfg = configure(name, [f"seeds={SEEDS}", "extra_figures=[]"])
        res = ctx.run(name, cfg)
        finals = arm_finals(res, list(SUPPORT_METRICS))
        eta = cfg.arms[-2].schedule.lr  # SGD b=1 eta, and the last arm has eta / 2
        at = eta * cfg.steps / 2
        for a in cfg.arms[-2:]:
            idx = res.arm(label(a))
            v = value_at_time(res.steps, res.metrics["irrelevant_norm"][:, idx], np.full(len(idx), a.schedule.lr), at)
            finals[label(a)]["equal_time"] = [float(x) for x in v]
        return {"seeds": seeds_text(SEEDS), "steps": cfg.steps, "equal_time": at, "arms": finals}

    def render(d: dict) -> dict[str, str]:
        arms = d["arms"]
        rows = [[pretty(a), div(stat(arms, a, "irrelevant_norm"))]
                + [cell(stat(arms, a, m)) for m in SUPPORT_METRICS] for a in arms]
        table = md_table(["arm", "diverged", *SUPPORT_METRICS.values()], rows)
        big, small = list(arms)[-2:]
        sb, ss = stat(arms, big, "equal_time"), stat(arms, small, "equal_time")
        names = list(arms)
        order = [(names[4], names[3]), (names[3], names[2]), (names[2], names[0])]
        sig = "\n".join(f"- irrelevant / init, {pretty(a)} vs {pretty(b)}: "
                        f"{compare(stat(arms, a, 'irrelevant_norm'), stat(arms, b, 'irrelevant_norm'))}" for a, b in order)
        eq = (f"At equal ηt = {num(d['equal_time'])}: {pretty(big)} → {cell(sb)} vs {pretty(small)} → {cell(ss)} "
              f"({compare(sb, ss)}).")
        intro = f"Final values at T = {d['steps']:,}, median [IQR] over {d['seeds']}:"
        return {name: f"{intro}\n\n{table}\n\n{sig}\n- {eq}"}

    return register(Spec(name, (name,), f"{name}: irrelevant first-layer columns under GD / SGD / L2, 16 seeds",
                         produce, render, cost))


_support_spec("support-identification", 1.0)
_support_spec("support-identification-relu", 1.5)

