"""Noise levels given as schedules (label-noise sigma, SDE delta): the `steps` schedule, exact
equality with a number for constant levels, exactly no noise where the level is 0, counter-based
streams under chunking."""

import tomllib

import numpy as np
import pytest
import torch

from sgdlab.core.config import dump_toml, from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.data.synthetic import SparseRegression
from sgdlab.data.toy_configs import TeacherStudent2D
from sgdlab.engine.train import train
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim import schedules as S
from sgdlab.optim.config import OptimizerConfig
from sgdlab.optim.noise import (
    LabelNoiseGD,
    LabelNoiseSGD,
    NoisyGD,
    NoisyGradient,
    build_level,
)
from sgdlab.optim.schedules import Constant, Piecewise, Steps
from sgdlab.optim.sde import ConstantNoiseSDE, SDERule
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.studies.diag_net.model import DiagonalNetConfig

pytestmark = pytest.mark.study("diag_net")


def test_steps_schedule_values_and_boundaries():
    f = S.steps((1.0, 0.5, 0.0), 1000, (0.1, 0.8))
    # values[0] up to floor(0.1 T) = 100 included, as piecewise divides "for t > floor(p T)"
    np.testing.assert_array_equal(f(np.array([0, 100, 101, 800, 801, 999])), [1, 1, 0.5, 0.5, 0, 0])
    assert f(100) == 1.0 and f(101) == 0.5
    p = S.piecewise(1.0, 1000, (0.1, 0.8), (2.0, 4.0))
    t = np.arange(1000)
    np.testing.assert_array_equal(S.steps((1.0, 0.5, 0.125), 1000, (0.1, 0.8))(t), p(t))
    assert Steps((0.3,)).build(10)(np.arange(3)).tolist() == [0.3] * 3
    assert Steps((0.2, 0.0), (0.5,)).lr == 0.2  # the largest value, what range checks read


@pytest.mark.parametrize("kw, match", [
    ({"values": [1.0, 0.0]}, "one value per phase"),
    ({"values": [1.0, -0.1], "milestones": [0.5]}, "values must be finite numbers >= 0"),
    ({"values": [1.0, 0.5, 0.0], "milestones": [0.8, 0.5]}, "increasing"),
    ({"values": [1.0, 0.5], "milestones": [1.5]}, "fraction"),
])
def test_steps_schedule_validation(kw, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(S.ScheduleConfig, {"kind": "steps", **kw})


def test_noise_levels_parse_from_toml_tables_and_numbers():
    opt = from_dict(OptimizerConfig, {"kind": "label_noise_sgd", "sigma": {"kind": "steps", "values": [1.0, 0.0],
                                                                            "milestones": [0.8]}})
    assert opt.sigma == Steps((1.0, 0.0), (0.8,))
    assert from_dict(OptimizerConfig, tomllib.loads(dump_toml(opt))) == opt
    assert from_dict(OptimizerConfig, {"kind": "label_noise_gd", "sigma": 0.3}).sigma == 0.3
    sde = from_dict(OptimizerConfig, {"kind": "sde", "delta": {"kind": "piecewise", "lr": 1e-3, "milestones": [0.5],
                                                               "factors": [10.0]}})
    assert isinstance(sde.delta, Piecewise)
    with pytest.raises(ConfigError, match="sigma.kind: unknown schedule 'stepz'"):
        from_dict(OptimizerConfig, {"kind": "label_noise_gd", "sigma": {"kind": "stepz"}})
    with pytest.raises(ConfigError, match="delta: values must be finite numbers >= 0"):
        from_dict(OptimizerConfig, {"kind": "sde", "delta": {"kind": "steps", "values": [-1.0]}})
    with pytest.raises(ConfigError, match="sigma must be a finite number >= 0"):
        LabelNoiseGD(sigma=-1.0)


def _cfg(arms, data=None, model=None, steps=240):
    kw = {"model": model} if model is not None else {}
    return ExperimentConfig(data=data or SparseRegression(n=20, d=30, r=3, n_test=50), arms=tuple(arms),
                            steps=steps, seeds=2, eval=EvalConfig("linear", 4), **{"model": DiagonalNetConfig(), **kw})


def _final(cfg):
    _, st, m = train(cfg)
    return st, m


@pytest.mark.parametrize("model", [None, MLPConfig(hidden=(4,), init_scales=(0.7, 0.5))], ids=["diag", "mlp"])
def test_a_constant_schedule_is_bit_for_bit_a_number(model):
    """The stream a constant level draws is the one a number draws: same runs, exactly."""
    data = TeacherStudent2D(n_test=30) if model is not None else None
    numbers = [ArmConfig("lnsgd", LabelNoiseSGD(0.2, batch_size=2), Constant(0.1)),
               ArmConfig("lngd", LabelNoiseGD(0.2), Constant(0.1)),
               ArmConfig("ngd", NoisyGD(0.01), Constant(0.1)),
               ArmConfig("sde", ConstantNoiseSDE(delta=1e-3, noise_steps=150), Constant(0.1))]
    tables = [ArmConfig("lnsgd", LabelNoiseSGD(Steps((0.2,)), batch_size=2), Constant(0.1)),
              ArmConfig("lngd", LabelNoiseGD(Constant(0.2)), Constant(0.1)),
              ArmConfig("ngd", NoisyGD(Steps((0.01,))), Constant(0.1)),
              ArmConfig("sde", ConstantNoiseSDE(delta=Steps((1e-3,)), noise_steps=150), Constant(0.1))]
    s1, m1 = _final(_cfg(numbers, data, model))
    s2, m2 = _final(_cfg(tables, data, model))
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])
    for p, q in zip(s1.params, s2.params):
        assert all(torch.equal(p[k], q[k]) for k in p)


