"""ReLU-network, SDE and label-noise numbers of docs/relu-nets.md."""

from __future__ import annotations

from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    add_late_levels,
    arm_finals,
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
from sgdlab.frontends.docs_numbers.tables import experiment_spec, pretty

TS_SEEDS = 40  # 4/8 large-step seeds diverge in the first steps: 40 seeds leave ~20 per arm
SEEDS = 16
TS_CONST = "SGD eta=0.13"
TS_DECAYS = ("SGD eta=0.35 /2 at 10%", "SGD eta=0.35 /4 at 30%", "SGD eta=0.35 /5 at 50%")
TS_METRICS = {"test_loss": "test loss", "block1_sparsity": "feature sparsity", "jacobian_rank": "rank φ"}

experiment_spec(
    "relu-teacher-student", "relu-teacher-student", TS_SEEDS, TS_METRICS,
    pairs=[(TS_DECAYS[1], TS_DECAYS[0]), (TS_DECAYS[2], TS_DECAYS[1]), (TS_DECAYS[2], TS_DECAYS[0]),
           (TS_DECAYS[0], TS_CONST)],
    intro="`relu-teacher-student`, {seeds}, {steps} steps, medians [IQR] over the non-diverged seeds:",
    note="Paper (one seed): test 6.1e-4 vs 1.6e-4 / 1.4e-4 / 5.4e-5; sparsity ~26% vs 11 / 9 / 6.5%; "
         "rank ~26 vs 16 / 12 / 7 (eta = 0.455 there; 0.35 here, see below).",
    about="two-layer ReLU teacher-student, 40 seeds: large steps and the length of the large-step phase",
    cost=0.5)

experiment_spec(
    "sde-teacher-student", "sde-teacher-student", SEEDS, TS_METRICS,
    pairs=[("SDE eta=0.35 /5 at 50%", "GD eta=0.35 /5 at 50%"), ("SDE eta=0.35 /5 at 50%", "SGD eta=0.35 /5 at 50%")],
    intro="`sde-teacher-student`, {seeds}, {steps} steps (δ from SGD's stabilized loss, see the config):",
    about="SGD vs constant-noise SDE vs GD on the ReLU teacher-student, 16 seeds", cost=0.8)

experiment_spec(
    "sde-diag-net", "sde-diag-net", SEEDS, {"test_loss": "test loss", "l0_robust": "‖u⊙v‖₀ (1e-3)"},
    pairs=[("SDE eta=0.6 /3 at 50%", "GD eta=0.6 /3 at 50%"), ("SDE eta=0.6 /3 at 50%", "SGD eta=0.6 /3 at 50%")],
    intro="`sde-diag-net` (n=20, d=30, r=3), {seeds}, {steps} steps:",
    about="SGD vs constant-noise SDE vs GD on the diagonal net, 16 seeds", cost=0.4)

L3_DECAYS = ("SGD eta=0.04 warm-up, /3.5 at 10%", "SGD eta=0.04 warm-up, /2.5 at 30%", "SGD eta=0.04 warm-up, /5 at 50%")
experiment_spec(
    "relu-3layer", "relu-3layer", SEEDS,
    {"test_loss": "test loss", "block1_active": "positive fraction, layer 1",
     "block2_active": "positive fraction, layer 2"},
    pairs=[(L3_DECAYS[0], "SGD eta=0.011"), (L3_DECAYS[1], L3_DECAYS[0]), (L3_DECAYS[2], L3_DECAYS[1])],
    intro="`relu-3layer`, {seeds}, {steps} steps:",
    note="Paper (one seed): test 0.0614 vs 0.0322 / 0.0248 / 0.0206; nonzero activations layer 1: 57.0% vs "
         "47.6 / 37.8 / 34.0%; layer 2: 46.6% vs 31.2 / 25.2 / 18.2%.",
    about="three-layer ReLU teacher-student, 16 seeds: per-layer sparsity", cost=0.5)

ONE_D = {"train_loss": "train loss", "block1_active": "positive fraction", "block1_sparsity": "merged sparsity",
         "jacobian_rank": "rank φ"}
experiment_spec(
    "relu-1d", "relu-1d", SEEDS, ONE_D, pairs=[("SGD warm-up to 50%, /3", "SGD warm-up to 2%, /2.5")],
    intro="`relu-1d`, {seeds}, {steps} steps (no test set: the 12 points are the data):",
    note="Paper (one seed): positive activations 48.7% (2%) vs 26.7% (50%).",
    about="1-D regression, short vs long warm-up phase, 16 seeds", cost=1.3)

