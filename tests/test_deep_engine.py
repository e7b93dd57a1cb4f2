"""Deep nets (nn.Modules) on the engine: equal to a plain PyTorch loop; block metrics by definition."""

import numpy as np
import pytest
import torch

from sgdlab.data.image_configs import SyntheticImages
from sgdlab.experiment import ArmConfig, EvalConfig, ExperimentConfig
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.sparsity import feature_sparsity
from sgdlab.models.cifar import build_deep_model
from sgdlab.models.deep import BUFFER, DeepNetConfig
from sgdlab.optim.config import SGD
from sgdlab.schedules import Piecewise
from sgdlab.train import Engine, train

DATA = SyntheticImages(n_train=48, n_test=16, size=8, num_classes=4)


def cfg(model="resnet18", width=2, steps=12, dtype="float64", **opt):
    return ExperimentConfig(
        name="deep-test", data=DATA, model=DeepNetConfig(name=model, width=width, eval_train=48, sparsity_examples=48),
        arms=(ArmConfig("sgd", SGD(8, **opt), Piecewise(0.05, (0.5,), (10.0,))),), steps=steps, seeds=2,
        eval=EvalConfig("linear", 3), dtype=dtype, metrics=MetricsConfig(sparsity_tau=0.95))


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
    from sgdlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown deep model 'resnet19'; allowed:"):
        DeepNetConfig(name="resnet19")
    from sgdlab.data.image_configs import ImageData

    with pytest.raises(ConfigError, match="set data.path"):
        ImageData(name="cifar10")