def test_level_zero_after_the_milestone_is_exactly_the_noiseless_optimizer():
    """sigma = 0.3 up to step floor(0.5 T) included, 0 after: the first half is the constant-noise
    run and the second half is plain GD from there, exactly (runs compared step by step)."""
    T = 200
    half = [ArmConfig("ln", LabelNoiseGD(Steps((0.3, 0.0), (0.5,))), Constant(0.1)),
            ArmConfig("sde", ConstantNoiseSDE(delta=Steps((1e-3, 0.0), (0.5,))), Constant(0.1))]
    on = [ArmConfig("ln", LabelNoiseGD(0.3), Constant(0.1)),
          ArmConfig("sde", ConstantNoiseSDE(delta=1e-3), Constant(0.1))]
    eng, _, m_half = train(_cfg(half, steps=T))
    _, _, m_on = train(_cfg(on, steps=T))
    steps = eng.eval_steps
    early = steps <= T // 2 + 1  # the update at t = T/2 still carries noise; t = T/2 + 1 is its result
    np.testing.assert_array_equal(m_half["train_loss"][early], m_on["train_loss"][early])
    assert not np.array_equal(m_half["train_loss"][-1], m_on["train_loss"][-1])
    # After the milestone every direction is the clean full-batch gradient.
    data = SparseRegression(n=20, d=30, r=3, n_test=50).build()
    model = _cfg(half).model.build(data)
    params = {"u": torch.full((2, 30), 0.5, dtype=torch.float64),
              "v": torch.full((2, 30), 0.2, dtype=torch.float64)}
    _, clean = model.loss_and_grad(params, data.x_train, data.y_train)
    for rule in (NoisyGradient(label_sigma=build_level(Steps((0.3, 0.0), (0.5,)), T)),
                 SDERule(build_level(Steps((1e-3, 0.0), (0.5,)), T))):
        rule.bind([0, 1], data.n, params)
        _, noisy = rule.loss_and_grad(model, params, data.x_train, data.y_train, T // 2)
        _, after = rule.loss_and_grad(model, params, data.x_train, data.y_train, T // 2 + 1)
        assert not torch.allclose(noisy["u"], clean["u"])
        for k in clean:
            torch.testing.assert_close(after[k], clean[k], rtol=1e-13, atol=1e-15)


def test_scheduled_noise_is_counter_based_under_chunking(monkeypatch):
    import sgdlab.engine.train as tr

    arms = [ArmConfig("ln", LabelNoiseSGD(Steps((0.5, 0.1, 0.0), (0.3, 0.6)), batch_size=2), Constant(0.1)),
            ArmConfig("sde", ConstantNoiseSDE(delta=Piecewise(1e-3, (0.5,), (10.0,))), Constant(0.1))]
    _, m1 = _final(_cfg(arms))
    monkeypatch.setattr(tr, "CHUNK", 37)
    _, m2 = _final(_cfg(arms))
    for k in m1:
        np.testing.assert_array_equal(m1[k], m2[k])


def test_a_scheduled_level_makes_the_runs_stochastic():
    eng, _, _ = train(_cfg([ArmConfig("ln", LabelNoiseGD(Steps((0.3, 0.0), (0.5,))), Constant(0.1))], steps=10))
    assert eng.n_runs == 2  # fixed init, but noisy: one run per seed


@pytest.mark.parametrize("delta", [1e-3, 0.0, Steps((1e-3, 2e-4, 0.0), (0.3, 0.5)), Piecewise(1e-3, (0.5,), (10.0,))],
                         ids=["number", "zero", "steps", "piecewise"])
@pytest.mark.parametrize("noise_steps", [None, 250])
def test_sde_scales_of_a_chunk_equal_the_per_step_scale_bit_for_bit(delta, noise_steps):
    """The fused path's vectorised sqrt(delta_t) over a chunk is the torch path's per-step value,
    with the phase offset (local steps) and noise_steps applied alike."""
    T, start = 1000, 37
    rule = SDERule(build_level(delta, T - start), noise_steps)
    rule.start = start
    t = np.arange(start, T)
    per_step = np.array([rule.scale_at(int(s)) for s in t])
    np.testing.assert_array_equal(rule.scales(start, T).view(np.int64), per_step.view(np.int64))
    assert per_step[0] == (np.sqrt(delta) if isinstance(delta, float) else np.sqrt(1e-3))
    if noise_steps is not None:
        assert not per_step[noise_steps:].any()  # off from local step noise_steps on
