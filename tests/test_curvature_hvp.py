"""Hessian-vector products against the dense Hessian; module state untouched; data weighting."""

import pytest
import torch
import torch.nn.functional as F

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.curvature import HessianOperator, dense_hessian, fixed_subset

DT = torch.float64


def mlp(bn: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(4, 6)] + ([torch.nn.BatchNorm1d(6)] if bn else []) + [
        torch.nn.Tanh(), torch.nn.Linear(6, 3)]
    return torch.nn.Sequential(*layers).to(DT)


def convnet(bn: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(1, 2, 3)] + ([torch.nn.BatchNorm2d(2)] if bn else []) + [
        torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 3)]
    return torch.nn.Sequential(*layers).to(DT)


def data(kind: str, n: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 4) if kind == "mlp" else (n, 1, 5, 5)
    return torch.randn(*shape, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


def warm_bn(model, x):
    """Give BatchNorm non-trivial running statistics (so eval != train), then restore train()."""
    model.train()
    with torch.no_grad():
        model(x * 2 + 0.5)
    return model


CASES = [(kind, bn, mode) for kind in ("mlp", "conv") for bn, mode in
         ((False, None), (True, "eval"), (True, "train"))]


# (method, cache_graph): the two uncached product methods and the cached gradient graph.
METHODS = [("rev_rev", False), ("fwd_rev", False), ("auto", None)]


@pytest.mark.parametrize("kind,bn,mode", CASES)
@pytest.mark.parametrize("method,cache", METHODS)
def test_hvp_matches_dense_hessian(kind, bn, mode, method, cache):
    x, y = data(kind)
    model = (mlp if kind == "mlp" else convnet)(bn)
    if bn:
        warm_bn(model, x)
    op = HessianOperator(model, F.cross_entropy, (x, y), bn_mode=mode, method=method, cache_graph=cache)
    assert op.cache_graph is (cache is None)  # auto caches a single chunk
    h = dense_hessian(model, F.cross_entropy, (x, y), bn_mode=mode)
    assert h.shape == (op.dim, op.dim)
    assert torch.allclose(h, h.T, atol=1e-12)
    g = torch.Generator().manual_seed(2)
    for _ in range(3):
        v = torch.randn(op.dim, generator=g, dtype=DT)
        assert torch.allclose(op.matvec(v), h @ v, rtol=1e-10, atol=1e-12)
    assert op.n_hvp == 3


def test_bn_modes_differ_and_train_mode_matches_finite_differences():
    x, y = data("mlp")
    model = warm_bn(mlp(bn=True), x)
    h_eval = dense_hessian(model, F.cross_entropy, (x, y), bn_mode="eval")
    h_train = dense_hessian(model, F.cross_entropy, (x, y), bn_mode="train")
    assert (h_eval - h_train).abs().max() > 1e-3
    # The reference itself, checked by central differences of the gradient.
    op = HessianOperator(model, F.cross_entropy, (x, y), bn_mode="train")
    theta, eps = op.theta, 1e-6
    e = torch.zeros(op.dim, dtype=DT)
    e[5] = 1.0

    def grad_at(th):
        th = th.clone().requires_grad_(True)
        with op.fn.context():
            return torch.autograd.grad(op.fn.loss(th, x, y), th)[0]

    fd = (grad_at(theta + eps * e) - grad_at(theta - eps * e)) / (2 * eps)
    assert torch.allclose(h_train[:, 5], fd, atol=1e-7)


def test_bn_mode_required_and_validated():
    x, y = data("mlp")
    with pytest.raises(ConfigError, match="bn_mode"):
        HessianOperator(mlp(bn=True), F.cross_entropy, (x, y))
    with pytest.raises(ConfigError, match="allowed: eval, train"):
        HessianOperator(mlp(bn=True), F.cross_entropy, (x, y), bn_mode="batch")


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("method,cache", METHODS)
def test_module_state_untouched(mode, method, cache):
    x, y = data("conv")
    model = convnet(bn=True).float()
    model.insert(3, torch.nn.Dropout(0.5))  # stochastic layer: must be made deterministic
    model.train()
    model[0].eval()  # mixed flags must come back exactly
    flags = [m.training for m in model.modules()]
    F.cross_entropy(model(x.float()), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    params = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    op = HessianOperator(model, F.cross_entropy, (x, y), bn_mode=mode, dtype=DT, method=method, cache_graph=cache)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(0), dtype=DT)
    hv1, hv2 = op.matvec(v), op.matvec(v)
    assert torch.equal(hv1, hv2)  # deterministic despite dropout
    op.gradient_and_hvp()
    op.loss()
    assert torch.equal(torch.get_rng_state(), rng)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params))
    assert all(torch.equal(b, c) for b, c in zip(model.buffers(), buffers))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # dtype cast is a copy


