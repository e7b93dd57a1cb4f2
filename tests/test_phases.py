"""Multi-phase arms (sgdlab.spec.phases) on the one engine: a one-phase arm is the plain arm bit for bit;
two phases equal two runs chained by hand and a numpy loop (float64); resume inside any phase and
at a boundary is exact; grouping, the `phase` metric, labels, curvature batching and errors."""

import math
import tomllib

import numpy as np
import pytest
import torch

import sgdlab
from sgdlab.core.config import from_dict, override, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.synthetic import SparseRegression
from sgdlab.engine.train import Engine, train
from sgdlab.optim import schedules as S
from sgdlab.optim.config import GD, SGD
from sgdlab.optim.noise import (
    TAG_SDE,
    LabelNoiseGD,
    LabelNoiseSGD,
    NoiseStream,
    block_len,
)
from sgdlab.optim.samplers import WithReplacement
from sgdlab.optim.schedules import Constant, Piecewise, Steps
from sgdlab.optim.sde import ConstantNoiseSDE
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.spec.phases import PhaseConfig
from sgdlab.store.runs import RunDir
from sgdlab.studies.diag_net.model import DiagonalNetConfig

pytestmark = pytest.mark.study("diag_net")

SMALL = SparseRegression(n=20, d=30, r=3, n_test=50)
# A fixed init (u = v = 0.5): the chained second run can start exactly where the first ended.
FIXED = DiagonalNetConfig(u0=0.5, v0=0.5)


def _cfg(arms, steps=400, seeds=2, model=FIXED, points=5, **kw):
    return ExperimentConfig(data=SMALL, model=model, arms=tuple(arms), steps=steps, seeds=seeds,
                            eval=EvalConfig("linear", points), **kw)


def _params(eng, state, run):
    return {k: v.clone() for k, v in eng.params_of(state, run).items()}


# ------------------------------------------------------------------------------ equalities
PLAIN = [
    ArmConfig("sgd", SGD(2), Piecewise(0.3, (0.5,), (3.0,))),  # compiled kernel
    ArmConfig("momentum+ema", SGD(2, momentum=0.5, ema=0.9), Constant(0.1)),
    ArmConfig("label noise", LabelNoiseSGD(Steps((0.5, 0.1), (0.5,))), Constant(0.05)),
    ArmConfig("sde", ConstantNoiseSDE(delta=Piecewise(1e-3, (0.5,), (10.0,)), noise_steps=300), Constant(0.1)),
    ArmConfig("gd", GD(momentum=0.5), Constant(0.2)),
]


@pytest.mark.parametrize("length", [{}, {"steps": 400}, {"fraction": 1.0}], ids=["rest", "steps", "fraction"])
def test_one_phase_is_the_plain_arm_bit_for_bit(length):
    phased = [ArmConfig(a.name, phases=(PhaseConfig(a.optimizer, a.schedule, **length),)) for a in PLAIN]
    e1, s1, m1 = train(_cfg(PLAIN, model=DiagonalNetConfig()))
    e2, s2, m2 = train(_cfg(phased, model=DiagonalNetConfig()))
    assert e1.runs == e2.runs and np.array_equal(e1.eval_steps, e2.eval_steps)
    assert m1.keys() == m2.keys() and "phase" not in m2
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k], err_msg=k)
    for r in e1.runs:
        p1, p2 = e1.params_of(s1, r.index), e2.params_of(s2, r.index)
        assert all(torch.equal(p1[k], p2[k]) for k in p1)


def _chained(phase_arms, steps, seed):
    """Run each phase as a plain single-seed run from the previous one's final parameters."""
    init, out = FIXED, []
    for arm, length in zip(phase_arms, steps):
        eng, st, m = train(_cfg([arm], steps=length, model=init, seeds=1, first_seed=seed))
        p = _params(eng, st, 0)
        init = DiagonalNetConfig(u0=tuple(p["u"].tolist()), v0=tuple(p["v"].tolist()))  # exact float64
        out.append((p, {k: v[-1, 0] for k, v in m.items()}))
    return out


