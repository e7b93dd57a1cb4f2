"""Reproduction of the ReLU-network and SDE claims of Andriushchenko et al. (2023), across seeds.

Criteria, fixed before running and taken from the paper's claims (not tuned); medians are over
the non-diverged seeds of 8 and every arm must keep at least MIN_ALIVE of them:

Two-layer teacher-student (relu-teacher-student.toml; large step 0.35, the window measured on
our data, see the config):
  (a) every large-step arm (decay at 10 / 30 / 50%) ends with a lower median feature sparsity
      (merged, tau = 0.99) and a lower median Jacobian rank (rtol 1e-4) than eta = 0.13 constant;
  (b) the longest large-step phase (decay at 50%) ends with a lower median test loss than
      eta = 0.13 constant.
Constant-noise SDE (sde-teacher-student.toml, sde-diag-net.toml; delta from SGD's stabilized loss):
  (c) the SDE beats GD (same schedule): lower median test loss and sparser (feature sparsity for
      the ReLU net, ||u*v||_0 at 1e-3 for the diagonal net);
  (d) the SDE tracks SGD: its median test loss (log scale) and its sparsity are closer to SGD's
      than to GD's.
Negative controls (the same runs with the effect-producing knob turned off; the finding must not
appear):
  - two-layer: the large step 0.35 of the decayed arms replaced by the small 0.13 (same decays, so
    no large-step phase): (a) fails -- not every decayed arm ends sparser and of lower rank than
    eta = 0.13 constant;
  - SDE: an SDE arm with delta = 0 (noise off: it is GD with SGD's schedule): (c) fails -- it does
    not end with both a lower test loss and a sparser solution than GD.
"""

import numpy as np
import pytest

import sgdlab
from sgdlab.core.config import from_dict, to_dict

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related")

MIN_ALIVE = 3
FAST = ["eval.grid='log'", "eval.points=6", "extra_figures=[]", "snapshots=0"]


def finals(cfg, metrics):
    only = [f"metrics.names={metrics!r}".replace("'", '"'), f"figure={metrics!r}".replace("'", '"')]
    res = sgdlab.run(sgdlab.override(cfg, FAST + only),
                     progress=False, quiet=True)
    out = {}
    for arm in res.summary["arms"]:
        idx = res.arm(arm)
        alive = [i for i in idx if np.isfinite(res.final("train_loss")[i])]
        assert len(alive) >= min(MIN_ALIVE, len(idx)), (arm, len(alive))  # GD from a fixed init: 1 run
        out[arm] = {k: float(np.median(res.final(k)[alive])) for k in metrics}
    return out


CONST = "SGD eta=0.13"
TS_METRICS = ["train_loss", "test_loss", "block1_sparsity", "jacobian_rank"]


def sparser_and_lower_rank(f):
    """Criterion (a): every decayed arm below eta = 0.13 constant in sparsity and in rank."""
    return all(f[a]["block1_sparsity"] < f[CONST]["block1_sparsity"]
               and f[a]["jacobian_rank"] < f[CONST]["jacobian_rank"] for a in f if a != CONST)


def test_two_layer_longer_large_step_phase_is_sparser_lower_rank_and_better():
    cfg = sgdlab.load_experiment("relu-teacher-student")
    f = finals(cfg, TS_METRICS)
    assert sparser_and_lower_rank(f), f  # (a)
    assert f["SGD eta=0.35 /5 at 50%"]["test_loss"] < f[CONST]["test_loss"], f  # (b)


def test_two_layer_negative_control_small_step_gives_no_sparsity_gain():
    cfg = sgdlab.load_experiment("relu-teacher-student")
    small = [f"arms.{i}.schedule.lr=0.13" for i in (1, 2, 3)]
    f = finals(sgdlab.override(cfg, small), TS_METRICS)
    assert not sparser_and_lower_rank(f), f


def beats_gd(f, sde, gd, sparsity):
    """Criterion (c): lower median test loss and sparser than GD."""
    return f[sde]["test_loss"] < f[gd]["test_loss"] and f[sde][sparsity] < f[gd][sparsity]


@pytest.mark.parametrize("name,sparsity", [("sde-teacher-student", "block1_sparsity"),
                                           ("sde-diag-net", "l0_robust")])
def test_sde_tracks_sgd_and_beats_gd(name, sparsity):
    cfg = sgdlab.load_experiment(name)
    d = to_dict(cfg)
    sde_arm = next(a for a in d["arms"] if a["name"].startswith("SDE"))
    d["arms"].append({**sde_arm, "name": "control: SDE delta=0",
                      "optimizer": {**sde_arm["optimizer"], "delta": 0.0}})
    f = finals(from_dict(type(cfg), d), ["train_loss", "test_loss", sparsity])
    sgd, sde, gd = (next(a for a in f if a.startswith(p)) for p in ("SGD", "SDE", "GD"))
    assert not beats_gd(f, "control: SDE delta=0", gd, sparsity), f  # negative control
    assert beats_gd(f, sde, gd, sparsity), f  # (c)
    f.pop("control: SDE delta=0")
    lt = {a: np.log10(f[a]["test_loss"]) for a in f}
    assert abs(lt[sde] - lt[sgd]) < abs(lt[sde] - lt[gd]), f  # (d)
    assert abs(f[sde][sparsity] - f[sgd][sparsity]) < abs(f[sde][sparsity] - f[gd][sparsity]), f
