"""Fully connected ReLU (or tanh) networks batched over runs: the paper's two- and three-layer nets.

Parameters of R runs: ``W1 (R, h1, d), b1 (R, h1), ..., WL (R, k, h_{L-1}), bL (R, k)`` (the
``torch.nn.Linear`` layout with a leading run dim; a bias key is absent when that layer has no
bias). ``h(x) = WL s(... s(W1 x + b1) ...) + bL`` with ``s`` = ReLU or tanh; output ``(R, b)``
for ``k = 1``, ``(R, b, k)`` otherwise.

Gradients are hand-batched closed forms (backpropagation written with batched ``matmul``):
``g_L = dloss/dout``, ``dW_l = g_l^T h_{l-1}``, ``db_l = sum_b g_l``,
``g_{l-1} = (g_l W_l) * s'(z_{l-1})``. On these small nets the hand path is several times faster
than the generic ``torch.func`` vmap path (``benchmarks/relu_nets.py --grad`` measures both);
it is therefore the default and the generic one stays available as
``BatchedModel.loss_and_grad(model, ...)`` (tests check that both agree).

Losses (per example, the batch loss is their mean): ``"mse"`` ``(f - y)^2`` (the authors' toy
nets: mean, no 1/2), ``"half_mse"`` ``(f - y)^2 / 2``, ``"cross_entropy"`` (``k`` logits,
integer labels). With ``k > 1`` outputs the squared losses are summed over the outputs,
``sum_c (f_c - t_c)^2`` (``mse``, the EoSS convention) or ``1/2 sum_c (f_c - t_c)^2``
(``half_mse``, Cohen et al.'s), with ``t`` the vector target ``y (n, k)`` or, for integer class
labels, the one-hot row of the label (``k`` = number of classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import choices_message
from sgdlab.metrics.config import MetricsConfig
from sgdlab.models.base import BatchedModel, ModelConfig, Params

# Authors' 1-D regression init (Blanc et al. 2020): W1 = +-2.5, b1 = 2.5 N(0,1), W2 = 4 N(0,1).
BLANC_W1, BLANC_B1, BLANC_W2 = 2.5, 2.5, 4.0
# Jacobian rank above this many parameters x inputs would hold a big phi: cap the inputs.
MAX_RANK_INPUTS = 2000


def xavier_std(fan_in: int, fan_out: int) -> float:
    """Xavier/Glorot normal std at gain 1, ``sqrt(2 / (fan_in + fan_out))`` (torch's
    ``xavier_normal_``): keeps activation and gradient variance across a tanh-like layer."""
    return math.sqrt(2.0 / (fan_in + fan_out))


LOSSES = ("mse", "half_mse", "cross_entropy")


def one_hot(y: torch.Tensor, k: int, dtype) -> torch.Tensor:
    """Integer labels ``(...)`` -> one-hot rows ``(..., k)`` (a comparison, so vmap-able)."""
    return (y.long().unsqueeze(-1) == torch.arange(k, device=y.device)).to(dtype)


def targets(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The regression target of outputs ``out``: ``y`` itself, or the one-hot rows of integer
    class labels (``out (..., k)``, ``y (...)``)."""
    return y if y.is_floating_point() else one_hot(y, out.shape[-1], out.dtype)


def _mse(out, y):
    return (out - y) ** 2


def _half_mse(out, y):
    return 0.5 * (out - y) ** 2


def _mse_sum(out, y):
    """out (..., k), y labels (...) or targets (..., k) -> sum_c (f_c - t_c)^2, shape (...)."""
    return ((out - targets(out, y)) ** 2).sum(-1)


def _half_mse_sum(out, y):
    return 0.5 * ((out - targets(out, y)) ** 2).sum(-1)