@pytest.mark.parametrize("first, second, length", [
    # momentum in both phases: the second must start with a fresh (zero) buffer
    ((SGD(2, momentum=0.5), Piecewise(0.2, (0.5,), (2.0,))), (GD(momentum=0.9), Piecewise(0.3, (0.5,), (3.0,))),
     {"fraction": 0.4}),
    # a noise level as a schedule (its milestone counts within phase 1), then GD on the kernel
    ((LabelNoiseSGD(Steps((0.5, 0.2), (0.5,))), Constant(0.05)), (GD(), Constant(0.3)), {"steps": 150}),
], ids=["sgd-momentum-then-gd-momentum", "label-noise-then-gd"])
def test_two_phases_equal_two_runs_chained_by_hand(first, second, length):
    T = 400
    arm = ArmConfig("two", phases=(PhaseConfig(*first, **length), PhaseConfig(*second)))
    eng, st, m = train(_cfg([arm], steps=T))
    (s0, b), (_, e) = arm.bounds(T)
    assert b in eng.eval_steps and m["phase"][eng.eval_steps == b].tolist() == [[0, 0]]
    assert m["phase"][-1].tolist() == [1, 1]
    for r in eng.runs:
        (_, m1), (p2, m2) = _chained([ArmConfig("p1", *first), ArmConfig("p2", *second)], [b - s0, e - b], r.seed)
        at_b = int(np.nonzero(eng.eval_steps == b)[0][0])
        # Up to the rounding of reductions batched over 2 runs vs 1 (as in test_engine); the
        # kernel path (plain GD) is bit for bit.
        for k in m1:  # the state at the switch is logged
            np.testing.assert_allclose(m[k][at_b, r.index], m1[k], rtol=1e-12, err_msg=k)
        p = eng.params_of(st, r.index)
        for k in p:
            np.testing.assert_allclose(p[k].numpy(), p2[k].numpy(), rtol=0, atol=1e-13)
        for k in m2:
            np.testing.assert_allclose(m[k][-1, r.index], m2[k], rtol=1e-12, err_msg=k)


def test_sgd_then_sde_equals_a_numpy_loop():
    """Phase 2's step size, noise level and noise_steps count from its start; its noise is keyed
    by the absolute step: the SDE draws of steps L1.. of the run's stream."""
    T, L1 = 300, 120
    sde = ConstantNoiseSDE(delta=Steps((1e-3, 2e-4), (0.5,)), noise_steps=120)
    arm = ArmConfig("sgd, then sde", phases=(PhaseConfig(SGD(1), Constant(0.1), steps=L1),
                                            PhaseConfig(sde, Piecewise(0.2, (0.5,), (2.0,)))))
    eng, st, _ = train(_cfg([arm], steps=T))
    data = SMALL.build()
    x, y, n = data.x_train.numpy(), data.y_train.numpy(), data.n
    lr2, delta2 = S.piecewise(0.2, T - L1, (0.5,), (2.0,)), S.steps((1e-3, 2e-4), T - L1, (0.5,))
    L = block_len(n)
    for r in eng.runs:
        batches = WithReplacement(n, 1).indices(r.seed, 0, L1)
        u, v = np.full(30, 0.5), np.full(30, 0.5)
        for t in range(T):
            if t < L1:
                xb, yb = x[batches[t]], y[batches[t]]
                g = xb.T @ (xb @ (u * v) - yb) / len(yb)
                lr = 0.1
            else:
                tl = t - L1
                c = (x @ (u * v) - y) / n
                if tl < 120:
                    c = c + math.sqrt(delta2(tl)) * NoiseStream.draw(r.seed, TAG_SDE, n, t // L)[t % L]
                g, lr = x.T @ c, lr2(tl)
            u, v = u - lr * g * v, v - lr * g * u
        p = eng.params_of(st, r.index)
        np.testing.assert_allclose(p["u"].numpy(), u, rtol=0, atol=1e-12)
        np.testing.assert_allclose(p["v"].numpy(), v, rtol=0, atol=1e-12)


def test_chunking_does_not_change_phased_runs(monkeypatch):
    import sgdlab.engine.train as tr

    arms = [ArmConfig("a", phases=(PhaseConfig(SGD(2, momentum=0.5), Constant(0.1), fraction=0.3),
                                   PhaseConfig(LabelNoiseGD(0.2), Constant(0.1), fraction=0.3),
                                   PhaseConfig(GD(), Constant(0.2))))]
    _, _, m1 = train(_cfg(arms))
    monkeypatch.setattr(tr, "CHUNK", 37)
    _, _, m2 = train(_cfg(arms))
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])


