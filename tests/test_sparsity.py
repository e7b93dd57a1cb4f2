"""feature_sparsity against a plain brute-force reference (loops, float64) written here."""

import math

import numpy as np
import pytest
import torch

from sgdlab.metrics.sparsity import CONSTANT_RTOL, effective_rank, feature_sparsity


def _pearson_abs(a: np.ndarray, b: np.ndarray) -> float:
    """|Pearson corr| with the module's documented constant-column convention."""
    def is_const(v):
        return v.std() <= CONSTANT_RTOL * math.sqrt(np.mean(v * v))

    ca, cb = is_const(a), is_const(b)
    if ca and cb:
        return 1.0
    if ca or cb:
        return 0.0
    da, db = a - a.mean(), b - b.mean()
    r = float(np.sum(da * db) / math.sqrt(np.sum(da * da) * np.sum(db * db)))
    return min(abs(r), 1.0)


def reference(A: np.ndarray, tau: float, normalize: bool):
    """One run (n, m), sequential definition. Returns (coef, frac, merged, dead, kept list)."""
    A = np.array(A, dtype=np.float64)
    n, m = A.shape
    if not np.all(np.isfinite(A)):
        return (math.nan,) * 4 + ([],)
    if normalize:
        for i in range(n):
            norm = math.sqrt(sum(A[i, j] ** 2 for j in range(m)))
            if norm > 0:
                A[i] = A[i] / norm
    kept = []
    dead = 0
    for j in range(m):
        if not any(A[i, j] > 0 for i in range(n)):
            dead += 1
            continue
        if any(_pearson_abs(A[:, j], A[:, k]) > tau for k in kept):
            continue
        kept.append(j)
    total = sum(1 for i in range(n) for j in kept if A[i, j] > 0)
    coef = total / (n * m)
    frac = sum(1 for i in range(n) for j in range(m) if A[i, j] > 0) / (n * m)
    merged = m - dead - len(kept)
    return coef, frac, merged, dead, kept


def _check_against_reference(A: torch.Tensor, tau: float, normalize: bool):
    out = feature_sparsity(A, tau, normalize=normalize)
    for r in range(A.shape[0]):
        coef, frac, merged, dead, kept = reference(A[r].numpy(), tau, normalize)
        if math.isnan(coef):
            assert math.isnan(out.coefficient[r]) and math.isnan(out.merged[r])
            assert math.isnan(out.dead[r]) and math.isnan(out.effective_rank[r])
            assert math.isnan(out.positive_fraction[r])
            continue
        assert out.coefficient[r].item() == pytest.approx(coef, abs=1e-12)
        assert out.positive_fraction[r].item() == pytest.approx(frac, abs=1e-12)
        assert out.merged[r].item() == merged
        assert out.dead[r].item() == dead
        assert torch.nonzero(out.kept[r]).flatten().tolist() == kept


def _correlated_features(gen, R, n, m, n_groups):
    """Post-ReLU features whose columns come in correlated groups (plus noise)."""
    base = torch.randn(R, n, n_groups, generator=gen, dtype=torch.float64)
    mix = torch.randint(0, n_groups, (m,), generator=gen)
    noise = 0.05 * torch.randn(R, n, m, generator=gen, dtype=torch.float64)
    scale = torch.rand(m, generator=gen, dtype=torch.float64) + 0.5
    return torch.relu(base[..., mix] * scale + noise + 0.3)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("tau", [0.5, 0.9, 0.99])
def test_random_matches_reference(normalize, tau):
    gen = torch.Generator().manual_seed(1)
    A = _correlated_features(gen, R=4, n=30, m=25, n_groups=6)
    _check_against_reference(A, tau, normalize)


def test_adversarial_matches_reference():
    gen = torch.Generator().manual_seed(2)
    n, m = 20, 12
    A = torch.relu(torch.randn(5, n, m, generator=gen, dtype=torch.float64))
    A[0, :, 3] = 2.0 * A[0, :, 1]  # scaled duplicate: corr 1
    A[0, :, 5] = 0.0  # dead
    A[0, :, 0] = 0.0  # dead first neuron
    x = torch.randn(n, generator=gen, dtype=torch.float64)
    A[1, :, 2] = 5.0 + x  # all active, and a negated duplicate: |corr| = 1
    A[1, :, 7] = 5.0 - x
    A[2, 4, :] = math.nan  # diverged run
    A[3, :, 4] = 1.5  # constant active neurons: first kept, second merged
    A[3, :, 9] = 0.25
    A[3, :, :2] = -1.0  # negative values count as inactive (dead)
    A[4] = 0.0
    A[4, :, 6] = torch.relu(x)  # only one alive neuron
    for tau in (0.0, 0.3, 0.95, 0.999999, 1.0):
        for normalize in (False, True):
            _check_against_reference(A, tau, normalize)


