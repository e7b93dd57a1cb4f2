"""The MNIST-1D study (sgdlab/studies/mnist1d): data equal to the package's, the benchmark's
models on every path (engine with vmap-batched seeds, loop, Monitor), Adam equal to torch's,
smoke runs of the bundled experiments, and a reproduction-style check with a negative control."""

import random

import numpy as np
import pytest
import torch

import sgdlab
from sgdlab.core.errors import ConfigError
from sgdlab.data.toy_configs import MNIST1D

mnist1d_data = pytest.importorskip("mnist1d.data")

from sgdlab.studies.mnist1d.adam import AdamConfig
from sgdlab.studies.mnist1d.models import NET_NAMES, Mnist1dNetConfig
from sgdlab.studies.mnist1d.nets import NETS, BenchmarkGRU, build_net

pytestmark = pytest.mark.study("mnist1d")

EXPERIMENTS = ("mnist1d-benchmark", "mnist1d-sparse-cnn", "mnist1d-sparse-mlp", "mnist1d-eos", "mnist1d-eoss",
               "mnist1d-sharpest")


@pytest.fixture(scope="module")
def data():
    return MNIST1D().build()


# --------------------------------------------------------------------------- data

def test_every_generator_argument_is_a_key_with_the_package_default():
    pkg = mnist1d_data.get_dataset_args(as_dict=True)
    ours = MNIST1D().generator_args()
    assert set(pkg) - {"url"} == set(ours)  # url only says where get_dataset would download from
    assert {k: pkg[k] for k in ours} == ours


@pytest.mark.parametrize("shuffle", [False, True])
def test_arrays_equal_make_dataset_exactly(shuffle):
    args = mnist1d_data.get_dataset_args()
    args.shuffle_seq = shuffle
    state = (np.random.get_state()[1].copy(), random.getstate())
    ds = MNIST1D(shuffle_seq=shuffle).build()
    assert np.array_equal(np.random.get_state()[1], state[0]) and random.getstate() == state[1]  # RNGs restored
    ref = mnist1d_data.make_dataset(args)
    assert ds.x_train.dtype == torch.float64
    for ours, key in ((ds.x_train, "x"), (ds.y_train, "y"), (ds.x_test, "x_test"), (ds.y_test, "y_test")):
        assert np.array_equal(ours.numpy(), np.asarray(ref[key])), key
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)


def test_shuffled_sequence_differs_and_other_keys_reach_the_generator():
    a, b = MNIST1D().build(), MNIST1D(shuffle_seq=True).build()
    assert not torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    c = MNIST1D(num_samples=200, final_seq_length=20, seed=3, n_train=50).build()
    assert c.x_train.shape == (50, 20) and c.x_test.shape == (40, 20)


def test_bad_keys_are_one_line_errors():
    with pytest.raises(ConfigError, match="train_split"):
        MNIST1D(train_split=1.5)
    with pytest.raises(ConfigError, match="n_train"):
        MNIST1D(n_train=5000).build()


# --------------------------------------------------------------------------- models

def test_parameter_counts_are_the_benchmarks():
    # greydanus/mnist1d classification notebook: CNN 5210, GRU 5134, MLP 15210 parameters
    counts = {n: sum(p.numel() for p in build_net(n).parameters()) for n in NETS}
    assert counts == {"logistic": 410, "mlp": 15210, "cnn": 5210, "gru": 5134}
    assert set(NET_NAMES) == set(NETS)


