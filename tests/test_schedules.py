"""Schedules against values computed by hand."""

import numpy as np
import pytest

from sgdlab.core.config import from_dict
from sgdlab.core.errors import ConfigError
from sgdlab.optim import schedules as S


def test_constant():
    f = S.constant(0.25, 100)
    assert f(0) == 0.25 and f(99) == 0.25
    assert np.all(f(np.arange(5)) == 0.25)


def test_piecewise_divides_after_floor_pT():
    # T=1000: /4.8 for t > 100 (the step at t=100 still uses 0.282, as the authors' loop)
    f = S.piecewise(0.282, 1000, (0.1,), (4.8,))
    assert f(100) == pytest.approx(0.282)
    assert f(101) == pytest.approx(0.282 / 4.8)
    # several cumulative decays: /10 after 500, /100 after 750
    g = S.piecewise(1.0, 1000, (0.5, 0.75), (10.0, 10.0))
    np.testing.assert_allclose(g(np.array([0, 500, 501, 750, 751, 999])), [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_linear_warmup_authors_1d_regression():
    # eta (1 + (f-1) t/T) up to p=0.5 with f = 400p = 200, then /3; T = 31623
    T, lr = 31623, 2e-4
    f = S.warmup_decay(lr, T, 0.5, 199.0, 1.0, 3.0)
    th = int(0.5 * T)  # 15811
    assert f(0) == pytest.approx(2e-4)
    assert f(th) == pytest.approx(2e-4 * (1 + 199 * th / T))
    assert f(th + 1) == pytest.approx(2e-4 * (1 + 199 * th / T) / 3)


def test_power_warmup_peaks_match_reference():
    # three-layer net: eta=0.04 (1 + 5 sqrt(t/T)); real peaks 0.103 / 0.150 / 0.181
    T = 10001
    for p, peak in [(0.1, 0.103), (0.3, 0.150), (0.5, 0.181)]:
        f = S.warmup_decay(0.04, T, p, 5.0, 0.5, 1.0)
        assert f(int(p * T)) == pytest.approx(peak, abs=6e-4)


def test_exp_warmup_readme_example():
    # lr=0.75, base=1.05, p=0.5: 0.75 -> 8.6 -> 0.86 -> 0.086
    T = 1000
    f = S.exp_warmup(0.75, T, 0.5, 1.05)
    assert f(0) == pytest.approx(0.75)
    assert f(499) == pytest.approx(0.75 * 1.05 ** 49.9)
    peak = 0.75 * 1.05 ** 50
    assert peak == pytest.approx(8.6, abs=0.01)
    assert f(500) == pytest.approx(peak / 10) and f(899) == pytest.approx(peak / 10)
    assert f(900) == pytest.approx(peak / 100)


def test_piecewise_0Xepochs_interpolated_variant_has_p_dependent_drop():
    # warmup_exp=1: interpolate lr -> warmup_factor*lr over HALF the run, cut at p,
    # then (p/0.5) warmup_factor lr / 10. Without warm-up (factor 1) the drop at p is 5/p.
    T, lr, wf = 1000, 0.05, 1.0
    for p, drop in [(0.1, 50.0), (0.3, 16.67), (0.5, 10.0)]:
        f = S.piecewise_0Xepochs(lr, T, p, warmup_exp=1.0, warmup_factor=wf)
        before = f(int(p * T) - 1)
        assert before == pytest.approx(lr + (wf - 1) * lr * (int(p * T) - 1) / (0.5 * T))
        after = f(int(p * T))
        assert after == pytest.approx(p / 0.5 * wf * lr / 10)
        assert before / after == pytest.approx(drop, rel=0.02)
        assert f(950) == pytest.approx(p / 0.5 * wf * lr / 100)


def test_piecewise_0Xepochs_power_branch():
    f = S.piecewise_0Xepochs(0.1, 100, 0.3, warmup_exp=0.5)
    assert f(9) == pytest.approx(0.1 * (1 + 9 ** 0.5))
    assert f(50) == pytest.approx(0.1 * (1 + 30 ** 0.5) / 10)
    # with a warm-up factor the interpolation runs over half the run whatever p is
    g = S.piecewise_0Xepochs(0.1, 1000, 0.1, warmup_exp=1.0, warmup_factor=3.0)
    assert g(50) == pytest.approx(0.1 * (1 + 2 * 50 / 500))


def test_cosine():
    f = S.cosine(1.0, 100)
    np.testing.assert_allclose(f(np.array([0, 50, 100])), [1.0, 0.5, 0.0], atol=1e-12)


@pytest.mark.parametrize("bad,msg", [
    ({"kind": "constant", "lr": -0.1}, "positive"),
    ({"kind": "constant", "lr": 0.0}, "positive"),
    ({"kind": "piecewise", "lr": 0.1, "milestones": [1.5], "factors": [2.0]}, "[0, 1]"),
    ({"kind": "piecewise", "lr": 0.1, "milestones": [0.5], "factors": []}, "same length"),
    ({"kind": "exp_warmup", "lr": 0.1, "base": 0.9}, "base > 1"),
    ({"kind": "cosinus", "lr": 0.1}, "allowed: constant, cosine"),
])
def test_bad_schedules_raise_with_allowed_values(bad, msg):
    with pytest.raises(ConfigError, match=None) as e:
        from_dict(S.ScheduleConfig, bad)
    assert msg in str(e.value)