def test_expected_values_by_hand():
    # 4 inputs, 4 neurons: n0 pattern, n1 = 3*n0 (merged), n2 dead, n3 independent.
    A = torch.tensor(
        [[1.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [2.0, 6.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )
    out = feature_sparsity(A, 0.99)
    assert out.coefficient.shape == ()
    assert out.coefficient.item() == pytest.approx(4 / 16)
    assert out.positive_fraction.item() == pytest.approx(6 / 16)
    assert (out.merged.item(), out.dead.item()) == (1, 1)
    assert out.kept.tolist() == [True, False, False, True]
    # tau = 1: exact duplicates are not merged (|corr| is clamped to 1, and 1 > 1 is false).
    assert feature_sparsity(A, 1.0).merged.item() == 0


def test_tau_threshold_is_strict():
    # Two columns with Pearson correlation exactly 0.5 in exact arithmetic.
    a = torch.tensor([2.0, 1.0, 1.0, 0.0], dtype=torch.float64)  # centred (1, 0, 0, -1)
    b = torch.tensor([2.0, 1.0, 0.0, 1.0], dtype=torch.float64)  # centred (1, 0, -1, 0)
    A = torch.stack([a, b], 1)  # corr = 1 / (sqrt2 sqrt2) = 0.5
    assert feature_sparsity(A, 0.5 - 1e-9).merged.item() == 1
    assert feature_sparsity(A, 0.5 + 1e-9).merged.item() == 0


def test_nan_run_does_not_poison_others():
    gen = torch.Generator().manual_seed(3)
    A = torch.relu(torch.randn(3, 10, 6, generator=gen))
    good = feature_sparsity(A)
    A[1, 2, 3] = math.inf
    out = feature_sparsity(A)
    assert torch.isnan(out.coefficient[1]) and not out.kept[1].any()
    for field in ("coefficient", "positive_fraction", "merged", "dead", "effective_rank"):
        got, want = getattr(out, field), getattr(good, field)
        assert torch.equal(got[[0, 2]], want[[0, 2]]), field


def test_float32_input_and_2d_equals_batched():
    gen = torch.Generator().manual_seed(4)
    A = _correlated_features(gen, R=3, n=40, m=30, n_groups=5).float()
    batched = feature_sparsity(A, 0.9, normalize=True)
    for r in range(3):
        single = feature_sparsity(A[r], 0.9, normalize=True)
        assert single.coefficient.item() == batched.coefficient[r].item()
        assert torch.equal(single.kept, batched.kept[r])


def test_max_neurons_subsample_is_explicit_and_deterministic():
    gen = torch.Generator().manual_seed(5)
    A = torch.relu(torch.randn(2, 15, 50, generator=gen))
    with pytest.raises(ValueError, match="generator"):
        feature_sparsity(A, max_neurons=20)
    o1 = feature_sparsity(A, max_neurons=20, generator=torch.Generator().manual_seed(7))
    o2 = feature_sparsity(A, max_neurons=20, generator=torch.Generator().manual_seed(7))
    assert torch.equal(o1.neuron_index, o2.neuron_index) and o1.neuron_index.numel() == 20
    assert torch.all(o1.neuron_index[1:] > o1.neuron_index[:-1])  # sorted, no repeats
    assert torch.equal(o1.coefficient, o2.coefficient)
    sub = feature_sparsity(A[..., o1.neuron_index])
    assert torch.equal(sub.coefficient, o1.coefficient)
    # No sub-sampling when m <= max_neurons: generator not needed.
    assert torch.equal(feature_sparsity(A, max_neurons=50).neuron_index, torch.arange(50))


def test_effective_rank_known_cases():
    assert effective_rank(torch.zeros(5, 4)).item() == 0.0
    assert effective_rank(torch.eye(4, dtype=torch.float64)).item() == pytest.approx(4.0)
    rank_one = torch.outer(torch.arange(1.0, 6.0), torch.ones(3))
    assert effective_rank(rank_one).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"A": torch.zeros(3)}, "shape"),
        ({"A": torch.zeros(1, 4)}, "n >= 2"),
        ({"A": torch.zeros(4, 3), "tau": 1.5}, "tau"),
        ({"A": torch.zeros(4, 3), "tau": -0.1}, "tau"),
        ({"A": torch.zeros(4, 3), "max_neurons": 0}, "max_neurons"),
    ],
)
def test_bad_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        feature_sparsity(**bad)


def test_wrong_type_raises_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        feature_sparsity("features")


def test_greedy_order_chain():
    # corr(a, b) > tau and corr(b, c) > tau but corr(a, c) < tau: keep a, drop b, keep c
    # (b is dropped because a is kept; c is then compared only with kept a).
    gen = torch.Generator().manual_seed(6)
    n = 400
    u, v = torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)
    a, c = u, 0.6 * u + 0.8 * v  # corr(a, c) ~ 0.6
    b = (a + c) / (a + c).std() * a.std()  # corr(a, b) ~ corr(b, c) ~ 0.89
    A = torch.stack([a, b, c], 1) + 10.0  # all positive: alive, same correlations
    out = feature_sparsity(A, 0.8)
    assert out.kept.tolist() == [True, False, True]
    _check_against_reference(A[None], 0.8, False)
    _check_against_reference(A[None, :, [1, 0, 2]], 0.8, False)  # b first: a and c both dropped


def test_run_chunking_is_exact(monkeypatch):
    import sgdlab.metrics.sparsity as mod

    gen = torch.Generator().manual_seed(8)
    A = _correlated_features(gen, R=5, n=20, m=10, n_groups=3)
    whole = feature_sparsity(A, 0.9)
    monkeypatch.setattr(mod, "_MAX_CORR_ELEMENTS", 2 * 10 * 10)  # 2 runs per chunk
    chunked = feature_sparsity(A, 0.9)
    assert torch.equal(whole.kept, chunked.kept) and torch.equal(whole.coefficient, chunked.coefficient)