# ------------------------------------------------------------------------------ resume
RESUME_ARMS = (
    ArmConfig("sgd+ema, then gd", phases=(PhaseConfig(SGD(2, momentum=0.5, ema=0.9), Constant(0.1), fraction=0.5),
                                         PhaseConfig(GD(momentum=0.9), Constant(0.2)))),
    ArmConfig("label noise, then sde", phases=(PhaseConfig(LabelNoiseSGD(0.3), Constant(0.05), steps=200),
                                              PhaseConfig(ConstantNoiseSDE(delta=1e-4), Constant(0.1)))),
)


def test_resume_inside_any_phase_is_bit_for_bit(tmp_path):
    """Killed inside phase 1 (100), at each arm's boundary (200, 300), inside phase 2 (500),
    resumed each time from the checkpoint there: the same metrics and parameters as one run."""
    cfg = _cfg(RESUME_ARMS, steps=600, points=7, checkpoint_seconds=1e-9, figure=("train_loss",))
    full = sgdlab.run(cfg, tmp_path / "full", progress=False, quiet=True)
    assert {200, 300} <= set(full.steps.tolist())  # both boundaries are evaluation steps
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(cfg, tmp_path / "cut", progress=False, quiet=True, _stop_after=100)
    for stop in (200, 300, 500):
        with pytest.raises(KeyboardInterrupt):
            sgdlab.resume(tmp_path / "cut", progress=False, quiet=True, _stop_after=stop)
        assert RunDir(tmp_path / "cut").load_checkpoint()["state"]["step"] == stop
    resumed = sgdlab.resume(tmp_path / "cut", progress=False, quiet=True)
    np.testing.assert_array_equal(resumed.steps, full.steps)
    for k in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k], err_msg=k)
    a = RunDir(tmp_path / "full").load_checkpoint()["state"]
    b = RunDir(tmp_path / "cut").load_checkpoint()["state"]
    for pa, pb in zip(a["params"], b["params"]):
        assert all(torch.equal(pa[k], pb[k]) for k in pa)


# ------------------------------------------------------------------------------ engine plumbing
def test_runs_with_the_same_phase_structure_share_a_group():
    def two(lr, frac=0.5, second=None):
        second = second or GD()
        return ArmConfig(f"a {lr} {frac} {second.kind}", phases=(PhaseConfig(SGD(2), Constant(lr), fraction=frac),
                                                                   PhaseConfig(second, Constant(0.1))))
    eng = Engine(_cfg([two(0.1), two(0.2), two(0.1, 0.6), two(0.1, second=LabelNoiseGD(0.1)),
                       ArmConfig("plain", SGD(2), Constant(0.1))], seeds=3))
    sizes = sorted(len(g.runs) for g in eng.groups)
    assert sizes == [3, 3, 3, 6]  # lr differs only: one group; other boundary / optimizer / plain: their own
    # every boundary is an evaluation step; the plain group has one phase
    assert {200, 240} <= set(eng.eval_steps.tolist())


def test_deterministic_detection_looks_at_every_phase():
    gd_gd = ArmConfig("gd, gd", phases=(PhaseConfig(GD(), Constant(0.3), steps=10), PhaseConfig(GD(), Constant(0.1))))
    gd_ln = ArmConfig("gd, ln", phases=(PhaseConfig(GD(), Constant(0.3), steps=10),
                                        PhaseConfig(LabelNoiseGD(0.1), Constant(0.1))))
    eng = Engine(_cfg([gd_gd, gd_ln], seeds=4))
    assert [r.arm for r in eng.runs].count("gd, gd") == 1 and eng.runs[0].deterministic
    assert [r.arm for r in eng.runs].count("gd, ln") == 4


