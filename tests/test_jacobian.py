"""Jacobian rank: torch.func phi against one explicit backward pass per example (float64)."""

import math

import pytest
import torch
from torch import nn

from sgdlab.metrics.jacobian import (
    GRAM_MIN_RTOL,
    jacobian_rank,
    jacobian_rank_batched,
    jacobian_rank_fn,
    matrix_rank,
    model_jacobian,
    per_example_jacobian,
    per_example_jacobian_batched,
)


def explicit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n k, p): one autograd.grad call per example and output, parameters in module order."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        for o in range(out.numel()):
            grads = torch.autograd.grad(out[o], params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([
                (g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)
            ]))
    return torch.stack(rows)


def _mlp(seed, d=3, widths=(5, 4), out=1, act=nn.Tanh, bias=True):
    torch.manual_seed(seed)  # test-only model init; library code never seeds globally
    layers, prev = [], d
    for w in widths:
        layers += [nn.Linear(prev, w, bias=bias), act()]
        prev = w
    layers.append(nn.Linear(prev, out, bias=bias))
    return nn.Sequential(*layers).double()


@pytest.mark.parametrize("act, out", [(nn.Tanh, 1), (nn.ReLU, 1), (nn.ReLU, 3)])
def test_phi_matches_explicit_backward(act, out):
    model = _mlp(0, act=act, out=out)
    x = torch.randn(17, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    phi = model_jacobian(model, x)
    ref = explicit_jacobian(model, x)
    p = sum(q.numel() for q in model.parameters())
    assert phi.shape == (17 * out, p)
    torch.testing.assert_close(phi, ref, rtol=1e-12, atol=1e-12)
    ref_rank = int(torch.linalg.matrix_rank(ref, rtol=1e-4).item())
    assert jacobian_rank(model, x) == ref_rank
    assert jacobian_rank(model, x, method="svd") == ref_rank


def test_relu_net_with_biases_rank_and_chunking():
    # 1-D regression style net: 1 -> 40 ReLU (bias) -> 1 (no bias), p = 120, on 120 inputs.
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 1, bias=False)).double()
    x = torch.linspace(-2, 2, 120, dtype=torch.float64).unsqueeze(1)
    ref = explicit_jacobian(model, x)
    phi = model_jacobian(model, x, chunk_size=16)
    torch.testing.assert_close(phi, ref, rtol=1e-12, atol=1e-12)
    want = int(torch.linalg.matrix_rank(ref, rtol=1e-4).item())
    assert 0 < want < 120  # ReLU kinks on a 1-D grid make phi rank deficient
    assert jacobian_rank(model, x, 1e-4) == want
    assert jacobian_rank(model, x, 1e-4, method="gram") == want
    assert jacobian_rank(model, x, 1e-10, method="svd") >= want


def test_linear_model_known_rank_and_frozen_params():
    model = nn.Linear(4, 1, bias=False).double()
    x = torch.randn(10, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert jacobian_rank(model, x) == 4  # phi = X
    torch.testing.assert_close(model_jacobian(model, x), x)
    net = _mlp(4, act=nn.ReLU)
    net[0].weight.requires_grad_(False)  # frozen: excluded from theta
    p = sum(q.numel() for q in net.parameters() if q.requires_grad)
    assert model_jacobian(net, x[:, :3]).shape == (10, p)


def test_functional_and_batched_over_runs():
    gen = torch.Generator().manual_seed(5)
    R, width, n = 4, 12, 30

    def fn(p, xb):
        return torch.relu(xb @ p["W1"].T + p["b1"]) @ p["w2"]

    params = {
        "W1": torch.randn(R, width, 2, dtype=torch.float64, generator=gen),
        "b1": torch.randn(R, width, dtype=torch.float64, generator=gen),
        "w2": torch.randn(R, width, dtype=torch.float64, generator=gen),
    }
    params["w2"][1, :6] = 0.0  # run 1: half the output weights zero -> lower rank
    x = torch.randn(n, 2, dtype=torch.float64, generator=gen)
    phis = per_example_jacobian_batched(fn, params, x)
    assert phis.shape == (R, n, 4 * width)
    ranks = jacobian_rank_batched(fn, params, x, run_chunk=3)
    for r in range(R):
        one = {k: v[r] for k, v in params.items()}
        torch.testing.assert_close(phis[r], per_example_jacobian(fn, one, x))
        assert ranks[r].item() == jacobian_rank_fn(fn, one, x)
    assert ranks[1] < ranks[0]
    xr = torch.stack([x] * R)
    torch.testing.assert_close(jacobian_rank_batched(fn, params, xr, x_per_run=True), ranks)


def test_diverged_run_is_nan_batched_and_raises_single():
    def fn(p, xb):
        return xb @ p["w"]

    params = {"w": torch.ones(3, 2, dtype=torch.float64)}
    x = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ranks = jacobian_rank_batched(fn, params, x)
    assert ranks.tolist() == [2.0, 2.0, 2.0]
    phi = per_example_jacobian_batched(fn, params, x)
    phi[1, 0, 0] = math.nan
    out = matrix_rank(phi)
    assert torch.isnan(out[1]) and out[0] == 2 and out[2] == 2
    with pytest.raises(ValueError, match="non-finite"):
        jacobian_rank_fn(lambda p, xb: xb @ p["w"] * math.inf, {"w": torch.ones(2, dtype=torch.float64)}, x)


def test_gram_and_svd_agree_on_known_spectrum():
    gen = torch.Generator().manual_seed(7)
    N, p = 60, 80
    U, _ = torch.linalg.qr(torch.randn(N, N, dtype=torch.float64, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(p, N, dtype=torch.float64, generator=gen))
    s = torch.logspace(0, -9, N, dtype=torch.float64)  # decades apart: no value near a threshold
    phi = (U * s) @ V.T
    for rtol in (1e-2, 1e-4, GRAM_MIN_RTOL):
        want = int((s > rtol).sum())
        assert matrix_rank(phi, rtol, "svd").item() == want
        assert matrix_rank(phi, rtol, "gram").item() == want
        assert matrix_rank(phi.T, rtol, "gram").item() == want  # the p x p Gram side
    assert matrix_rank(phi, 1e-8).item() == int((s > 1e-8).sum())  # auto -> svd here
    assert matrix_rank(torch.zeros(3, 4)).item() == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rtol": -1.0}, "rtol"),
        ({"rtol": 1.0}, "rtol"),
        ({"method": "qr"}, "allowed"),
        ({"rtol": 1e-9, "method": "gram"}, "svd"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        matrix_rank(torch.eye(3), **kwargs)


def test_model_must_be_module():
    with pytest.raises(TypeError, match="nn.Module"):
        jacobian_rank(lambda x: x, torch.zeros(2, 1))
