"""Deep networks (ordinary ``nn.Module`` s) on the batched engine.

One module *template* gives the structure; every run's parameters and buffers live in the
engine's ``(R, ...)`` tensors (buffers under ``"buffer:<name>"``) and enter the module through
``torch.func.functional_call``, so checkpoints, resume and divergence handling are the engine's.
The runs of a group (seeds, and arms sharing an optimizer) take each training step as one
vectorised computation (``torch.func.vmap`` over the run dimension, :mod:`.deep_step`), or a loop
over runs where a model cannot be vectorised; BatchNorm running statistics are updated in place
in each run's buffer rows during training steps and used (eval mode) by the metrics.
Fast-path switches of the config: ``channels_last``, ``autocast`` (bf16 / fp16), ``compile``.

Metrics (eval mode, unaugmented inputs, chunked): train loss/error on a fixed subset, test
loss/error, and per block ``k`` the raw fraction of positive activations ``block{k}_active`` and
the merged feature sparsity coefficient ``block{k}_sparsity`` (|corr| > tau merged; above
``sparsity_max_neurons`` flattened C x H x W units a fixed random subset is used), as the
authors measure them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args, get_type_hints

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import choices_message
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig, Params
from sgdlab.models.deep_step import (
    BUFFER,
    DEFAULT_OPTIONS,
    ModuleStepper,
    StepOptions,
    to_inputs,
)
from sgdlab.models.mlp import num_classes

# Examples per forward pass in evaluation: bounds activation memory on CPU and GPU.
EVAL_CHUNK = 512
# Seed of the fixed neuron subset used for the feature sparsity of wide blocks.
SPARSITY_SUBSET_SEED = 0


def _losses(kind: str):
    if kind == "cross_entropy":
        return lambda out, y: torch.nn.functional.cross_entropy(out, y, reduction="none")
    # MSE on one-hot targets, summed over classes (the EoSS / "sharpest directions" convention);
    # half_mse: 1/2 of it (Cohen et al.).
    half = 0.5 if kind == "half_mse" else 1.0
    return lambda out, y: half * ((out - torch.nn.functional.one_hot(y, out.shape[-1]).to(out.dtype)) ** 2).sum(-1)


class ModuleModel(BatchedModel):
    random_init = True

    def __init__(self, factory: Callable[[torch.Generator], torch.nn.Module], loss: str, num_classes: int,
                 eval_train: int, sparsity_examples: int, sparsity_max_neurons: int,
                 bn_examples: int = 10000, sample_dims: int = 3, step: StepOptions = DEFAULT_OPTIONS):
        self.factory = factory
        self.sample_dims = sample_dims  # rank of one input: 3 for (C, H, W) images, 1 for flat features
        self.template = factory(torch.Generator().manual_seed(0))
        self.param_names = [n for n, _ in self.template.named_parameters()]
        self.buffer_names = [n for n, _ in self.template.named_buffers()]
        self.loss_kind = loss
        self.per_example_loss = _losses(loss)
        self.num_classes = num_classes
        self.stepper = ModuleStepper(self.template, self.param_names, self.buffer_names, self.per_example_loss, step,
                                     sample_dims)
        self.bn_examples = bn_examples
        self.eval_train = eval_train
        self.sparsity_examples = sparsity_examples
        self.sparsity_max_neurons = sparsity_max_neurons

    # ------------------------------------------------------------------ parameters
    def init_params(self, seeds, dtype=None) -> Params:
        dtype = torch.float32 if dtype is None else dtype
        mods = [self.factory(torch.Generator().manual_seed(int(s))) for s in seeds]
        out = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in mods]).to(dtype)
               for n in self.param_names}
        for n in self.buffer_names:
            b = torch.stack([dict(m.named_buffers())[n].detach() for m in mods])
            out[BUFFER + n] = b.to(dtype) if b.is_floating_point() else b
        return out

    def _state(self, params: Params, r: int) -> dict:
        st = {n: params[n][r] for n in self.param_names}
        st.update({n: params[BUFFER + n][r] for n in self.buffer_names})
        return st

    def _call(self, params, r, x, train: bool, blocks=False):
        self.template.train(train)
        return torch.func.functional_call(self.template, self._state(params, r), (x,),
                               {"return_blocks": True} if blocks else {})

    # ------------------------------------------------------------------ training
    def forward(self, params, x):
        dt = params[self.param_names[0]].dtype
        R = params[self.param_names[0]].shape[0]
        with torch.no_grad():
            shared = x.dim() == self.sample_dims + 1
            return torch.stack([self._call(params, r, to_inputs(x if shared else x[r], dt), False)
                                for r in range(R)])

    def loss(self, params, x, y):
        """Differentiable mean loss per run, (R,), in eval mode (BatchNorm uses its running
        statistics, so the loss is a fixed function of the weights: what curvature measures)."""
        dt = params[self.param_names[0]].dtype
        R = params[self.param_names[0]].shape[0]
        out = []
        for r in range(R):
            xb = to_inputs(x[r] if x.dim() == self.sample_dims + 2 else x, dt)
            yb = y[r] if y.dim() == 2 else y
            out.append(self.per_example_loss(self._call(params, r, xb, False), yb).mean())
        return torch.stack(out)

    def loss_and_grad(self, params, x, y):
        """Per run: mean batch loss (R,) and its gradient, in train mode (BN batch statistics,
        running statistics updated in place). x: (R, b, *sample) uint8 or float per-run batches,
        or (b, *sample) shared; y: (R, b) or (b,) class labels. All runs at once (vmap) unless the
        model cannot be vectorised; see :class:`.deep_step.ModuleStepper`."""
        return self.stepper(params, x, y)

    def with_weights(self, params, weights, data):
        """Other weights (an EMA copy) with BatchNorm statistics recomputed for them: a pass in
        train mode over the first ``bn_examples`` training images with a cumulative average."""
        new = {**params, **{k: v.clone() for k, v in weights.items()}}
        if not self.buffer_names:
            return new
        for n in self.buffer_names:
            b = new[BUFFER + n] = params[BUFFER + n].clone()
            b.fill_(1.0 if n.endswith("running_var") else 0.0)
        bns = [m for m in self.template.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        saved = [m.momentum for m in bns]
        try:
            for m in bns:
                m.momentum = None  # cumulative moving average over the pass
            x = data.x_train[: self.bn_examples]
            R = new[self.param_names[0]].shape[0]
            dt = new[self.param_names[0]].dtype
            with torch.no_grad():
                for r in range(R):
                    for i in range(0, len(x), EVAL_CHUNK):
                        self._call(new, r, to_inputs(x[i:i + EVAL_CHUNK], dt), True)
        finally:
            for m, mom in zip(bns, saved):
                m.momentum = mom
        return new

    # ------------------------------------------------------------------ metrics
    def _chunks(self, params, r, x, blocks=False):
        dt = params[self.param_names[0]].dtype
        for i in range(0, len(x), EVAL_CHUNK):
            yield self._call(params, r, to_inputs(x[i:i + EVAL_CHUNK], dt), False, blocks=blocks)

    def _loss_err(self, params, r, x, y):
        tot, wrong = 0.0, 0
        for i, out in enumerate(self._chunks(params, r, x)):
            yb = y[i * EVAL_CHUNK:(i + 1) * EVAL_CHUNK]
            tot += float(self.per_example_loss(out, yb).sum())
            wrong += int((out.argmax(-1) != yb).sum())
        return tot / len(x), wrong / len(x)

    def metric_names(self, data, cfg, dtype=None) -> list[str]:
        """Losses, errors and every block's ``_active`` / ``_sparsity`` (block names from one
        forward pass of two images, not a whole evaluation; ``dtype`` is unused: names do not
        depend on it)."""
        self.template.eval()
        with torch.no_grad():
            x = to_inputs(data.x_train[:2], next(self.template.parameters()).dtype)
            _, blocks = self.template(x, return_blocks=True)
        out = ["train_loss", "train_error", "test_loss", "test_error"]
        return sorted(out + [f"{b}_{m}" for b in blocks for m in ("active", "sparsity")])

    def metrics(self, params, data, cfg: MetricsConfig, names=None):
        want = (lambda k: names is None or k in names)
        blocks = names is None or any(k.endswith(("_sparsity", "_active")) for k in names)
        R = params[self.param_names[0]].shape[0]
        out: dict[str, list] = {}
        with torch.no_grad():
            for r in range(R):
                vals = self._train_pass(params, r, data, cfg, blocks)
                if want("test_loss") or want("test_error"):
                    vals["test_loss"], vals["test_error"] = self._loss_err(params, r, data.x_test, data.y_test)
                for k, v in vals.items():
                    if want(k):
                        out.setdefault(k, []).append(v)
        dt = params[self.param_names[0]].dtype
        return {k: torch.tensor(v, dtype=dt) for k, v in out.items()}

    def _train_pass(self, params, r, data, cfg: MetricsConfig, blocks: bool) -> dict[str, float]:
        """One forward pass over the first max(eval_train, sparsity_examples) training images
        gives the train loss/error and every block's features (only a fixed subset of at most
        ``sparsity_max_neurons`` units per block is kept: 10k images x 64x32x32 floats would not
        fit in memory; the positive fraction counts all units)."""
        # imported here, once per pass: configs import this module without paying for torch
        from sgdlab.metrics.sparsity import feature_sparsity

        n = min(len(data.x_train), max(self.eval_train, self.sparsity_examples if blocks else 0))
        x, y = data.x_train[:n], data.y_train[:n]
        tot, wrong, seen = 0.0, 0, 0
        pos: dict[str, float] = {}
        units: dict[str, int] = {}
        keep: dict[str, torch.Tensor] = {}
        feats: dict[str, list] = {}
        gen = torch.Generator().manual_seed(SPARSITY_SUBSET_SEED)
        for out in self._chunks(params, r, x, blocks=blocks):
            logits, bl = out if blocks else (out, {})
            lo, hi = seen, seen + len(logits)
            seen = hi
            if lo < self.eval_train:
                m = min(hi, self.eval_train) - lo
                tot += float(self.per_example_loss(logits[:m], y[lo:lo + m]).sum())
                wrong += int((logits[:m].argmax(-1) != y[lo:lo + m]).sum())
            if lo >= self.sparsity_examples:
                continue
            m = min(hi, self.sparsity_examples) - lo
            for name, a in bl.items():
                a = a[:m].flatten(1)
                if name not in keep:
                    units[name] = a.shape[1]
                    idx = torch.arange(a.shape[1])
                    if a.shape[1] > self.sparsity_max_neurons:
                        idx = torch.randperm(a.shape[1], generator=gen)[: self.sparsity_max_neurons].sort().values
                    keep[name] = idx.to(a.device)
                pos[name] = pos.get(name, 0.0) + float((a > 0).sum())
                feats.setdefault(name, []).append(a[:, keep[name]].double())
        n_eval = min(n, self.eval_train)
        res = {"train_loss": tot / n_eval, "train_error": wrong / n_eval}
        n_sp = min(n, self.sparsity_examples)
        for name, chunks in feats.items():
            res[f"{name}_active"] = pos[name] / (n_sp * units[name])
            res[f"{name}_sparsity"] = float(feature_sparsity(torch.cat(chunks), cfg.thresholds.sparsity_tau,
                                                             with_effective_rank=False).coefficient)
        return res


@dataclass(frozen=True)
class DeepNetConfig(ModelConfig):
    """A CIFAR-style network from ``sgdlab.models.cifar`` (ResNet/PreAct/WRN/DenseNet/VGG)."""

    kind: ClassVar[str] = "deep_net"
    threaded: ClassVar[bool] = True  # large convolutions per run: intra-op threads help (sgdlab.workflows.cores)
    name: str = "resnet18"  # see sgdlab.models.cifar.DEEP_MODELS
    width: int = 0  # the model's width knob (0 = the paper's default, see DEFAULT_WIDTHS)
    # "mse": sum over classes of (f - onehot)^2 (EoSS), "half_mse": 1/2 of it (Cohen et al.)
    loss: Literal["cross_entropy", "mse", "half_mse"] = "cross_entropy"
    eval_train: int = 10000  # training examples for train loss/error at evaluation
    sparsity_examples: int = 10000  # unaugmented training images for the block feature sparsity
    sparsity_max_neurons: int = 1000  # above this many units of a block, a fixed random subset
    bn_examples: int = 10000  # training images used to recompute BN statistics of EMA weights
    # Extra keyword arguments of the model factory (see sgdlab.models.cifar), e.g. for name = "mlp"
    # {hidden = [200, 200], activation = "tanh"} or {depth = 3}; unknown ones fail listing the valid.
    options: Any = None
    # Fast paths of the training step (evaluation always runs in the run's dtype, NCHW, eager):
    # all runs of a group as one torch.func.vmap computation (False: a loop over runs; a model
    # that cannot be vectorised falls back to the loop with a notice).
    vectorize: bool = True
    autocast: Literal["none", "bf16", "fp16"] = "none"  # mixed precision: bf16 on CPU/CUDA, fp16 on CUDA
    channels_last: bool = False  # NHWC memory format of image inputs (tensor-core convolutions on GPUs)
    compile: Literal["none", "default", "reduce-overhead", "max-autotune"] = "none"  # torch.compile mode of the step

    def __post_init__(self):
        self._check_name()
        check(self.width >= 0, f"width must be >= 0 (0 = default), got {self.width}")
        check(self.eval_train >= 1 and self.sparsity_examples >= 2, "eval_train >= 1, sparsity_examples >= 2")
        check(self.sparsity_max_neurons >= 2, "sparsity_max_neurons must be >= 2")
        check(self.options is None or isinstance(self.options, dict),
              f"options must be a table of keyword arguments, got {self.options!r}")
        for key in ("loss", "autocast", "compile"):  # Literal keys, also when built in Python
            allowed = get_args(get_type_hints(DeepNetConfig)[key])
            check(getattr(self, key) in allowed, f"model.{key}: " + choices_message("value", getattr(self, key), allowed))

    def _check_name(self) -> None:
        """Unknown names fail here, listing the valid ones (a subclass with its own nets overrides it)."""
        from sgdlab.models.cifar import DEEP_MODELS

        DEEP_MODELS.get(self.name)

    def build(self, data) -> ModuleModel:
        from sgdlab.models.cifar import build_deep_model

        opts = dict(self.options or {})
        return self.module_model(data, lambda g, n_classes, in_ch, shape: build_deep_model(
            self.name, num_classes=n_classes, width=self.width or None, in_channels=in_ch, generator=g,
            input_shape=shape, **opts))

    def module_model(self, data, make: Callable) -> ModuleModel:
        """The engine model of ``make(generator, num_classes, in_channels, input_shape) -> nn.Module``
        with this config's training settings (also used for a user's registered module)."""
        check(not data.y_train.is_floating_point(), "deep_net needs integer class labels y (n,)")
        n_classes = num_classes(data)
        in_ch, shape = data.x_train.shape[1], tuple(data.x_train.shape[1:])
        check(not self.channels_last or len(shape) == 3,
              f"model.channels_last needs image inputs (N, C, H, W), got samples of shape {shape}")
        step = StepOptions(self.vectorize, self.channels_last, self.autocast, self.compile)
        return ModuleModel(lambda g: make(g, n_classes, in_ch, shape), self.loss, n_classes, self.eval_train,
                           self.sparsity_examples, self.sparsity_max_neurons, self.bn_examples,
                           sample_dims=len(shape), step=step)
