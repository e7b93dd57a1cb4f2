"""Deep nets at speed: runs vectorised (vmap) = R sequential runs in float64, augmentation of all
runs at once = per-run augmentation, and the fast-path switches (channels_last, bf16 autocast,
torch.compile) against the plain float path."""


import numpy as np
import pytest
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.data.augment import Augmentation
from sgdlab.data.image_configs import SyntheticImages
from sgdlab.engine.train import train
from sgdlab.metrics.config import MetricsConfig, ThresholdsConfig
from sgdlab.models import deep_step
from sgdlab.models.cifar import (
    DEEP_MODELS,
    BlockNet,
    PoolHead,
    build_deep_model,
    init_weights,
)
from sgdlab.models.deep import BUFFER, DeepNetConfig
from sgdlab.models.deep_step import ModuleStepper, StepOptions
from sgdlab.optim.config import SGD
from sgdlab.optim.schedules import Constant, Piecewise
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

pytestmark = pytest.mark.study("deep_nets")

DATA = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4, augment=True)


def cfg(model="resnet18", width=2, steps=6, dtype="float64", data=DATA, device="cpu", **deep):
    """Two arms sharing one optimizer x two seeds: one group of R = 4 runs."""
    opt = SGD(8, momentum=0.9, weight_decay=5e-3)
    return ExperimentConfig(
        name="deep-fast", data=data,
        model=DeepNetConfig(name=model, width=width, eval_train=48, sparsity_examples=48, **deep),
        arms=(ArmConfig("small", opt, Constant(0.02)), ArmConfig("large", opt, Piecewise(0.2, (0.5,), (10.0,)))),
        steps=steps, seeds=2, eval=EvalConfig("linear", 2), dtype=dtype, device=device,
        metrics=MetricsConfig(thresholds=ThresholdsConfig(sparsity_tau=0.95)))


def assert_same_state(a, b, rtol=1e-10, atol=1e-12):
    (_, sa, ma), (_, sb, mb) = a, b
    for pa, pb in zip(sa.params, sb.params):
        assert pa.keys() == pb.keys()
        for k in pa:
            torch.testing.assert_close(pa[k].cpu(), pb[k].cpu(), rtol=rtol, atol=atol, msg=k)
    for k in ma:
        np.testing.assert_allclose(ma[k], mb[k], rtol=1e-8, atol=1e-10, err_msg=k)


@pytest.mark.parametrize("model,width", [("resnet18", 2), ("vgg11-bn", 2), ("preact-resnet18", 1)])
def test_vectorised_runs_equal_sequential_runs_float64(model, width):
    """vmap over the 4 runs of a group (2 arms x 2 seeds) = the loop over runs: parameters,
    BatchNorm buffers and every metric, after steps with momentum, weight decay and crop/flip."""
    vec = train(cfg(model, width))
    loop = train(cfg(model, width, vectorize=False))
    assert len(vec[0].groups) == 1 and len(vec[0].groups[0].runs) == 4
    assert vec[0].model.stepper.vectorized is True and loop[0].model.stepper.vectorized is False
    assert_same_state(vec, loop)
    # Buffers really moved (BatchNorm statistics per run, not shared): runs differ.
    p = vec[1].params[0]
    bn = next(k for k in p if k.startswith(BUFFER) and k.endswith("running_mean"))
    assert not torch.equal(p[bn][0], p[bn][1])


@pytest.mark.parametrize("name,kw", [("densenet100-bc", {"width": 2, "depth": 10}), ("resnet32", {"width": 2}),
                                     ("wrn28", {"width": 1, "depth": 10})])
