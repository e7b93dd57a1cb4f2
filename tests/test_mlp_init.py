"""MLP init "xavier_normal": W_l = gain_l sqrt(2 / (fan_in + fan_out)) N(0, 1) with init_scales as
the gains (torch's xavier_normal_), biases per bias_init; Cohen et al.'s EoS net is the default of
eos-chebyshev."""

import numpy as np
import pytest
import torch

import sgdlab
from sgdlab.models.mlp import MLPConfig, xavier_std
from sgdlab.studies.eos.data import Chebyshev

pytestmark = pytest.mark.study("eos")


def test_xavier_normal_matches_torch_std_and_zero_biases():
    gains = (1.9, 1.0)
    cfg = MLPConfig(hidden=(300,), biases=(True, False), activation="tanh", loss="half_mse",
                    init="xavier_normal", init_scales=gains, bias_init="zeros")
    model = cfg.build(Chebyshev(k=4, n=20).build())
    p = model.init_params(list(range(40)))
    assert torch.equal(p["b1"], torch.zeros_like(p["b1"])) and "b2" not in p
    ref = torch.nn.init.xavier_normal_(torch.empty(300, 1), gain=gains[0])  # torch's nn.Linear(1, 300) layout
    for key, gain, (fan_in, fan_out) in (("W1", gains[0], (1, 300)), ("W2", gains[1], (300, 1))):
        want = gain * np.sqrt(2.0 / (fan_in + fan_out))
        assert xavier_std(fan_in, fan_out) == pytest.approx(np.sqrt(2.0 / (fan_in + fan_out)))
        assert float(p[key].std()) == pytest.approx(want, rel=0.03)  # 12,000 draws: ~0.7% standard error
    assert float(ref.std()) == pytest.approx(gains[0] * np.sqrt(2.0 / 301), rel=0.15)  # 300 draws


def test_eos_chebyshev_uses_the_authors_init():
    cfg = sgdlab.load_experiment("eos-chebyshev")
    m = cfg.model
    assert (m.init, tuple(m.init_scales), m.bias_init, tuple(m.biases), m.activation, tuple(m.hidden)) == (
        "xavier_normal", (1.9, 1.0), "zeros", (True, False), "tanh", (100,))