def _cross_entropy(out, y):
    """out (..., k) logits, y (...) or shared (n,) labels -> per-example loss (...)."""
    y = y.long().expand(out.shape[:-1])  # labels shared by all runs broadcast over the run dim
    return torch.logsumexp(out, -1) - out.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def loss_derivative(kind: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d per-example loss / d output, shape like ``out`` (integer labels: one-hot targets)."""
    if kind == "mse":
        return 2.0 * (out - targets(out, y))
    if kind == "half_mse":
        return out - targets(out, y)
    p = torch.softmax(out, -1)
    return p - one_hot(y, out.shape[-1], p.dtype)


# Per-example losses of scalar outputs (R, b) and of vector outputs (R, b, k) -> (R, b).
PER_EXAMPLE = {"mse": _mse, "half_mse": _half_mse, "cross_entropy": _cross_entropy}
PER_EXAMPLE_VECTOR = {"mse": _mse_sum, "half_mse": _half_mse_sum, "cross_entropy": _cross_entropy}


class MLP(BatchedModel):
    """Batched fully connected net; see the module docstring for shapes and formulas."""

    def __init__(self, widths: tuple[int, ...], biases: tuple[bool, ...], activation: str, loss: str,
                 init: str, init_scales: tuple[float, ...], bias_init: str, normalize_features: bool,
                 rank_inputs: torch.Tensor | None = None, classes: bool = False):
        self.widths, self.biases, self.activation = widths, biases, activation
        self.n_layers = len(widths) - 1
        self.loss_kind, self.init, self.init_scales, self.bias_init = loss, init, init_scales, bias_init
        self.normalize_features = normalize_features
        self.rank_inputs = rank_inputs
        self.k = widths[-1]
        self.classes = classes or loss == "cross_entropy"  # integer labels: also train/test error
        self.per_example_loss: Callable = (PER_EXAMPLE if self.k == 1 else PER_EXAMPLE_VECTOR)[loss]

    # ------------------------------------------------------------------ parameters
    @property
    def n_params(self) -> int:
        return sum(o * i + (o if b else 0) for i, o, b in zip(self.widths[:-1], self.widths[1:], self.biases))

    def init_params(self, seeds, dtype=None) -> Params:
        """Run ``s`` draws from ``numpy.random.default_rng(seed)`` (the engine passes seeds
        derived from ``SeedSequence([s, STREAM_INIT])``), layer by layer: W then b.

        ``gaussian``: ``W_l = scale_l N(0, 1)``; ``xavier_normal``: ``W_l = gain_l sqrt(2 /
        (fan_in + fan_out)) N(0, 1)`` with ``gain_l = init_scales[l]`` (torch's
        ``xavier_normal_``; Cohen et al.'s EoS nets); ``blanc`` (2 layers): ``W1 = +-2.5 scale_1``,
        ``b1 = 2.5 scale_1 N(0,1)``, ``W2 = 4 scale_2 N(0,1)``. Biases of ``gaussian`` and
        ``xavier_normal`` nets: ``bias_init`` = ``torch_uniform`` (``U(-1/sqrt(fan_in),
        1/sqrt(fan_in))``, what the authors' nn.Linear keeps), ``zeros`` or ``gaussian``
        (``scale_l N(0,1)``).
        """
        dtype = torch.float64 if dtype is None else dtype
        per_run = [self._init_one(np.random.default_rng(int(s))) for s in seeds]
        return {k: torch.as_tensor(np.stack([p[k] for p in per_run]), dtype=dtype) for k in per_run[0]}

    def _init_one(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        for l, (fan_in, fan_out, bias, s) in enumerate(
                zip(self.widths[:-1], self.widths[1:], self.biases, self.init_scales), start=1):
            if self.init == "blanc":
                if l == 1:
                    out["W1"] = BLANC_W1 * s * rng.choice([-1.0, 1.0], size=(fan_out, fan_in))
                    b = BLANC_B1 * s * rng.standard_normal(fan_out)
                else:
                    out[f"W{l}"] = BLANC_W2 * s * rng.standard_normal((fan_out, fan_in))
                    b = np.zeros(fan_out)
            else:
                std = s * xavier_std(fan_in, fan_out) if self.init == "xavier_normal" else s
                out[f"W{l}"] = std * rng.standard_normal((fan_out, fan_in))
                if self.bias_init == "torch_uniform":
                    bound = 1.0 / math.sqrt(fan_in)
                    b = rng.uniform(-bound, bound, fan_out)
                elif self.bias_init == "gaussian":
                    b = s * rng.standard_normal(fan_out)
                else:
                    b = np.zeros(fan_out)
            if bias:
                out[f"b{l}"] = b
        return out

    # ------------------------------------------------------------------ forward / backward
    def _act(self, z):
        return torch.relu(z) if self.activation == "relu" else torch.tanh(z)

    def _forward_cache(self, params: Params, x: torch.Tensor):
        """Post-activations ``hs = [x, h1, ..., h_{L-1}]`` and the output ``(R, b, k)``."""
        hs = [x]
        h = x
        for l in range(1, self.n_layers + 1):
            z = torch.matmul(h, params[f"W{l}"].transpose(-1, -2))  # (R, b, h_l); x (b, d) broadcasts
            if f"b{l}" in params:
                z = z + params[f"b{l}"].unsqueeze(-2)
            if l < self.n_layers:
                h = self._act(z)
                hs.append(h)
        return hs, z

    def _out(self, z):
        return z.squeeze(-1) if self.k == 1 else z

    def forward(self, params, x):
        return self._out(self._forward_cache(params, x)[1])

    def activations(self, params: Params, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-activation features of every hidden layer: ``[(R, n, h1), ..., (R, n, h_{L-1})]``."""
        return self._forward_cache(params, x)[0][1:]

    def _backward(self, params, hs, cot):
        """Grads of ``sum_{r,i,o} cot[r,i,o] out[r,i,o]`` for cotangent ``cot (R, b, k)``."""
        grads = {}
        g = cot
        for l in range(self.n_layers, 0, -1):
            h = hs[l - 1]
            gt = g.transpose(-1, -2)  # (R, h_l, b)
            grads[f"W{l}"] = torch.matmul(gt, h)  # (R, h_l, h_{l-1}); shared x (b, d) broadcasts
            if f"b{l}" in params:
                grads[f"b{l}"] = g.sum(-2)
            if l > 1:
                g = torch.matmul(g, params[f"W{l}"])
                g = g * (h > 0) if self.activation == "relu" else g * (1 - h * h)
        return {k: grads[k] for k in params}  # in params order (flattening relies on it)

    def forward_with_vjp(self, params: Params, x: torch.Tensor):
        """(output, vjp) with ``vjp(cot)`` -> grads of ``sum cot * output`` (cot like output)."""
        hs, z = self._forward_cache(params, x)

        def vjp(cot):
            return self._backward(params, hs, cot.unsqueeze(-1) if self.k == 1 else cot)

        return self._out(z), vjp

    def loss_and_grad(self, params, x, y):
        """Closed form: mean batch loss ``(R,)`` and its gradient (one forward, one backward)."""
        out, vjp = self.forward_with_vjp(params, x)
        b = out.shape[1]
        loss = self.per_example_loss(out, y).mean(-1)  # (R, b) -> (R,) for every loss kind
        return loss, vjp(loss_derivative(self.loss_kind, out, y) / b)

    def jacobian(self, params: Params, x: torch.Tensor) -> torch.Tensor:
        """``phi`` of every run, ``(R, n, p)`` for ``k = 1`` (columns in params order, C order)."""
        assert self.k == 1, "closed-form Jacobian for scalar outputs only"
        hs, z = self._forward_cache(params, x)
        R, n = z.shape[0], z.shape[1]
        g = torch.ones(R, n, 1, dtype=z.dtype, device=z.device)
        blocks = {}
        for l in range(self.n_layers, 0, -1):
            h = hs[l - 1]
            h = h.expand(R, *h.shape[-2:]) if h.dim() == 2 else h
            blocks[f"W{l}"] = (g.unsqueeze(-1) * h.unsqueeze(-2)).reshape(R, n, -1)
            if f"b{l}" in params:
                blocks[f"b{l}"] = g
            if l > 1:
                g = torch.matmul(g, params[f"W{l}"])
                g = g * (hs[l - 1] > 0) if self.activation == "relu" else g * (1 - hs[l - 1] ** 2)
        return torch.cat([blocks[k] for k in params], dim=-1)

    # ------------------------------------------------------------------ metrics
    def _rank_x(self, data):
        x = self.rank_inputs if self.rank_inputs is not None else data.extras.get("rank_inputs")
        if x is None:  # authors: as many inputs as parameters, from the held-out inputs
            x = data.x_test[: min(self.n_params, MAX_RANK_INPUTS)]
        return x

    def metrics(self, params, data, cfg: MetricsConfig, names=None):
        """``train_loss``, ``test_loss`` (only with finite test labels), ``train_error`` /
        ``test_error`` (classifiers), per hidden layer ``l``: ``block{l}_sparsity`` (merged
        coefficient, tau = ``cfg.thresholds.sparsity_tau``), ``block{l}_active`` (positive fraction),
        ``block{l}_merged``, ``block{l}_dead``, and ``jacobian_rank`` (rtol ``cfg.thresholds.rank_rtol``
        or 1e-4). All ``(R,)``; names as in ``sgdlab.metrics.vocabulary``."""
        from sgdlab.metrics.jacobian import (
            DEFAULT_RTOL,
            jacobian_rank_batched,
            matrix_rank,
        )
        from sgdlab.metrics.sparsity import feature_sparsity

        want = lambda k: names is None or k in names
        out: dict[str, torch.Tensor] = {}

        def losses(x, y, tag):
            o = self.forward(params, x)
            out[f"{tag}_loss"] = self.per_example_loss(o, y).mean(-1)
            if self.classes and want(f"{tag}_error"):
                out[f"{tag}_error"] = (o.argmax(-1) != y.long()).to(o.dtype).mean(-1)

        losses(data.x_train, data.y_train, "train")
        if want("test_loss") or want("test_error"):
            if data.y_test.is_floating_point() and not bool(torch.isfinite(data.y_test).all()):
                pass  # no test labels (the 1-D regression): no test loss
            else:
                losses(data.x_test, data.y_test, "test")
        layer_keys = [f"block{l}_{m}" for l in range(1, self.n_layers) for m in
                      ("sparsity", "active", "merged", "dead")]
        if any(want(k) for k in layer_keys):
            for l, a in enumerate(self.activations(params, data.x_train), start=1):
                if a.dim() == 2:
                    a = a.expand(next(iter(params.values())).shape[0], *a.shape)
                s = feature_sparsity(a, cfg.thresholds.sparsity_tau, normalize=self.normalize_features)
                out[f"block{l}_sparsity"] = s.coefficient
                out[f"block{l}_active"] = s.positive_fraction
                out[f"block{l}_merged"] = s.merged
                out[f"block{l}_dead"] = s.dead
        if want("jacobian_rank"):
            rtol = cfg.thresholds.rank_rtol if cfg.thresholds.rank_rtol is not None else DEFAULT_RTOL
            x = self._rank_x(data)
            if self.k == 1:
                out["jacobian_rank"] = matrix_rank(self.jacobian(params, x), rtol)
            else:
                one = lambda p, xb: self.forward({k: v.unsqueeze(0) for k, v in p.items()}, xb)[0]
                out["jacobian_rank"] = jacobian_rank_batched(one, params, x, rtol)
        return {k: v for k, v in out.items() if want(k)}


Activation = Literal["relu", "tanh"]


@dataclass(frozen=True)
class MLPConfig(ModelConfig):
    """A fully connected net ``d -> hidden... -> k``; d and k come from the data: ``k = 1`` for
    scalar targets ``y (n,)``, ``k`` for vector targets ``y (n, k)``, the number of classes for
    integer labels (``data.extras["num_classes"]`` if given, else the largest label + 1), which
    any of the three losses accepts (``mse`` / ``half_mse``: one-hot targets)."""

    kind: ClassVar[str] = "relu_mlp"
    hidden: tuple[int, ...] = (20,)  # hidden widths (paper: 20 teacher-student, 100 1-D, (10, 10) 3-layer)
    biases: tuple[bool, ...] = (False, False)  # one flag per layer (len(hidden) + 1)
    activation: Activation = "relu"
    # Per example, mean over the batch: "mse" (f-y)^2 (authors' toy nets, no 1/2; k outputs: summed
    # over them, the EoSS convention), "half_mse" (1/2 of it, Cohen et al.), "cross_entropy".
    # Integer class labels: mse / half_mse use one-hot targets.
    loss: Literal["mse", "half_mse", "cross_entropy"] = "mse"
    # gaussian: W_l = init_scales[l] N(0,1); xavier_normal: init_scales are Xavier gains (Cohen et
    # al.'s EoS nets); blanc: the authors' 1-D regression init
    init: Literal["gaussian", "xavier_normal", "blanc"] = "gaussian"
    init_scales: tuple[float, ...] = (0.5, 0.0)  # per layer; teacher-student: W1 ~ 0.5 N, W2 = 0
    bias_init: Literal["torch_uniform", "zeros", "gaussian"] = "torch_uniform"  # not used by blanc
    normalize_features: bool = True  # sparsity on L2-normalised feature rows (the paper's toy nets)

    def __post_init__(self):
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
              f"hidden must list positive widths, got {self.hidden}")
        L = len(self.hidden) + 1
        check(len(self.biases) == L, f"biases needs one flag per layer ({L}), got {self.biases}")
        check(len(self.init_scales) == L, f"init_scales needs one scale per layer ({L}), got {self.init_scales}")
        check(all(s >= 0 and math.isfinite(s) for s in self.init_scales), "init_scales must be >= 0")
        check(self.loss in LOSSES, choices_message("loss", self.loss, LOSSES))
        if self.init == "blanc":
            check(L == 2, f"init='blanc' is the authors' two-layer init; got {L} layers")

    def build(self, data) -> MLP:
        check(data.x_train.dim() == 2, f"relu_mlp needs flat inputs x (n, d), got shape {tuple(data.x_train.shape)}; "
              "for images use model kind deep_net with name = 'mlp'")
        d = data.x_train.shape[1]
        y = data.y_train
        classes = not y.is_floating_point()
        if classes:
            check(y.dim() == 1, f"class labels must be y (n,), got shape {tuple(y.shape)}")
            k = num_classes(data)
        else:
            check(self.loss != "cross_entropy", "loss='cross_entropy' needs integer class labels")
            check(y.dim() in (1, 2), f"targets must be y (n,) or (n, k), got shape {tuple(y.shape)}")
            k = 1 if y.dim() == 1 else y.shape[1]
        return MLP((d, *self.hidden, k), self.biases, self.activation, self.loss, self.init,
                   self.init_scales, self.bias_init, self.normalize_features, classes=classes)


def num_classes(data) -> int:
    """``data.extras["num_classes"]`` when the data says it, else the largest label + 1 (>= 2)."""
    if "num_classes" in data.extras:
        k = int(data.extras["num_classes"])
    else:
        k = int(max(data.y_train.max(), data.y_test.max() if data.y_test.numel() else 0)) + 1
    check(k >= 2, f"classification needs at least 2 classes, got {k}")
    return k