def test_stepper_vmap_equals_loop_on_other_architectures(name, kw):
    """One step of ModuleStepper, vmap vs loop, float64: losses, gradients, BN buffers."""
    nets = [build_deep_model(name, num_classes=3, generator=torch.Generator().manual_seed(s), **kw).double()
            for s in range(3)]
    pn = [n for n, _ in nets[0].named_parameters()]
    bn = [n for n, _ in nets[0].named_buffers()]
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in nets]) for n in pn}
    params.update({BUFFER + n: torch.stack([dict(m.named_buffers())[n] for m in nets]) for n in bn})
    x = torch.randint(0, 256, (3, 6, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 3, (3, 6))
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none")
    res = {}
    for vec in (True, False):
        p = {k: v.clone() for k, v in params.items()}
        st = ModuleStepper(nets[0], pn, bn, loss, StepOptions(vectorize=vec))
        res[vec] = (*st(p, x, y), p)
        assert st.vectorized is vec
    torch.testing.assert_close(res[True][0], res[False][0], rtol=1e-12, atol=0)
    for n in pn:
        torch.testing.assert_close(res[True][1][n], res[False][1][n], rtol=1e-10, atol=1e-12)
    for n in bn:
        torch.testing.assert_close(res[True][2][BUFFER + n], res[False][2][BUFFER + n], rtol=1e-12, atol=0)


class _DataDependent(BlockNet):
    """A model whose forward branches on a tensor's value: vmap cannot batch it."""

    def __init__(self, num_classes, width, in_channels=3, generator=None):
        conv = torch.nn.Sequential(torch.nn.Conv2d(in_channels, width, 3, padding=1), torch.nn.BatchNorm2d(width),
                                   torch.nn.ReLU())
        super().__init__(torch.nn.Identity(), [conv], PoolHead(width, num_classes))
        init_weights(self, generator)

    def forward(self, x, return_blocks=False):
        if float(x.mean()) > 2.0:  # never true for inputs in [0, 1]; a Python branch on data
            x = x / 2
        return super().forward(x, return_blocks)


@pytest.fixture
def data_dependent_model():
    DEEP_MODELS.add("test-data-dependent", _DataDependent)
    yield "test-data-dependent"
    DEEP_MODELS._items.pop("test-data-dependent")


def test_unvectorisable_model_falls_back_to_the_loop_with_one_notice(data_dependent_model, capsys):
    a = train(cfg(data_dependent_model, 2, steps=3))
    err = capsys.readouterr().err
    notices = [ln for ln in err.splitlines() if ln.startswith("notice:")]
    assert len(notices) == 1 and "cannot be vectorised" in notices[0] and "looping over its 4 runs" in notices[0]
    assert a[0].model.stepper.vectorized is False
    assert_same_state(a, train(cfg(data_dependent_model, 2, steps=3, vectorize=False)), rtol=0, atol=0)


@pytest.mark.parametrize("padding,flip", [(4, True), (2, False), (0, True), (0, False)])
def test_augmentation_of_all_runs_equals_per_run_augmentation(padding, flip):
    """Augmentation.runs (one gather for R x N images, draws moved in one copy) = R calls of the
    per-batch transform with the same generators (the engine keys them by (seed, step))."""
    x = torch.randint(0, 256, (3, 5, 3, 6, 7), dtype=torch.uint8)
    aug = Augmentation(padding, flip)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (11, 12, 13)]
    want = torch.stack([aug(x[r], g) for r, g in enumerate(gens())])
    got = aug.runs(x, gens())
    assert torch.equal(got, want) and got.dtype == torch.uint8
    if torch.cuda.is_available():  # the images on the device, the same draws: the same pixels
        assert torch.equal(aug.runs(x.cuda(), gens()).cpu(), want)
    with pytest.raises(ConfigError, match=r"\(R, N, C, H, W\)"):
        aug.runs(x[0], gens())


def test_engine_augmentation_uses_the_per_seed_step_generators():
    """The stepper's vectorised path = the per-run path of a transform without ``runs``."""
    from sgdlab.optim import stepper

    class PerRunOnly:  # a user transform: a plain callable, no vectorised method
        def __init__(self):
            self.aug = Augmentation()

        def __call__(self, x, g):
            return self.aug(x, g)

    data = DATA.build()
    xb = data.x_train[:16].reshape(2, 8, *data.x_train.shape[1:])
    seeds = np.array([3, 7])
    vec = stepper._augment(data, xb, seeds, 5)
    data.augment = PerRunOnly()
    assert torch.equal(vec, stepper._augment(data, xb, seeds, 5))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