def test_each_phase_starts_its_own_optimizer_state():
    """The momentum buffer of phase 1 is not carried into phase 2, whose EMA copy starts at the
    weights of the boundary; EMA metrics are NaN where the phase in effect has no EMA."""
    arm = ArmConfig("a", phases=(PhaseConfig(SGD(2, momentum=0.9), Constant(0.02), steps=100),
                                 PhaseConfig(SGD(20, ema=0.5), Constant(0.1))))
    eng, st, m = train(_cfg([arm], steps=101, points=2))
    assert (st.diverged < 0).all()
    assert set(st.opt_state[0]) == {"ema:u", "ema:v"}  # phase 2's state only
    e100, s100, _ = train(_cfg([ArmConfig("b", SGD(2, momentum=0.9), Constant(0.02))], steps=100, points=2))
    for r in eng.runs:  # after one update of phase 2: EMA = 0.5 (weights at 100) + 0.5 (weights at 101)
        p, p100 = eng.params_of(st, r.index), e100.params_of(s100, r.index)
        ema = st.opt_state[0]["ema:u"][r.index]
        assert not torch.equal(ema, p["u"])
        torch.testing.assert_close(ema, 0.5 * p100["u"] + 0.5 * p["u"], rtol=1e-13, atol=1e-15)
    at100 = eng.eval_steps == 100
    assert np.isnan(m["ema_train_loss"][at100]).all() and np.isfinite(m["ema_train_loss"][-1]).all()


def test_curvature_uses_the_batching_of_the_phase_in_effect(monkeypatch):
    from sgdlab.metrics import tracking

    seen = {}
    orig = tracking.CurvatureTracker._measure_run

    def spy(self, run, params, step):
        seen.setdefault(step, set()).add((run.batch_size, run.weight_decay))
        return orig(self, run, params, step)

    monkeypatch.setattr(tracking.CurvatureTracker, "_measure_run", spy)
    arm = ArmConfig("a", phases=(PhaseConfig(SGD(2, weight_decay=0.5), Constant(0.05), fraction=0.5),
                                 PhaseConfig(GD(), Constant(0.05))))
    cfg = override(_cfg([arm], steps=40, points=5), ["metrics.curvature.every=1", "metrics.curvature.k=2"])
    train(cfg)
    assert seen[0] == seen[10] == seen[20] == {(2, 0.5)}  # the state at the boundary is phase 1's
    assert seen[30] == seen[40] == {(None, 0.0)}


# ------------------------------------------------------------------------------ config, labels, figures
TOML = '''
steps = 1000
data = {kind = "sparse_regression"}
model = {kind = "diagonal_net"}
[[arms]]
name = "ln eta={phases.0.schedule.lr} for {phases.0.fraction:.0%}, then {phases.1.optimizer.kind}"
[[arms.phases]]
optimizer = {kind = "label_noise_sgd", sigma = 1.0}
schedule = {kind = "constant", lr = 0.05}
fraction = 0.8
[[arms.phases]]
optimizer = {kind = "gd"}
schedule = {kind = "constant", lr = 0.1}
'''


def test_toml_round_trip_labels_and_describe():
    cfg = from_dict(ExperimentConfig, tomllib.loads(TOML))
    arm = cfg.arms[0]
    assert arm.label == "ln eta=0.05 for 80%, then gd" and arm.optimizer is None
    assert arm.bounds(1000) == [(0, 800), (800, 1000)]
    assert arm.describe() == ("label_noise_sgd eta=0.05 constant for 80%, then gd eta=0.1 constant for the rest",
                              "label_noise_sgd(b=1) then gd")
    assert from_dict(ExperimentConfig, to_dict(cfg)) == cfg and "optimizer" not in to_dict(arm)
    new = override(cfg, ["arms.0.phases.0.schedule.lr=0.07", "arms.0.phases.0.fraction=0.5"])
    assert new.arms[0].label == "ln eta=0.07 for 50%, then gd" and new.arms[0].bounds(1000)[0] == (0, 500)
    f = arm.step_size(1000)
    assert f(799) == 0.05 and f(800) == 0.1 and f(np.array([0, 800, 999])).tolist() == [0.05, 0.1, 0.1]
    # the plain arm is unchanged: SGD + constant by default, its own optimizer
    plain = ArmConfig("x")
    assert plain.optimizer == SGD() and plain.schedule == Constant() and plain.phases is None


