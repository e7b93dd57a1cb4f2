"""Deep nets (nn.Modules) on the engine: equal to a plain PyTorch loop; block metrics by definition."""

import numpy as np
import pytest
import torch

from sgdlab.data.image_configs import SyntheticImages
from sgdlab.engine.train import train
from sgdlab.metrics.config import CurvatureConfig, MetricsConfig, ThresholdsConfig
from sgdlab.metrics.sparsity import feature_sparsity
from sgdlab.models.cifar import build_deep_model
from sgdlab.models.deep import BUFFER, DeepNetConfig
from sgdlab.optim.config import SGD
from sgdlab.optim.schedules import Piecewise
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

DATA = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4)


def cfg(model="resnet18", width=2, steps=12, dtype="float64", **opt):
    return ExperimentConfig(
        name="deep-test", data=DATA, model=DeepNetConfig(name=model, width=width, eval_train=48, sparsity_examples=48),
        arms=(ArmConfig("sgd", SGD(8, **opt), Piecewise(0.05, (0.5,), (10.0,))),), steps=steps, seeds=2,
        eval=EvalConfig("linear", 3), dtype=dtype, metrics=MetricsConfig(thresholds=ThresholdsConfig(sparsity_tau=0.95)))


@pytest.mark.parametrize("model,width", [("resnet18", 2), ("vgg11-bn", 2)])
def test_engine_equals_plain_pytorch_loop(model, width):
    c = cfg(model, width)
    eng, state, _ = train(c)
    data = eng.data
    for r in eng.runs:
        g = eng.groups[0]
        seed_init = eng.init_seeds(g)[g.runs.index(r.index)]
        net = build_deep_model(model, num_classes=4, width=width, in_channels=3,
                               generator=torch.Generator().manual_seed(seed_init)).double()
        net.train()
        batches = g.sampler.indices(r.seed, 0, c.steps)
        lr = c.arms[0].schedule.build(c.steps)
        for t in range(c.steps):
            xb = data.x_train[batches[t]].double() / 255
            loss = torch.nn.functional.cross_entropy(net(xb), data.y_train[batches[t]])
            grads = torch.autograd.grad(loss, list(net.parameters()))
            with torch.no_grad():
                for p, gr in zip(net.parameters(), grads):
                    p -= lr(t) * gr
        got = eng.params_of(state, r.index)
        for n, p in net.named_parameters():
            torch.testing.assert_close(got[n], p.detach(), rtol=1e-10, atol=1e-12)
        for n, b in net.named_buffers():
            torch.testing.assert_close(got[BUFFER + n], b.to(got[BUFFER + n].dtype), rtol=1e-10, atol=1e-12)


def test_block_metrics_follow_the_definition():
    c = cfg(steps=4)
    eng, state, m = train(c)
    data = eng.data
    r = 0
    p = eng.params_of(state, r)
    net = build_deep_model("resnet18", num_classes=4, width=2, in_channels=3).double()
    net.load_state_dict({k.removeprefix(BUFFER): v for k, v in p.items()})
    net.eval()
    with torch.no_grad():
        logits, blocks = net(data.x_train.double() / 255, return_blocks=True)
    train_loss = torch.nn.functional.cross_entropy(logits, data.y_train).item()
    assert m["train_loss"][-1, r] == pytest.approx(train_loss, rel=1e-10)
    for name, a in blocks.items():
        a = a.flatten(1)
        assert m[f"{name}_active"][-1, r] == pytest.approx(float((a > 0).double().mean()), rel=1e-12)
        assert a.shape[1] <= 1000  # no sub-sampling at this width: the coefficient is exact
        assert m[f"{name}_sparsity"][-1, r] == pytest.approx(float(feature_sparsity(a, 0.95).coefficient), rel=1e-10)


