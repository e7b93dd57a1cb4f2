"""Mini-batch curvature (batch sharpness, MiniBS, GNI, step sharpness) against brute force."""

import itertools
import math

import pytest
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature import (
    QUANTITIES,
    batch_curvature,
    batch_sharpness,
    dense_hessian,
    gradient_noise_interaction,
    mini_batch_sharpness,
    step_sharpness,
)

DT = torch.float64
N, B = 6, 2


def problem():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).to(DT)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(N, 3, generator=g, dtype=DT), torch.randn(N, 2, generator=g, dtype=DT)
    loss = lambda out, t: ((out - t) ** 2).sum(dim=1).mean()
    return model, loss, (x, y)


def brute_force(model, loss, data, batches):
    """Exact averages over an explicit list of index batches, from dense Hessians and autograd."""
    x, y = data
    h_full = dense_hessian(model, loss, data)
    params = list(model.parameters())

    def grad(idx):
        gs = torch.autograd.grad(loss(model(x[idx]), y[idx]), params)
        return torch.cat([t.reshape(-1) for t in gs])

    g_full = grad(torch.arange(N))
    rows = []
    for idx in batches:
        idx = torch.as_tensor(idx)
        g, h = grad(idx), dense_hessian(model, loss, (x[idx], y[idx]))
        rows.append({"bs": g @ h @ g / (g @ g), "num": g @ h @ g, "den": g @ g,
                         "lam": torch.linalg.eigvalsh(h)[-1], "gni": g @ h_full @ g, "step": g @ h_full @ g / (g @ g)})
    mean = lambda k: float(torch.stack([r[k] for r in rows]).mean())
    return {"batch_sharpness": mean("bs"), "batch_sharpness_ratio": mean("num") / mean("den"),
                "minibs": mean("lam"), "gni": mean("gni") / float(g_full @ g_full), "step_sharpness": mean("step")}


SUBSETS = list(itertools.combinations(range(N), B))  # 15 batches, uniform without replacement
TUPLES = list(itertools.product(range(N), repeat=B))  # 36 batches, iid with replacement


def enumerate_sampler(batches):
    it = itertools.cycle(batches)
    return lambda gen: torch.tensor(next(it))


@pytest.mark.parametrize("batches", [SUBSETS, TUPLES], ids=["15-subsets", "36-tuples"])
def test_enumeration_equals_brute_force_exactly(batches):
    model, loss, data = problem()
    exact = brute_force(model, loss, data, batches)
    est = batch_curvature(model, loss, data, quantities=list(QUANTITIES), sampler=enumerate_sampler(batches),
                          rse_tol=0.0, max_batches=len(batches), min_batches=len(batches), minibs_tol=1e-10)
    assert list(est) == list(QUANTITIES)
    for q, e in est.items():
        assert e.n_batches == len(batches) and e.definition == QUANTITIES[q]
        assert e.mean == pytest.approx(exact[q], rel=1e-8), q
    assert est["minibs"].mean >= est["batch_sharpness"].mean  # lambda_max bounds every Rayleigh quotient


@pytest.mark.parametrize("sampler,batches", [("without_replacement", SUBSETS), ("with_replacement", TUPLES)])
def test_monte_carlo_matches_brute_force_within_standard_errors(sampler, batches):
    model, loss, data = problem()
    exact = brute_force(model, loss, data, batches)
    est = batch_curvature(model, loss, data, B, quantities=["batch_sharpness", "batch_sharpness_ratio", "gni",
                                                            "step_sharpness"],
                          sampler=sampler, generator=torch.Generator().manual_seed(0), rse_tol=0.05)
    for q, e in est.items():
        assert e.stderr > 0 and math.isfinite(e.rse)
        assert abs(e.mean - exact[q]) < 4 * e.stderr, (q, e.mean, exact[q], e.stderr)
    # the adaptive stop: converged before the cap, with every rse under the tolerance
    assert all(e.converged and e.rse < 0.05 and e.n_batches < 500 for e in est.values())


def test_default_sampler_is_without_replacement():
    """The paper's estimator (Andreyev & Beneventano): b distinct examples per batch."""
    model, loss, data = problem()
    kw = {"seed": 5, "rse_tol": 0.05}
    assert batch_sharpness(model, loss, data, B, **kw) == batch_sharpness(model, loss, data, B,
                                                                          sampler="without_replacement", **kw)
    assert batch_sharpness(model, loss, data, B, **kw) != batch_sharpness(model, loss, data, B,
                                                                          sampler="with_replacement", **kw)
    # the same draws as the default: each batch is randperm(n)[:b] of the generator
    explicit = batch_sharpness(model, loss, data, sampler=lambda g: torch.randperm(N, generator=g)[:B], **kw)
    assert explicit.mean == batch_sharpness(model, loss, data, B, **kw).mean


def test_wrappers_reproducible_and_minibs_bounds_sharpness():
    model, loss, data = problem()
    kw = {"seed": 3, "rse_tol": 0.05}  # default sampler: without replacement
    a, b = batch_sharpness(model, loss, data, B, **kw), batch_sharpness(model, loss, data, B, **kw)
    assert a == b and a.name == "batch_sharpness" and "mean over examples" in a.loss_reduction
    assert batch_sharpness(model, loss, data, B, ratio=True, **kw).name == "batch_sharpness_ratio"
    lam = float(torch.linalg.eigvalsh(dense_hessian(model, loss, data))[-1])
    assert mini_batch_sharpness(model, loss, data, B, **kw).mean > lam  # Jensen: E lambda_max(H_B) >= lambda_max(H)
    assert gradient_noise_interaction(model, loss, data, B, **kw).name == "gni"
    assert step_sharpness(model, loss, data, B, **kw).mean <= lam + 1e-9  # Rayleigh quotients of H


def test_max_batches_cap_reports_not_converged():
    model, loss, data = problem()
    e = batch_sharpness(model, loss, data, B, rse_tol=1e-9, max_batches=12)
    assert e.n_batches == 12 and not e.converged


def test_bad_sampler_arguments():
    model, loss, data = problem()
    with pytest.raises(ConfigError, match="allowed"):
        batch_sharpness(model, loss, data, B, sampler="shuffle")
    with pytest.raises(ConfigError, match="batch_size"):
        batch_sharpness(model, loss, data, sampler="with_replacement")
    with pytest.raises(ConfigError, match="impossible"):
        batch_sharpness(model, loss, data, 7)  # the default draws b distinct examples
    with pytest.raises(ConfigError, match="batch_size"):
        batch_sharpness(model, loss, data, 2, sampler=lambda g: torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="outside"):
        batch_sharpness(model, loss, data, sampler=lambda g: torch.tensor([0, 9]))
    with pytest.raises(ConfigError, match="quantity"):
        batch_curvature(model, loss, data, B, quantities=["bs"])
    with pytest.raises(ConfigError, match="min_batches"):
        batch_sharpness(model, loss, data, B, min_batches=20, max_batches=10)
