"""Hessian-vector products of a model's loss, as a symmetric operator on flat vectors.

For parameters theta in R^p (the model's trainable parameters, flattened and concatenated in
``named_parameters()`` order) and data D split into batches B_1..B_m of sizes n_1..n_m,

    L(theta) = sum_b n_b L_b(theta) / N,   L_b = loss_fn(model(x_b; theta), y_b)   (a batch mean)
    H v      = sum_b n_b (d^2 L_b / d theta^2) v / N,   v, Hv: (p,)

so a ragged last batch carries its true weight n_b / N. Without a cached graph (below) each
chunk's graph is freed before the next, so memory is one chunk's double-backward graph plus O(p),
whatever the data size.

Everything runs on a *functional copy*: ``torch.func.functional_call`` with a snapshot of the
parameters (cast to ``dtype`` if given) and the module's buffers. During a call every submodule's
``.training`` flag is temporarily False (dropout and other stochastic layers are deterministic,
since the Hessian of a random loss is not an operator) and restored afterwards; the global RNG
state is forked and restored; ``.grad`` fields are never written.

BatchNorm is the caller's explicit choice (``bn_mode``, required when the model has BatchNorm):

* ``"eval"``: normalise with the running statistics (the deployed function).
* ``"train"``: normalise each chunk with its own batch statistics (the loss SGD trains); the
  running statistics are neither used nor updated. The Hessian then depends on how the data is
  chunked: use one chunk per training batch to match the loss being trained.

HVP method (``method="auto"`` picks per case; ``benchmarks/curvature.py`` times them).
On CPU, reverse-over-reverse (double backward) is faster than forward-over-reverse
(``torch.func.jvp`` of ``torch.func.grad``) on MLPs and on conv nets in float32; on small conv nets
in float64 forward-over-reverse wins (float64 convolution backward-of-backward is slow on CPU).
So ``auto`` = ``"rev_rev"`` except conv nets in float64, which get ``"fwd_rev"``; the difference is
modest either way. Both give the same H v up to rounding (tested against the dense Hessian).

Cached gradient graph (``cache_graph``; on by default when the data is one chunk). A product
recomputes forward pass + gradient + one backward pass through the gradient, but only the last
depends on v. With the cache, forward pass and gradient (``create_graph=True``) are taken once per
chunk and every product is a single backward pass through the kept graph (``retain_graph``).
It is faster than both methods in every case ``benchmarks/curvature.py`` measures (MLP and
CIFAR ResNet-18, float32 and float64), so a cached operator always uses it (``method`` then only
matters for the one-off products of uncached chunks). The price is memory: the kept graph (the
activations a product needs anyway) lives as long as the operator, or until
:meth:`HessianOperator.clear_cache`; with ``cache_graph=True`` and many chunks it grows with the
data, so the default caches a single chunk only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch.func import functional_call, grad, jvp
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.metrics.curvature._common import (
    LOSS_REDUCTION,
    check_positive_int,
    make_generator,
)

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

__all__ = ["BNMode", "FunctionalLoss", "GradGraph", "HVPMethod", "HessianOperator", "fixed_subset"]

BNMode = Literal["eval", "train"]
HVPMethod = Literal["auto", "rev_rev", "fwd_rev"]
Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_BN_MODES = ("eval", "train")
_METHODS = ("auto", "rev_rev", "fwd_rev")
# Batch-statistics buffers of a BatchNorm layer; dropping them makes it normalise with the
# batch's own statistics and update nothing (documented _BatchNorm behaviour).
_BN_STAT_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _is_batch(data) -> bool:
    return (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data))


def _check_batch(batch, where: str) -> Batch:
    if not _is_batch(batch):
        raise ConfigError(f"{where}: expected a batch (x, y) of two tensors, got {type(batch).__name__}")
    x, y = batch
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
        raise ConfigError(
            f"{where}: x and y must have the same non-zero leading (example) dimension, got shapes "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )
    return x, y


class _Data:
    """Re-iterable chunks of the data: one batch, an iterable of batches, or a fixed subset."""

    def __init__(self, data, chunk_size: int | None):
        if chunk_size is not None:
            check_positive_int("chunk_size", chunk_size)
        self.chunk_size = chunk_size
        if _is_batch(data):
            self._source: Iterable = [tuple(data)]
        elif isinstance(data, (str, bytes, dict, torch.Tensor)) or not hasattr(data, "__iter__"):
            raise ConfigError(
                f"data must be a batch (x, y) of tensors or an iterable of such batches "
                f"(list, DataLoader), got {type(data).__name__}"
            )
        elif iter(data) is data:  # one-shot iterator: keep its batches for repeated passes
            self._source = list(data)
        else:
            self._source = data

    def __iter__(self):
        empty = True
        for i, batch in enumerate(self._source):
            x, y = _check_batch(batch, f"data batch {i}")
            empty = False
            step = self.chunk_size or len(x)
            for start in range(0, len(x), step):
                yield x[start:start + step], y[start:start + step]
        if empty:
            raise ConfigError("data holds no batches; the Hessian of an empty loss is undefined")

    @property
    def single_chunk(self) -> bool:
        if not isinstance(self._source, list) or len(self._source) != 1:
            return False
        return self.chunk_size is None or len(self._source[0][0]) <= self.chunk_size


def _resolve_dtype(dtype, model_dtype: torch.dtype) -> torch.dtype:
    if dtype is None:
        return model_dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ConfigError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
    return dtype


class FunctionalLoss:
    """The mean loss as a pure function of a flat parameter vector, theta (p,) -> scalar.

    Holds a snapshot of the trainable parameters (``theta``, cast to ``dtype``), the frozen
    parameters and buffers as constants, and the BatchNorm choice. The module is only used
    as the computation graph for ``functional_call``; its state is never modified.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, *, bn_mode: BNMode | None = None,
                 dtype: torch.dtype | None = None, method: HVPMethod = "auto"):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ConfigError(f"loss_fn must be callable (output, y) -> mean loss, got {loss_fn!r}")
        bn_layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
        if bn_mode is not None and bn_mode not in _BN_MODES:
            raise ConfigError(choices_message("bn_mode", bn_mode, _BN_MODES))
        if bn_layers and bn_mode is None:
            raise ConfigError(
                f"the model has BatchNorm ({bn_layers[0][0] or 'root'}); pass bn_mode='eval' (running "
                f"statistics) or bn_mode='train' (batch statistics, running statistics untouched)"
            )
        if method not in _METHODS:
            raise ConfigError(choices_message("HVP method", method, _METHODS))
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("the model has no parameter with requires_grad=True; nothing to differentiate")
        self.model = model
        self.loss_fn = loss_fn
        self.bn_mode = bn_mode
        self.dtype = _resolve_dtype(dtype, trainable[0][1].dtype)
        self.names = [n for n, _ in trainable]
        self.shapes = [p.shape for _, p in trainable]
        self.sizes = [p.numel() for _, p in trainable]
        # torch.cat copies: theta is a snapshot, later in-place optimizer steps do not leak in.
        self.theta = torch.cat([p.detach().reshape(-1).to(self.dtype) for _, p in trainable])
        self.device = self.theta.device
        names = set(self.names)
        consts = {n: p.detach() for n, p in model.named_parameters() if n not in names}
        consts.update({n: b.detach() for n, b in model.named_buffers()})
        self.constants = {n: (t.to(self.dtype) if t.is_floating_point() else t) for n, t in consts.items()}
        if bn_mode == "train":
            for prefix, _ in bn_layers:
                for stat in _BN_STAT_BUFFERS:
                    key = f"{prefix}.{stat}" if prefix else stat
                    if key in self.constants:
                        self.constants[key] = None
        has_conv = any(isinstance(m, _ConvNd) for m in model.modules())
        if method == "auto":
            method = "fwd_rev" if (has_conv and self.dtype == torch.float64) else "rev_rev"
        self.method = method
        self._cuda = [self.device.index or 0] if self.device.type == "cuda" else []

    @property
    def dim(self) -> int:
        return self.theta.numel()

    @contextlib.contextmanager
    def context(self):
        """Deterministic layers, forked RNG, grad enabled; flags restored exactly afterwards."""
        flags = [(m, m.training) for m in self.model.modules()]
        try:
            with torch.random.fork_rng(devices=self._cuda), torch.enable_grad():
                for m, _ in flags:
                    # The attribute, not .eval(): a user override of train() may have side effects.
                    m.training = False
                yield
        finally:
            for m, was in flags:
                m.training = was

    def prepare(self, x: torch.Tensor, y: torch.Tensor) -> Batch:
        x = x.to(self.device, self.dtype) if x.is_floating_point() else x.to(self.device)
        y = y.to(self.device, self.dtype) if y.is_floating_point() else y.to(self.device)
        return x, y

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}

    def output(self, theta: torch.Tensor, x: torch.Tensor):
        """model(x; theta) on the functional copy (forward hooks fire); call inside :meth:`context`."""
        return functional_call(self.model, {**self.unflatten(theta), **self.constants}, (x,))

    def loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar loss_fn(model(x; theta), y); call inside :meth:`context`."""
        val = self.loss_fn(self.output(theta, x), y)
        if not isinstance(val, torch.Tensor) or val.ndim != 0:
            shape = tuple(val.shape) if isinstance(val, torch.Tensor) else type(val).__name__
            raise ConfigError(f"loss_fn must return the mean loss over the batch (a scalar tensor), got {shape}")
        return val

    def value_and_grad(self, x, y) -> tuple[float, torch.Tensor]:
        """(L_b, dL_b/dtheta (p,)) for one chunk."""
        x, y = self.prepare(x, y)
        with self.context():
            th = self.theta.detach().requires_grad_(True)
            val = self.loss(th, x, y)
            (g,) = torch.autograd.grad(val, th, allow_unused=True)
        return float(val.detach()), (torch.zeros_like(self.theta) if g is None else g)

    def value(self, x, y) -> float:
        """L_b for one chunk, without building a graph."""
        x, y = self.prepare(x, y)
        with self.context(), torch.no_grad():
            return float(self.loss(self.theta, x, y))

    def grad_graph(self, x, y) -> GradGraph:
        """L_b and dL_b/dtheta for one chunk, the gradient keeping its graph for later products."""
        x, y = self.prepare(x, y)
        with self.context():
            th = self.theta.detach().requires_grad_(True)
            val = self.loss(th, x, y)
            (g,) = torch.autograd.grad(val, th, create_graph=True, allow_unused=True)
        return GradGraph(float(val.detach()), th, g)

    def grad_and_hvp(self, x, y, v: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_b, H_b v) for one chunk, both (p,); ``v=None`` means v = g_b (self-curvature)."""
        if self.method == "fwd_rev":
            x, y = self.prepare(x, y)
            with self.context():
                grad_fn = grad(lambda th: self.loss(th, x, y))
                tangent = grad_fn(self.theta) if v is None else v
                g, hv = jvp(grad_fn, (self.theta,), (tangent,))
                return g.detach(), hv.detach()
        graph = self.grad_graph(x, y)
        g = graph.gradient()
        hv = graph.hvp(g if v is None else v, retain=False)
        return g, hv


