"""Deep CIFAR-style networks, built by name: ``build_deep_model("resnet18", num_classes=10, width=64)``.

All models are plain ``nn.Module`` s (no device in constructors: call ``.to(device)``), take
inputs ``(N, C_in, H, W)`` in [0, 1] without normalization, and follow one block-output
protocol (see :mod:`sgdlab.models.cifar.base`)::

    logits = model(x)                                  # (N, num_classes)
    logits, blocks = model(x, return_blocks=True)      # one forward pass
    blocks["block1"], ..., blocks[model.last_block]    # stage outputs, (N, C_k, H_k, W_k)

``width`` is each model's natural width knob (``None`` = the paper's value):

=================  ============================================  =======
name               width means                                   default
=================  ============================================  =======
resnet18           channels of stage 1 (stages w, 2w, 4w, 8w)    64
preact-resnet18    same, pre-activation blocks                   64
resnet34           same, blocks [3, 4, 6, 3]                     64
resnet32           channels of stage 1 (stages w, 2w, 4w)        16
wrn28              widen factor k of WRN-28-k                    10
densenet100-bc     growth rate                                   12
vgg11, vgg16       channels of stage 1 (w, 2w, 4w, 8w, 8w)       64
vgg11-bn, vgg16-bn same, with batch norm                         64
mlp                every hidden layer's width (``depth`` layers)  200
=================  ============================================  =======

``mlp`` is a fully connected net on flattened inputs (images or flat features), Cohen et al.'s
default size (two hidden layers of 200); options ``depth`` (hidden layers, default 2), ``hidden``
(explicit widths, replacing ``width`` x ``depth``), ``activation`` (relu, tanh, elu, gelu) and
``bias``; it needs ``input_shape`` (one example's shape), which the engine passes.

Every model also takes ``in_channels`` (default 3; 1 for digits / MNIST-1D) and
``generator`` (a ``torch.Generator`` making the initialisation reproducible; ``None`` uses
torch's default generator). ``densenet100-bc`` additionally takes ``depth``, ``compression``,
``bottleneck``; ``wrn28`` takes ``depth``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch

from sgdlab.core.errors import ConfigError
from sgdlab.core.registry import Registry
from sgdlab.models.cifar.base import BlockNet, PoolHead, count_parameters, init_weights
from sgdlab.models.cifar.densenet import DenseNet
from sgdlab.models.cifar.mlp import MLPNet
from sgdlab.models.cifar.resnet import CifarResNet, PreActResNet, ResNet
from sgdlab.models.cifar.vgg import VGG
from sgdlab.models.cifar.wide_resnet import WideResNet

__all__ = [
    "DEEP_MODELS",
    "DEFAULT_WIDTHS",
    "VGG",
    "BlockNet",
    "CifarResNet",
    "DenseNet",
    "MLPNet",
    "PoolHead",
    "PreActResNet",
    "ResNet",
    "WideResNet",
    "build_deep_model",
    "count_parameters",
    "init_weights",
]

DEEP_MODELS: Registry[Callable[..., BlockNet]] = Registry("deep model")

DEFAULT_WIDTHS = {
    "resnet18": 64, "preact-resnet18": 64, "resnet34": 64, "resnet32": 16, "wrn28": 10,
    "densenet100-bc": 12, "vgg11": 64, "vgg11-bn": 64, "vgg16": 64, "vgg16-bn": 64, "mlp": 200,
}
# Hidden layers of the deep-path MLP when neither `depth` nor `hidden` is given (Cohen et al.).
MLP_DEPTH = 2

RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET34_BLOCKS = (3, 4, 6, 3)


@DEEP_MODELS.register("resnet18")
def resnet18(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
    return ResNet(RESNET18_BLOCKS, num_classes, width, in_channels, generator)


@DEEP_MODELS.register("preact-resnet18")
def preact_resnet18(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
    return PreActResNet(RESNET18_BLOCKS, num_classes, width, in_channels, generator)


@DEEP_MODELS.register("resnet34")
def resnet34(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
    return ResNet(RESNET34_BLOCKS, num_classes, width, in_channels, generator)


@DEEP_MODELS.register("resnet32")
def resnet32(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
    return CifarResNet(32, num_classes, width, in_channels, generator=generator)


@DEEP_MODELS.register("wrn28")
def wrn28(num_classes: int, width: int, in_channels: int = 3, generator=None, depth: int = 28) -> BlockNet:
    return WideResNet(depth, width, num_classes, in_channels, generator)


@DEEP_MODELS.register("densenet100-bc")
def densenet100_bc(num_classes: int, width: int, in_channels: int = 3, generator=None, depth: int = 100,
                   compression: float = 0.5, bottleneck: bool = True) -> BlockNet:
    return DenseNet(depth, width, compression, bottleneck, num_classes, in_channels, generator)


@DEEP_MODELS.register("mlp")
def mlp(num_classes: int, width: int, in_channels: int = 3, generator=None, input_shape=None, depth: int = MLP_DEPTH,
        hidden=None, activation: str = "relu", bias: bool = True) -> BlockNet:
    """``hidden`` widths, or ``depth`` layers of ``width``; ``input_shape`` (default
    ``(in_channels,)``, flat features) is one example's shape."""
    shape = tuple(input_shape) if input_shape is not None else (in_channels,)
    return MLPNet(shape, list(hidden) if hidden is not None else [width] * depth, num_classes, activation,
                  bias, generator)


def _vgg(depth: int, batch_norm: bool) -> Callable[..., BlockNet]:
    def factory(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
        return VGG(depth, batch_norm, num_classes, width, in_channels, generator)

    return factory


for _depth in (11, 16):
    DEEP_MODELS.add(f"vgg{_depth}", _vgg(_depth, False))
    DEEP_MODELS.add(f"vgg{_depth}-bn", _vgg(_depth, True))


def _check_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def build_deep_model(name: str, num_classes: int = 10, width: int | None = None, **kw) -> BlockNet:
    """Build the registered model ``name``; raises ConfigError listing valid names / options.

    ``width=None`` picks ``DEFAULT_WIDTHS[name]`` (a model registered without one needs an
    explicit width). Extra keyword arguments (``in_channels``, ``generator``, model-specific ones
    listed in the module doc) go to the model; ``input_shape`` (one example's shape) goes only to
    models that take it (``mlp``).
    """
    factory = DEEP_MODELS.get(name)
    _check_int("num_classes", num_classes)
    _check_int("width", width, allow_none=True)
    if width is None and name not in DEFAULT_WIDTHS:
        raise ConfigError(f"deep model {name!r} has no default width: set its width (model.width), "
                          f"e.g. width = 64; models with a default: {', '.join(sorted(DEFAULT_WIDTHS))}")
    if "input_shape" in kw and "input_shape" not in inspect.signature(factory).parameters:
        kw.pop("input_shape")
    generator = kw.get("generator")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    params = inspect.signature(factory).parameters
    allowed = [p for p in params if p not in ("num_classes", "width")]
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for deep model {name!r}; allowed: {', '.join(allowed)}")
    try:
        return factory(num_classes, DEFAULT_WIDTHS[name] if width is None else width, **kw)
    except ValueError as e:
        raise ConfigError(f"deep model {name!r}: {e}") from None