def test_on_cuda_vectorised_channels_last_and_device_augmentation_match_the_cpu_engine():
    """On the GPU (data uint8 on the device, crop/flip there): vmap = loop and channels_last =
    NCHW in float64, and the whole run equals the CPU engine's up to the libraries' float64
    summation order (cuDNN vs oneDNN)."""
    gpu = train(cfg(device="cuda"))
    assert gpu[0].data.x_train.is_cuda and gpu[0].data.x_train.dtype == torch.uint8
    assert gpu[0].model.stepper.vectorized is True
    assert_same_state(gpu, train(cfg(device="cuda", vectorize=False)))
    assert_same_state(gpu, train(cfg(device="cuda", channels_last=True)))
    assert_same_state(gpu, train(cfg()), rtol=1e-7, atol=1e-9)


@cuda
def test_on_cuda_bf16_and_fp16_autocast_train():
    data = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4)
    for ac in ("bf16", "fp16"):
        _, _, m = train(cfg(dtype="float32", data=data, device="cuda", autocast=ac, steps=3))
        assert np.isfinite(m["train_loss"]).all()


def test_channels_last_equals_the_default_layout_float64():
    assert_same_state(train(cfg(channels_last=True)), train(cfg()))
    assert_same_state(train(cfg(channels_last=True, vectorize=False)), train(cfg(vectorize=False)))


def test_bf16_autocast_step_equals_plain_pytorch_autocast():
    """One run's bf16 step = ``torch.autocast("cpu", bfloat16)`` around a plain module call
    (bitwise: the same kernels); the loss agrees with float32 to bf16 precision (8-bit mantissa,
    a few x 2^-8) and the gradient is NOT the float32 one (negative control: the arithmetic
    really changed). vmap over 2 identical runs gives both runs the same step."""
    import copy

    net = build_deep_model("resnet18", num_classes=4, width=4, generator=torch.Generator().manual_seed(0))
    pn = [n for n, _ in net.named_parameters()]
    bn = [n for n, _ in net.named_buffers()]
    params = {n: p.detach()[None].clone() for n, p in net.named_parameters()}
    params.update({BUFFER + n: b[None].clone() for n, b in net.named_buffers()})
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 32, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 4, (1, 32), generator=g)
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none")
    flat = lambda gr: torch.cat([t.flatten() for t in gr])
    l16, g16 = ModuleStepper(net, pn, bn, loss, StepOptions(autocast="bf16"))(
        {k: v.clone() for k, v in params.items()}, x, y)
    assert l16.dtype == torch.float32 and g16[pn[0]].dtype == torch.float32
    ref = copy.deepcopy(net).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ref(x[0].float() / 255)
    lref = torch.nn.functional.cross_entropy(out.float(), y[0])
    gref = torch.autograd.grad(lref, list(ref.parameters()))
    assert torch.equal(l16[0], lref.detach()) and torch.equal(flat(g16[n] for n in pn), flat(gref))
    l32, g32 = ModuleStepper(net, pn, bn, loss)({k: v.clone() for k, v in params.items()}, x, y)
    assert float(l16) == pytest.approx(float(l32), rel=2e-2)
    assert not torch.equal(flat(g16[n] for n in pn), flat(g32[n] for n in pn))
    two = {k: v.expand(2, *v.shape[1:]).clone() for k, v in params.items()}
    l2, _ = ModuleStepper(net, pn, bn, loss, StepOptions(autocast="bf16"))(two, x.expand(2, -1, -1, -1, -1),
                                                                              y.expand(2, -1))
    assert l2.shape == (2,) and torch.equal(l2[0], l2[1]) and float(l2[0]) == pytest.approx(float(l16), rel=1e-2)


def test_bf16_autocast_runs_on_the_cpu_engine_and_fp16_is_refused():
    data = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4)
    _, _, m = train(cfg(dtype="float32", data=data, autocast="bf16", steps=3))
    assert np.isfinite(m["train_loss"]).all()
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        cfg(dtype="float32", data=data, autocast="fp16")
    with pytest.raises(ConfigError, match="model.compile: unknown value 'fast'; allowed:"):
        DeepNetConfig(compile="fast")