def test_deep_config_errors():
    from sgdlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown deep model 'resnet19'; allowed:"):
        DeepNetConfig(name="resnet19")
    from sgdlab.core.errors import DataError
    from sgdlab.data.image_configs import ImageData

    with pytest.raises(DataError, match="set data.path"):
        ImageData(name="cifar10").build()
    with pytest.raises(ConfigError, match="unknown image dataset 'cifar11'"):
        ImageData(name="cifar11")


def test_momentum_weight_decay_and_augmentation_match_torch_optim():
    """SGD(momentum, nesterov, L2 weight decay) with crop+flip augmentation equals torch.optim.SGD
    on the same batches and the same augmentation draws (keyed by (seed, step))."""
    from sgdlab.data.augment import Augmentation
    from sgdlab.optim.samplers import STREAM_AUGMENT

    data_cfg = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4, augment=True)
    c = ExperimentConfig(
        name="deep-mom", data=data_cfg, model=DeepNetConfig(name="resnet18", width=2, eval_train=48,
                                                           sparsity_examples=48),
        arms=(ArmConfig("sgd", SGD(8, momentum=0.9, nesterov=True, weight_decay=5e-3), Piecewise(0.05, (0.5,), (10.0,))),),
        steps=10, seeds=1, eval=EvalConfig("linear", 2), dtype="float64")
    eng, state, _ = train(c)
    g = eng.groups[0]
    net = build_deep_model("resnet18", num_classes=4, width=2, in_channels=3,
                           generator=torch.Generator().manual_seed(eng.init_seeds(g)[0])).double()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3)
    lr = c.arms[0].schedule.build(c.steps)
    batches = g.sampler.indices(0, 0, c.steps)
    aug = Augmentation()
    for t in range(c.steps):
        key = int(np.random.SeedSequence([0, STREAM_AUGMENT, t]).generate_state(1)[0])
        xb = aug(eng.data.x_train[batches[t]], torch.Generator().manual_seed(key)).double() / 255
        for grp in opt.param_groups:
            grp["lr"] = lr(t)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xb), eng.data.y_train[batches[t]]).backward()
        opt.step()
    got = eng.params_of(state, 0)
    for n, p in net.named_parameters():
        torch.testing.assert_close(got[n], p.detach(), rtol=1e-9, atol=1e-11)


def test_deep_resume_is_bitwise_identical(tmp_path):
    import sgdlab

    c = cfg(steps=16, momentum=0.9, ema=0.9)
    c = sgdlab.override(c, ["checkpoint_seconds=1e-9", "eval.points=5"])
    full = sgdlab.run(c, tmp_path / "a", progress=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(c, tmp_path / "b", progress=False, quiet=True, _stop_after=8)
    res = sgdlab.resume(tmp_path / "b", progress=False, quiet=True)
    for k in full.metrics:
        np.testing.assert_array_equal(res.metrics[k], full.metrics[k])
    assert "ema_test_error" in full.metrics and "ema_block4_sparsity" in full.metrics


def test_tracked_sharpness_of_a_deep_net_equals_the_library_on_the_module():
    """Engine tracking (metrics.curvature.every) on a deep net = sgdlab.metrics.curvature.sharpness
    on the same weights as a plain nn.Module, BatchNorm in eval mode, float64."""
    from sgdlab.metrics.curvature import sharpness

    c = cfg(steps=4)
    c = ExperimentConfig(**{**c.__dict__, "metrics": MetricsConfig(curvature=CurvatureConfig(every=1),
                                                                   thresholds=ThresholdsConfig(sparsity_tau=0.95))})
    eng, state, m = train(c)
    p = eng.params_of(state, 0)
    net = build_deep_model("resnet18", num_classes=4, width=2, in_channels=3).double()
    net.load_state_dict({k.removeprefix(BUFFER): v for k, v in p.items()})
    x = eng.data.x_train.double() / 255
    lam = sharpness(net, torch.nn.functional.cross_entropy, (x, eng.data.y_train), bn_mode="eval", tol=1e-8)
    assert m["sharpness"][-1, 0] == pytest.approx(lam, rel=1e-4)