class GradGraph:
    """One chunk's loss value, parameter leaf ``theta`` (p,) and gradient g (p,) with its graph.

    ``hvp(v)`` = d(g . v)/dtheta, one backward pass through the kept graph.
    """

    def __init__(self, value: float, theta: torch.Tensor, g: torch.Tensor | None):
        self.value = value
        self.theta = theta
        self.g = g

    def gradient(self) -> torch.Tensor:
        """A copy of g (p,): the caller may modify it without touching the kept graph."""
        return torch.zeros_like(self.theta.detach()) if self.g is None else self.g.detach().clone()

    def hvp(self, v: torch.Tensor, *, retain: bool = True) -> torch.Tensor:
        hv = None
        if self.g is not None and self.g.requires_grad:  # a loss linear in theta: H = 0
            (hv,) = torch.autograd.grad(self.g, self.theta, v, retain_graph=retain, allow_unused=True)
        return torch.zeros_like(self.theta.detach()) if hv is None else hv


class HessianOperator:
    """H = d^2 L / d theta^2 at the parameters snapshotted at construction, as ``matvec``.

    Args:
        model: any ``torch.nn.Module``; trainable parameters (requires_grad) define theta.
        loss_fn: ``(output, y) -> scalar`` *mean* loss over the batch (e.g. F.cross_entropy).
        data: one batch ``(x, y)``, an iterable of batches (list, DataLoader; re-iterated each
            product, so a shuffling loader gives the same sum), or a fixed subset as one batch.
        bn_mode: ``"eval"`` or ``"train"``; required if the model has BatchNorm (module doc).
        dtype: compute dtype of the functional copy (e.g. torch.float64); default the model's.
        chunk_size: split every batch into chunks of at most this many examples (memory bound).
        method: ``"auto"``, ``"rev_rev"`` (double backward) or ``"fwd_rev"`` (jvp of grad), for
            products not served by a cached graph.
        cache_graph: keep each chunk's gradient graph so a product is one backward pass (module
            doc). None (default): cache when the data is a single chunk; True: cache every chunk
            (memory grows with the data); False: recompute every product.

    ``n_hvp`` counts products (one per vector, whatever the number of chunks).
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data, *, bn_mode: BNMode | None = None,
                 dtype: torch.dtype | None = None, chunk_size: int | None = None,
                 method: HVPMethod = "auto", cache_graph: bool | None = None):
        self._init(FunctionalLoss(model, loss_fn, bn_mode=bn_mode, dtype=dtype, method=method),
                   _Data(data, chunk_size), cache_graph)

    def _init(self, fn: FunctionalLoss, data: _Data, cache_graph: bool | None) -> None:
        if cache_graph is not None and not isinstance(cache_graph, bool):
            raise ConfigError(f"cache_graph must be True, False or None (auto), got {cache_graph!r}")
        self.fn = fn
        self.data = data
        self.n_hvp = 0
        self.loss_reduction = LOSS_REDUCTION
        self.cache_graph = data.single_chunk if cache_graph is None else cache_graph
        self._graphs: list[tuple[int, GradGraph]] | None = None

    def with_data(self, data, chunk_size: int | None = None, cache_graph: bool | None = None) -> HessianOperator:
        """The Hessian at the same parameters on other data (shares the snapshot, new counter)."""
        op = object.__new__(HessianOperator)
        op._init(self.fn, _Data(data, chunk_size), cache_graph)
        return op

    def clear_cache(self) -> None:
        """Free the kept gradient graphs (rebuilt on the next product if ``cache_graph``)."""
        self._graphs = None

    def _cached(self) -> list[tuple[int, GradGraph]]:
        if self._graphs is None:
            self._graphs = [(len(x), self.fn.grad_graph(x, y)) for x, y in self.data]
        return self._graphs

    dim = property(lambda self: self.fn.dim, doc="p, the number of trainable parameters")
    dtype = property(lambda self: self.fn.dtype)
    device = property(lambda self: self.fn.device)
    method = property(lambda self: self.fn.method)
    bn_mode = property(lambda self: self.fn.bn_mode)
    shape = property(lambda self: (self.fn.dim, self.fn.dim))

    @property
    def theta(self) -> torch.Tensor:
        """Copy of the flat parameter snapshot, (p,)."""
        return self.fn.theta.clone()

    def unflatten(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat (p,) vector into tensors shaped like the named parameters."""
        return self.fn.unflatten(self._check_vec(v))

    def _check_vec(self, v) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.shape != (self.dim,):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ConfigError(f"expected a flat vector of shape ({self.dim},), got {got}")
        return v.to(self.device, self.dtype)

    def _weighted(self, per_chunk, per_graph=None):
        """sum_b n_b f(x_b, y_b) / N over the chunks, for f returning tensors or floats;
        ``per_graph(graph)`` replaces f on the cached graphs when the cache is on."""
        if self.cache_graph and per_graph is not None:
            items = ((w, per_graph(gr)) for w, gr in self._cached())
        else:
            items = ((len(x), per_chunk(x, y)) for x, y in self.data)
        first, total, n = None, None, 0
        for w, out in items:
            n += w
            if first is None:  # kept unscaled: a lone chunk needs no weighting (w / N = 1)
                first = (w, list(out))
                continue
            if total is None:
                total = [t * first[0] for t in first[1]]
            total = [t + o * w for t, o in zip(total, out)]
        return first[1] if total is None else [t / n for t in total]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H v, (p,) -> (p,)."""
        v = self._check_vec(v)
        (hv,) = self._weighted(lambda x, y: (self.fn.grad_and_hvp(x, y, v)[1],),
                               lambda gr: (gr.hvp(v),))
        self.n_hvp += 1
        return hv

    __matmul__ = matvec

    def gradient(self) -> torch.Tensor:
        """Full gradient dL/dtheta, (p,)."""
        return self._weighted(lambda x, y: (self.fn.value_and_grad(x, y)[1],), lambda gr: (gr.gradient(),))[0]

    def loss(self) -> float:
        """The weighted mean loss L (from the cached graphs once they exist)."""
        per_graph = (lambda gr: (gr.value,)) if self._graphs is not None else None
        return float(self._weighted(lambda x, y: (self.fn.value(x, y),), per_graph)[0])

    def gradient_and_hvp(self, v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, H v); ``v=None`` gives (g, H g) in one pass when the data is a single chunk."""
        if self.cache_graph:
            g = self.gradient()
            return g, self.matvec(g if v is None else v)
        if v is not None or not self.data.single_chunk:
            g = self.gradient()
            return g, self.matvec(g if v is None else v)
        (x, y), = list(self.data)
        g, hg = self.fn.grad_and_hvp(x, y, None)
        self.n_hvp += 1
        return g, hg

    def as_linear_operator(self) -> LinearOperator:
        """scipy view (float64 numpy in and out) for ``scipy.sparse.linalg`` solvers."""

        def mv(a):
            a = np.asarray(a, dtype=np.float64).reshape(-1)
            out = self.matvec(torch.from_numpy(a).to(self.device, self.dtype))
            return out.detach().to("cpu", torch.float64).numpy()

        # imported here: scipy.sparse.linalg would otherwise add to every run's start
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.dim, self.dim), matvec=mv, rmatvec=mv, dtype=np.float64)


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int, *, generator: torch.Generator | None = None,
                 seed: int = 0) -> Batch:
    """A fixed random subset of n examples (sorted indices), e.g. the 5000 images EoS uses."""
    _check_batch((x, y), "fixed_subset")
    check_positive_int("n", n)
    if n > len(x):
        raise ConfigError(f"n={n} exceeds the {len(x)} examples available")
    gen = make_generator(generator, seed)
    idx = torch.randperm(len(x), generator=gen, device=gen.device)[:n].sort().values.to(x.device)
    return x[idx], y[idx.to(y.device)]