FAILED_FIT = 0.1  # train loss of a failed 1-D fit: the fits end <= 1e-2, the paper's failed one at 0.27


def _failed_fits(d: dict) -> str:
    parts = []
    for a, e in d["arms"].items():
        bad = sorted(x for x in e["train_loss"] if x is not None and x > FAILED_FIT)
        rng = f" (train loss {num(bad[0], 2)}–{num(bad[-1], 2)})" if bad else ""
        parts.append(f"{pretty(a)}: {len(bad)}/{len(e['train_loss'])}{rng}")
    return f"Seeds whose fit fails (final train loss > {FAILED_FIT:g}): " + "; ".join(parts) + "."


experiment_spec(
    "relu-1d-overreg", "relu-1d-overreg", SEEDS, ONE_D,
    pairs=[("SGD warm-up f=500p to 50%, /3", "SGD warm-up f=400p to 50%, /3")],
    intro="`relu-1d-overreg`, {seeds}, {steps} steps:",
    extra=_failed_fits, note="Paper (one seed): with f = 500p the fit fails (train loss 0.27).",
    about="1-D regression, the over-regularizing warm-up f=500p vs 400p, 16 seeds", cost=0.8)

experiment_spec(
    "label-noise-diag-net", "label-noise-diag-net", SEEDS,
    {"test_loss": "test loss", "l0_robust": "‖u⊙v‖₀ (1e-3)", "support_mass": "support mass"},
    pairs=[("label-noise GD sigma=1 eta=0.1", "GD eta=0.1"), ("label-noise SGD sigma=1 eta=0.05", "GD eta=0.1")],
    intro="`label-noise-diag-net` (u₀ = 1), {seeds}, {steps} steps:",
    about="label noise from a large init on the diagonal net, 16 seeds", cost=1.0)


LN_PHASED = "label-noise SGD sigma=5 eta=0.01, then GD eta=1.0"
experiment_spec(
    "label-noise-diag-net-phases", "label-noise-diag-net-phases", 2 * SEEDS,
    {"train_loss": "train loss", "test_loss": "test loss", "l0_robust": "‖u⊙v‖₀ (1e-3)",
     "support_mass": "support mass"},
    pairs=[(LN_PHASED, "GD eta=0.04")],
    intro="`label-noise-diag-net-phases` (u₀ = v₀ = 2; n=20, d=30, r=3), {seeds}, {steps} steps; the plain-GD "
          "control is deterministic from the fixed init, so one run stands for every seed:",
    about="two phases (label-noise SGD 80%, then GD) from a large init vs plain GD, 32 seeds", cost=0.5)


# --------------------------------------------------------------------------- teacher-student window

TS_WINDOW = (0.3, 0.35, 0.4, 0.455)
TS_WINDOW_STEPS = 4000


def _window_produce(ctx) -> dict:
    arms = [constant_arm(f"SGD eta={e:g}", e, {"kind": "sgd", "batch_size": 1}) for e in TS_WINDOW]
    cfg = configure("relu-teacher-student", [f"seeds={SEEDS}", f"steps={TS_WINDOW_STEPS}", "eval.grid='linear'",
                                             "eval.points=41", "extra_figures=[]", "snapshots=0",
                                             *only_metrics(["train_loss"])], arms)
    res = ctx.run("window", cfg)
    out = add_late_levels(res, arm_finals(res, ["train_loss"]))
    for a in cfg.arms:
        out[label(a)]["diverged_at"] = [r.get("diverged_at") for r in res.summary["runs"] if r["arm"] == label(a)]
    return {"seeds": seeds_text(SEEDS), "steps": TS_WINDOW_STEPS, "arms": out}


def _window_render(d: dict) -> dict[str, str]:
    rows = []
    for a, e in d["arms"].items():
        s = stat(d["arms"], a, "late_level")
        at = [x for x in e["diverged_at"] if x is not None]
        rows.append([a.split("=")[1], div(stat(d["arms"], a, "train_loss")), num(max(at)) if at else "–",
                     num(s.median, 2), num(stat(d["arms"], a, "train_loss").median, 2)])
    table = md_table(["η (constant)", "diverged", "latest divergence step", "train loss, median over steps T/2..T",
                      "final train loss"], rows)
    return {"relu-ts-window": f"Constant-η SGD on the teacher-student data, {d['seeds']}, {d['steps']:,} steps:\n\n{table}"}


register(Spec("relu-ts-window", ("relu-ts-window",), "stabilization window of the ReLU teacher-student, 4 etas x 16 seeds",
              _window_produce, _window_render, cost=0.2))