def test_gru_equals_torch_gru_float64():
    g = BenchmarkGRU(generator=torch.Generator().manual_seed(1)).double()
    ref = torch.nn.GRU(1, 6, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for d, suf in ((g.forward_gru, ""), (g.backward_gru, "_reverse")):
            for ours, theirs in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                                 ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
                getattr(ref, theirs + suf).copy_(getattr(d, ours))
    x = torch.randn(5, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out, _ = ref(x[..., None])
    ours = torch.cat([g.forward_gru(x, False), g.backward_gru(x, True)], -1)
    torch.testing.assert_close(ours, out, rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", NET_NAMES)
def test_batched_seeds_forward_shapes_and_vmap_equals_loop(name, data):
    """Every model: forward (R, b, 10) for R seeds, the vmap step taken (no fallback), its loss and
    gradients equal to the per-run loop in float64."""
    R, b = 3, 16
    vm = Mnist1dNetConfig(name=name).build(data)
    loop = Mnist1dNetConfig(name=name, vectorize=False).build(data)
    p = vm.init_params([0, 1, 2], dtype=torch.float64)
    x, y = data.x_train[:b], data.y_train[:b]
    assert vm.forward(p, x).shape == (R, b, 10)
    lv, gv = vm.loss_and_grad(p, x, y)
    assert vm.stepper.vectorized is True
    ll, gl = loop.loss_and_grad(p, x, y)
    torch.testing.assert_close(lv, ll, rtol=1e-12, atol=1e-12)
    for k in gv:
        torch.testing.assert_close(gv[k], gl[k], rtol=1e-10, atol=1e-12)
    blocks = [m for m in vm.metric_names(data, None) if m.endswith("_sparsity")]
    assert len(blocks) == {"logistic": 0, "mlp": 2, "cnn": 3, "gru": 0}[name]


def test_adam_equals_torch_adam():
    opt = AdamConfig(weight_decay=0.01).build(100, 10)
    g = torch.Generator().manual_seed(0)
    p = {"w": torch.randn(2, 3, 4, generator=g, dtype=torch.float64)}
    st = opt.init_state(p, ["w"])
    refs = [torch.nn.Parameter(p["w"][r].clone()) for r in range(2)]
    ropt = [torch.optim.Adam([refs[r]], lr=0.01 * (r + 1), weight_decay=0.01) for r in range(2)]
    lrs = torch.tensor([0.01, 0.02], dtype=torch.float64)
    for _ in range(5):
        gr = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
        opt.update(p, {"w": gr}, st, lrs, torch.tensor([True, True]))
        for r in range(2):
            refs[r].grad = gr[r].clone()
            ropt[r].step()
    for r in range(2):
        torch.testing.assert_close(p["w"][r], refs[r].detach(), rtol=0, atol=1e-15)
    frozen = {k: v.clone() for k, v in st.items()}
    w = p["w"].clone()
    opt.update(p, {"w": torch.full_like(w, float("nan"))}, st, lrs * 0, torch.tensor([False, False]))
    assert torch.equal(p["w"], w) and all(torch.equal(st[k], frozen[k]) for k in st)


def test_monitor_measures_the_cnn_in_a_plain_loop(data, tmp_path):
    net = build_net("cnn", generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = data.x_train[:256].float(), data.y_train[:256]
    mon = sgdlab.Monitor(net, torch.nn.functional.cross_entropy, (x, y), opt, out=tmp_path / "mon",
                         metrics={"sharpness": 2, "sparsity": 2})
    for step in range(3):
        mon.step()
        loss = torch.nn.functional.cross_entropy(net(x[:32]), y[:32])
        opt.zero_grad()
        loss.backward()
        opt.step()
    mon.close()
    _, m = mon.metrics()
    assert np.isfinite(m["sharpness"][0]) and m["sharpness"][0] > 0
    assert sum(k.endswith("_sparsity") for k in m) == 3  # the CNN's three ReLU layers


# --------------------------------------------------------------------------- experiments

@pytest.mark.parametrize("name", EXPERIMENTS)
def test_bundled_experiment_smoke(name, tmp_path):
    sets = ["steps=4", "seeds=2", "eval.points=2", "extra_figures=[]", "data.n_train=200", "model.eval_train=200",
            "model.sparsity_examples=100", "figure=['train_loss']"]
    cfg = sgdlab.override(sgdlab.load_experiment(name), sets)
    if cfg.metrics.batch.quantities:
        cfg = sgdlab.override(cfg, ["metrics.batch.max_batches=3"])
    if cfg.metrics.curvature.subset:
        cfg = sgdlab.override(cfg, ["metrics.curvature.subset=100"])
    res = sgdlab.run(cfg, tmp_path / name, progress=False, quiet=True)
    assert res.metrics["train_loss"].shape == (2, 2 * len(cfg.arms))
    assert np.isfinite(res.metrics["train_loss"][0]).all()  # a large step may diverge on 200 sequences


@pytest.mark.slow
def test_eos_reproduction_with_negative_control(tmp_path):
    """Criterion fixed from the docs seeds 0-15 before running this held-out seed 16: full-batch GD
    (``mnist1d-eos``: MLP, half MSE, 500 sequences, 800 steps) at eta = 0.2 has lambda_max within
    15% of 2/eta = 10 at the last step; the control eta = 0.025 (2/eta = 80) stays below half of
    its 2/eta (the docs seeds: about 0.2)."""
    cfg = sgdlab.override(sgdlab.load_experiment("mnist1d-eos"), [
        "seeds=1", "first_seed=16", "eval.points=3", "extra_figures=[]", "figure=['train_loss']"])
    res = sgdlab.run(cfg, tmp_path / "eos", progress=False, quiet=True)
    lam = {r["arm"]: res.metrics["sharpness"][-1, r["index"]] for r in res.runs}
    assert abs(lam["GD eta=0.2"] / 10.0 - 1) < 0.15, lam
    assert lam["GD eta=0.025"] / 80.0 < 0.5, lam


def test_batched_seeds_benchmark_smoke(capsys):
    """benchmarks/mnist1d_seeds.py runs both sides and prints its ratio (no timing is asserted)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mnist1d_seeds.py"
    spec = importlib.util.spec_from_file_location("bench_mnist1d_seeds", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--quick"])
    assert res["cpu"]["ratio"] > 0 and "plain / sgdlab" in capsys.readouterr().out