@pytest.mark.parametrize("vectorize", [True, False])
def test_compiled_step_equals_eager_float64(vectorize, monkeypatch):
    """torch.compile of the step (dynamo + AOT autograd graphs; the code generator is swapped
    for the eager one so that the test takes seconds) = the eager step, float64."""
    monkeypatch.setattr(deep_step, "COMPILE_BACKEND", "aot_eager")
    torch._dynamo.reset()
    a = train(cfg("vgg11-bn", 1, steps=2, compile="default", vectorize=vectorize))
    assert a[0].model.stepper._compiled
    assert_same_state(a, train(cfg("vgg11-bn", 1, steps=2, vectorize=vectorize)))


@pytest.mark.slow
def test_inductor_compiled_step_is_close_to_eager():
    """The real torch.compile (inductor's generated C++ on CPU; a minute or more on 2 busy cores)
    of the vectorised step of 2 runs of a small VGG: loss, gradients and BN buffers. The
    generated kernels may reorder sums, so agreement is to float32 rounding (relative 1e-4 of
    each tensor's scale), not bitwise. (The loop path's compile plumbing: the test above.)"""
    torch._dynamo.reset()
    net = build_deep_model("vgg11-bn", num_classes=4, width=2, generator=torch.Generator().manual_seed(0))
    pn = [n for n, _ in net.named_parameters()]
    bn = [n for n, _ in net.named_buffers()]
    params = {n: torch.stack([p.detach()] * 2) for n, p in net.named_parameters()}
    params.update({BUFFER + n: torch.stack([b] * 2) for n, b in net.named_buffers()})
    x = torch.randint(0, 256, (2, 16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (2, 16), generator=torch.Generator().manual_seed(2))
    loss = lambda out, t: torch.nn.functional.cross_entropy(out, t, reduction="none")
    out = {}
    for mode in ("none", "default"):
        p = {k: v.clone() for k, v in params.items()}
        st = ModuleStepper(net, pn, bn, loss, StepOptions(compile=mode))
        out[mode] = (*st(p, x, y), p)
    assert st._compiled
    (le, ge, pe), (lc, gc, pc) = out["none"], out["default"]
    torch.testing.assert_close(lc, le, rtol=1e-4, atol=0)
    for n in pn:
        torch.testing.assert_close(gc[n], ge[n], rtol=0, atol=1e-4 * float(ge[n].abs().max()))
    for n in bn:
        torch.testing.assert_close(pc[BUFFER + n].double(), pe[BUFFER + n].double(), rtol=1e-4, atol=1e-6)


def test_paper_config_cifar10_resnet18_noreg_runs_through_the_cli(tmp_path):
    """`sgdlab run cifar10-resnet18-noreg` end to end on synthetic files in the real CIFAR-10
    format (the archive), at width 2 for 3 steps: the 4 arms share one optimizer and advance as
    one vectorised group; the paper's figure metrics are written."""
    import json

    from click.testing import CliRunner

    from sgdlab.data.files import write_synthetic_cifar
    from sgdlab.frontends.cli import main

    archive = write_synthetic_cifar(tmp_path / "data", n_train=256, n_test=32, archive=True)
    args = ["run", "cifar10-resnet18-noreg", "--set", f"data.path={archive}", "--steps", "3", "--set", "model.width=2",
            "--set", "eval.points=2", "--set", "model.eval_train=64", "--set", "model.sparsity_examples=64",
            "--out", str(tmp_path / "run"), "--no-progress"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["steps"] == 3 and len(s["runs"]) == 4
    assert all(np.isfinite(run["final"]["train_loss"]) for run in s["runs"])
    assert {"block4_sparsity", "block4_active", "test_error"} <= set(s["runs"][0]["final"])
    r = CliRunner().invoke(main, ["run", "cifar10-resnet18-noreg", "--set", f"data.path={archive}", "--dry-run"])
    assert r.exit_code == 0 and "4 runs in 1 batched group(s)" in r.output
