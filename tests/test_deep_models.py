"""Deep CIFAR models: parameter counts, forward passes, the block-output protocol, init."""

import math

import pytest
import torch

from sgdlab.core.errors import ConfigError
from sgdlab.models.cifar import (
    DEEP_MODELS,
    BlockNet,
    build_deep_model,
    count_parameters,
)

# Small widths keep every forward pass in the tens of milliseconds on one CPU thread.
SMALL_WIDTHS = {
    "resnet18": 4, "preact-resnet18": 4, "resnet34": 4, "resnet32": 4, "wrn28": 1,
    "densenet100-bc": 4, "vgg11": 4, "vgg11-bn": 4, "vgg16": 4, "vgg16-bn": 4, "mlp": 4,
}
# Stage count of each model = number of blocks it reports.
NUM_BLOCKS = {
    "resnet18": 4, "preact-resnet18": 4, "resnet34": 4, "resnet32": 3, "wrn28": 3,
    "densenet100-bc": 3, "vgg11": 5, "vgg11-bn": 5, "vgg16": 5, "vgg16-bn": 5, "mlp": 2,
}


def test_every_bundled_model_is_covered():
    bundled = {n for n in DEEP_MODELS.names() if DEEP_MODELS.get(n).__module__.startswith("sgdlab.")}
    assert bundled == set(SMALL_WIDTHS)


def test_resnet18_parameter_count_matches_paper():
    model = build_deep_model("resnet18", num_classes=10, width=64)
    assert count_parameters(model) == 11_173_962


@pytest.mark.parametrize("name, expected", [
    ("resnet32", 464_154),        # He et al.: "0.46M"
    ("densenet100-bc", 769_162),  # Huang et al.: "0.8M" (k=12)
])
def test_reference_parameter_counts(name, expected):
    assert count_parameters(build_deep_model(name)) == expected


def _batch(seed=0, shape=(2, 3, 32, 32)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", sorted(SMALL_WIDTHS))
def test_forward_and_block_protocol(name):
    model = build_deep_model(name, num_classes=10, width=SMALL_WIDTHS[name], input_shape=(3, 32, 32),
                             generator=torch.Generator().manual_seed(0)).eval()
    assert isinstance(model, BlockNet)
    x = _batch()
    seen = {}
    hooks = [model.blocks[b].register_forward_hook(lambda m, i, o, b=b: seen.__setitem__(b, o))
             for b in model.block_names]
    with torch.no_grad():
        logits = model(x)
        hooked = dict(seen)
        seen.clear()
        logits2, blocks = model(x, return_blocks=True)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()
    assert torch.equal(logits, logits2)
    names = [f"block{i}" for i in range(1, NUM_BLOCKS[name] + 1)]
    assert list(blocks) == names == list(model.block_names)
    assert model.last_block == names[-1]
    for b in names:
        assert blocks[b].dim() == (2 if name == "mlp" else 4) and blocks[b].shape[0] == 2  # mlp: (N, h)
        assert torch.equal(blocks[b], hooked[b])
    # The last block is the post-ReLU feature map the head pools.
    assert (blocks[model.last_block] >= 0).all()


@pytest.mark.parametrize("name", ["resnet18", "preact-resnet18", "resnet32", "wrn28", "densenet100-bc",
                                  "vgg11-bn"])
def test_other_input_sizes_channels_and_classes(name):
    model = build_deep_model(name, num_classes=100, width=SMALL_WIDTHS[name], in_channels=1).eval()
    with torch.no_grad():
        assert model(_batch(shape=(3, 1, 8, 8))).shape == (3, 100)


def test_resnet18_block_shapes():
    model = build_deep_model("resnet18", width=4).eval()
    with torch.no_grad():
        _, blocks = model(_batch(), return_blocks=True)
    assert [tuple(t.shape[1:]) for t in blocks.values()] == [(4, 32, 32), (8, 16, 16), (16, 8, 8), (32, 4, 4)]


def test_generator_makes_init_reproducible():
    a = build_deep_model("resnet32", width=4, generator=torch.Generator().manual_seed(3))
    b = build_deep_model("resnet32", width=4, generator=torch.Generator().manual_seed(3))
    c = build_deep_model("resnet32", width=4, generator=torch.Generator().manual_seed(4))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_kaiming_fan_out_init_and_norm_init():
    model = build_deep_model("resnet18", width=64, generator=torch.Generator().manual_seed(0))
    conv = model.blocks["block4"][1].conv2.weight  # 512 x 512 x 3 x 3
    fan_out = conv.shape[0] * conv.shape[2] * conv.shape[3]
    assert conv.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.02)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ConfigError) as e:
        build_deep_model("resnet-18")
    for name in ("resnet18", "densenet100-bc", "vgg16-bn", "wrn28"):
        assert name in str(e.value)


@pytest.mark.parametrize("kw, needle", [
    ({"width": 0}, "width"), ({"num_classes": 0}, "num_classes"), ({"depth": 30}, "depth"),
    ({"growth": 12}, "allowed"), ({"generator": 3}, "generator"),
])
def test_bad_options_raise_config_error(kw, needle):
    name = "wrn28" if "depth" in kw else "resnet32"
    with pytest.raises(ConfigError, match=needle):
        build_deep_model(name, **kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu():
    model = build_deep_model("resnet18", width=8).cuda()
    logits, blocks = model(_batch().cuda(), return_blocks=True)
    assert logits.is_cuda and all(t.is_cuda for t in blocks.values())
