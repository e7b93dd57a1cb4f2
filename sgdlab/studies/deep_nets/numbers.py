"""Numbers of docs/deep-nets.md: the CPU-sized deep-net demo on digits."""

from __future__ import annotations

import numpy as np

from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    arm_finals,
    cell,
    configure,
    seeds_text,
    stat,
)
from sgdlab.frontends.docs_numbers.tables import arms_table, pretty, significance_lines

DEMO_SEEDS = 16
STABILIZED_AT = 0.4  # fraction of the run: inside every large-step phase of p >= 50%, after p = 10 / 30%
ARMS = ("eta=0.02 constant", "eta=0.3 x1.05^(100t/T), /10 at 10%", "eta=0.3 x1.05^(100t/T), /10 at 30%",
        "eta=0.3 x1.05^(100t/T), /10 at 50%")
METRICS = {"block5_sparsity": "block5 merged sparsity", "block5_active": "block5 active",
           "block4_sparsity": "block4 sparsity", "test_error": "test error", "train_loss": "train loss"}


def _produce(ctx) -> dict:
    # The config's own grid (every 50 steps) holds step 0.4 T; figures and snapshots are skipped.
    cfg = configure("deep-demo-digits", [f"seeds={DEMO_SEEDS}", "extra_figures=[]", "snapshots=0"])
    res = ctx.run("deep-demo-digits", cfg)
    ctx.figure(res.path / "figures" / "deep-demo-digits.png", "deep-demo-digits.png")
    i40 = int(np.searchsorted(res.steps, STABILIZED_AT * cfg.steps))
    arms = arm_finals(res, list(METRICS))
    for a, e in arm_finals(res, ["train_loss"], step_index=i40).items():
        arms[a]["train_loss_at"] = e["train_loss"]
    return {"seeds": seeds_text(DEMO_SEEDS), "steps": cfg.steps, "at_step": int(res.steps[i40]), "arms": arms}


def _render(d: dict) -> dict[str, str]:
    arms = d["arms"]
    intro = (f"`deep-demo-digits` (VGG-11-BN width 8, batch 32), {d['seeds']}, values at step {d['steps']:,} "
             f"(`sgdlab run deep-demo-digits --seeds {d['seeds'].split()[0]}`):")
    table = arms_table(arms, METRICS)
    sig = significance_lines(arms, [(ARMS[3], ARMS[0]), (ARMS[3], ARMS[1]), (ARMS[2], ARMS[1]), (ARMS[3], ARMS[2]),
                                    (ARMS[1], ARMS[0])], {"block5_sparsity": "block5 sparsity",
                                                          "block4_sparsity": "block4 sparsity",
                                                          "test_error": "test error"})
    at = "; ".join(f"{pretty(a)} {cell(stat(arms, a, 'train_loss_at'), 2)}" for a in arms)
    return {"deep-demo-digits": f"{intro}\n\n{table}\n\n{sig}\n\nTrain loss at step {d['at_step']} "
                                f"({STABILIZED_AT:.0%} of the run): {at}."}


register(Spec("deep-demo-digits", ("deep-demo-digits",),
              "VGG-11-BN on digits: top-block sparsity vs the large-step phase, 16 seeds", _produce, _render, cost=50.0))