def test_ragged_batches_are_weighted_by_size():
    x, y = data("mlp", n=11)
    model = mlp()
    h_full = dense_hessian(model, F.cross_entropy, (x, y))
    v = torch.randn(HessianOperator(model, F.cross_entropy, (x, y)).dim, dtype=DT,
                    generator=torch.Generator().manual_seed(3))
    batches = [(x[:4], y[:4]), (x[4:8], y[4:8]), (x[8:], y[8:])]  # 4, 4, 3
    for d, cs in ((batches, None), ((x, y), 4), ((x, y), 3), ("one-shot iterator", None)):
        for cache in (None, True):  # several chunks: auto recomputes, True keeps every graph
            src = iter(batches) if isinstance(d, str) else d
            op = HessianOperator(model, F.cross_entropy, src, chunk_size=cs, cache_graph=cache)
            assert op.cache_graph is bool(cache)
            assert torch.allclose(op.matvec(v), h_full @ v, rtol=1e-10, atol=1e-12)
            assert torch.allclose(op.matvec(v), h_full @ v, rtol=1e-10, atol=1e-12)  # re-iterable
    # An unweighted mean of the three batch Hessians would be wrong: the test has teeth.
    h_unweighted = sum(dense_hessian(model, F.cross_entropy, b) for b in batches) / 3
    assert not torch.allclose(h_unweighted @ v, h_full @ v, rtol=1e-6)
    # gradient and loss are weighted the same way
    op = HessianOperator(model, F.cross_entropy, batches)
    for cache in (False, None):
        op_full = HessianOperator(model, F.cross_entropy, (x, y), cache_graph=cache)
        assert torch.allclose(op.gradient(), op_full.gradient(), atol=1e-14)
        assert op.loss() == pytest.approx(op_full.loss(), rel=1e-13)
        op_full.matvec(v)  # the cached operator's loss now comes from its graph
        assert op.loss() == pytest.approx(op_full.loss(), rel=1e-13)


def test_cached_graph_is_reused_and_can_be_freed():
    x, y = data("mlp")
    model = mlp()
    h = dense_hessian(model, F.cross_entropy, (x, y))
    op = HessianOperator(model, F.cross_entropy, (x, y))
    v = torch.randn(op.dim, dtype=DT, generator=torch.Generator().manual_seed(4))
    op.matvec(v)
    graphs = op._graphs
    g, hg = op.gradient_and_hvp()
    assert op._graphs is graphs  # no second forward pass
    assert torch.allclose(hg, h @ g, rtol=1e-10, atol=1e-12)
    op.clear_cache()
    assert op._graphs is None
    assert torch.allclose(op.matvec(v), h @ v, rtol=1e-10, atol=1e-12)  # rebuilt on demand
    with pytest.raises(ConfigError, match="cache_graph"):
        HessianOperator(model, F.cross_entropy, (x, y), cache_graph="yes")


def test_float64_copy_and_linear_operator_view():
    x, y = data("mlp")
    model = mlp().float()
    op32 = HessianOperator(model, F.cross_entropy, (x.float(), y))
    op64 = HessianOperator(model, F.cross_entropy, (x, y), dtype=DT)
    assert op32.dtype == torch.float32 and op64.dtype == DT
    v = torch.randn(op64.dim, dtype=DT, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(op32.matvec(v.float()).double(), op64.matvec(v), rtol=1e-4, atol=1e-5)
    lin = op64.as_linear_operator()
    assert lin.shape == (op64.dim, op64.dim)
    assert torch.allclose(torch.from_numpy(lin.matvec(v.numpy())), op64.matvec(v))
    assert op64.unflatten(v)["0.weight"].shape == (6, 4)


def test_frozen_parameters_are_constants():
    x, y = data("mlp")
    model = mlp()
    model[0].weight.requires_grad_(False)
    op = HessianOperator(model, F.cross_entropy, (x, y))
    assert op.dim == 6 + 6 * 3 + 3
    assert op.fn.names == ["0.bias", "2.weight", "2.bias"]


def test_bad_inputs_raise_config_error():
    x, y = data("mlp")
    model = mlp()
    with pytest.raises(ConfigError, match="shape"):
        HessianOperator(model, F.cross_entropy, (x, y)).matvec(torch.zeros(3, dtype=DT))
    with pytest.raises(ConfigError, match="same non-zero leading"):
        HessianOperator(model, F.cross_entropy, (x, y[:3])).matvec(torch.zeros(51, dtype=DT))
    with pytest.raises(ConfigError, match="scalar"):
        HessianOperator(model, lambda o, t: F.cross_entropy(o, t, reduction="none"), (x, y)).loss()
    with pytest.raises(ConfigError, match="dtype"):
        HessianOperator(model, F.cross_entropy, (x, y), dtype=torch.int64)
    with pytest.raises(ConfigError, match="chunk_size"):
        HessianOperator(model, F.cross_entropy, (x, y), chunk_size=0)
    with pytest.raises(ConfigError, match="allowed"):
        HessianOperator(model, F.cross_entropy, (x, y), method="finite_diff")
    with pytest.raises(ConfigError, match="no batches"):
        HessianOperator(model, F.cross_entropy, []).loss()
    with pytest.raises(ConfigError, match="max_params"):
        dense_hessian(model, F.cross_entropy, (x, y), max_params=10)


def test_fixed_subset_is_reproducible():
    x, y = data("mlp", n=20)
    a = fixed_subset(x, y, 5, seed=3)
    b = fixed_subset(x, y, 5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and len(a[0]) == 5
    with pytest.raises(ConfigError):
        fixed_subset(x, y, 21)