def test_cumulative_rounding_covers_the_run():
    arm = ArmConfig("thirds", phases=tuple(PhaseConfig(GD(), Constant(0.1), fraction=f) for f in (0.1, 0.2, 0.7)))
    assert arm.bounds(1001) == [(0, 100), (100, 300), (300, 1001)]
    mixed = ArmConfig("mixed", phases=(PhaseConfig(GD(), Constant(0.1), steps=5),
                                       PhaseConfig(GD(), Constant(0.1), fraction=0.5), PhaseConfig(GD(), Constant(0.1))))
    assert mixed.bounds(20) == [(0, 5), (5, 15), (15, 20)]  # end_k = steps so far + round(fractions so far x T)


PHASE = "optimizer = {kind = 'gd'}\nschedule = {kind = 'constant', lr = 0.1}\n"


@pytest.mark.parametrize("phases, match", [
    ([PHASE, PHASE], "phase 0 has no length; give it steps or fraction"),
    ([PHASE + "fraction = 0.7", PHASE + "fraction = 0.5"], "phase fractions sum to 1.2 > 1"),
    ([PHASE + "steps = 700", PHASE + "steps = 400"], "phases 0..1 take 1100 steps, more than the run's 1000"),
    ([PHASE + "steps = 2000"], "phases 0..0 take 2000 steps, more than the run's 1000"),
    ([PHASE + "steps = 600", PHASE + "steps = 300"], "the phases cover 900 of the run's 1000 steps"),
    ([PHASE + "fraction = 1.0", PHASE], r"phase 1 \(rest\) gets no update"),
    ([PHASE + "steps = 10\nfraction = 0.5"], "steps or fraction, not both"),
    ([PHASE + "fraction = 0.0"], r"phase fraction must be in \(0, 1\]"),
    ([PHASE + "steps = 0"], "phase steps must be >= 1"),
    ([], "phases must list at least one phase"),
])
def test_phase_errors_are_one_line(phases, match):
    text = "steps = 1000\ndata = {kind = 'sparse_regression'}\nmodel = {kind = 'diagonal_net'}\n[[arms]]\nname = 'a'\n" + ("phases = []\n" if not phases else "".join(
        f"[[arms.phases]]\n{p}\n" for p in phases))
    with pytest.raises(ConfigError, match=match) as e:
        from_dict(ExperimentConfig, tomllib.loads(text))
    assert "\n" not in str(e.value)


def test_optimizer_beside_phases_is_refused():
    with pytest.raises(ConfigError, match="give optimizer and schedule in each phase, not beside phases"):
        ArmConfig("a", GD(), phases=(PhaseConfig(),))
    with pytest.raises(ConfigError, match=r"\{phases.2.schedule.lr\} names no key"):
        ArmConfig("a {phases.2.schedule.lr}", phases=(PhaseConfig(),))


def test_window_needs_a_single_optimizer_arm():
    from sgdlab.workflows.window import find_window

    with pytest.raises(ConfigError, match="has phases; the stabilization window is found for one optimizer"):
        find_window(_cfg([RESUME_ARMS[0]]), 0.1, 0.2)


def test_phase_boundaries_are_dashed_lines_in_the_panels(tmp_path):
    from sgdlab.plots.panel_data import phase_boundaries
    from sgdlab.plots.panels import draw_metric_panels

    cfg = _cfg([RESUME_ARMS[0], ArmConfig("plain", SGD(2), Constant(0.1))], steps=600, points=4)
    res = sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True)
    assert phase_boundaries(cfg) == {RESUME_ARMS[0].label: [300], "plain": []}
    fig = draw_metric_panels(res.steps, res.metrics, res.runs, ("train_loss", "phase"), [a.label for a in cfg.arms],
                             boundaries=phase_boundaries(cfg))
    for ax in fig.axes:
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert [list(ln.get_xdata()) for ln in dashed] == [[300, 300]]
    assert res.summary["arms"]["plain"]["schedule"] == "eta=0.1 constant"
    assert res.summary["arms"][RESUME_ARMS[0].label]["schedule"].startswith("sgd eta=0.1 constant for 50%, then gd")
    assert res.runs[0]["optimizer"] == "sgd(b=2) then gd"
