"""Rank of the per-example Jacobian ``phi_theta(X)`` of any model, single or batched over runs.

Definition
----------
For a model ``h_theta`` and inputs ``X = (x_1, ..., x_n)``, ``phi_theta(X) in R^{(n k) x p}``
stacks the per-example gradients ``grad_theta h_theta(x_i)`` (``p`` = number of trainable
parameters). For vector outputs (``k > 1`` outputs per example) each output gives one row; rows
are ordered example-major (row ``i k + o`` is output ``o`` of example ``i``). Columns follow the
order of the ``params`` dict, each parameter flattened in C order.

``rank = #{ s : s > rtol * s_max }`` over the singular values of ``phi`` (0 if ``phi = 0``);
the paper uses ``rtol = 1e-4`` for ReLU nets.

How it is computed
------------------
``phi`` comes from ``torch.func``: ``vmap`` over examples of ``jacrev`` of a one-example
``functional_call``, i.e. one batched reverse pass per output instead of one Python-level
backward pass per example. The rank uses either

* ``"svd"``: singular values of ``phi`` (cost ~ N p min(N, p)), or
* ``"gram"``: ``eigvalsh`` of the smaller Gram matrix (``phi phi^T`` if ``N <= p`` else
  ``phi^T phi``), ``lambda > rtol^2 lambda_max``. Forming the Gram is a BLAS-3 matmul and the
  symmetric eigensolver is cheaper than an SVD, but the Gram *squares the condition number*:
  eigenvalues carry absolute error ~ eps * lambda_max, so singular value ratios below
  ~sqrt(eps) ~ 1e-8 (float64) are noise. Measured on 300 x 400 matrices with known spectra
  (float64): at s / s_max = 1e-6 the Gram's singular values are off by ~1e-6 relative, at 1e-7
  by ~5e-4, at 1e-8 by ~20%. Hence ``"auto"`` uses the Gram only when
  ``rtol >= GRAM_MIN_RTOL = 1e-6`` (one decade of margin), the SVD otherwise.

The linear algebra always runs in float64 (a float32 ``phi`` is cast first), which costs
little next to building ``phi`` and keeps the Gram path meaningful at ``rtol = 1e-4``.
Note that a float32 ``phi`` itself carries relative errors ~1e-7, so ``rtol`` much below ~1e-6
is meaningless for float32 models whatever the method.

Diverged runs: the batched functions return NaN for a run whose ``phi`` has a non-finite
entry; the single-run functions raise ``ValueError`` instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

__all__ = [
    "DEFAULT_RTOL",
    "GRAM_MIN_RTOL",
    "jacobian_rank",
    "jacobian_rank_batched",
    "jacobian_rank_fn",
    "matrix_rank",
    "model_jacobian",
    "per_example_jacobian",
    "per_example_jacobian_batched",
]

DEFAULT_RTOL = 1e-4  # the paper's threshold for ReLU nets
GRAM_MIN_RTOL = 1e-6  # below this the Gram matrix loses the singular values (see docstring)

Method = Literal["auto", "svd", "gram"]
_METHODS = ("auto", "svd", "gram")
ModelFn = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def _check_rank_args(rtol: float, method: str) -> None:
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not (0.0 <= rtol < 1.0):
        raise ValueError(f"rtol must be a number in [0, 1), got {rtol!r}")
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(_METHODS)}")
    if method == "gram" and rtol < GRAM_MIN_RTOL:
        raise ValueError(
            f"method='gram' squares the condition number and cannot resolve rtol={rtol:g} "
            f"< {GRAM_MIN_RTOL:g}; use method='svd' or 'auto'"
        )


def _check_params(params: Mapping[str, Tensor], what: str) -> None:
    if not isinstance(params, Mapping) or not params:
        raise ValueError(f"{what} must be a non-empty dict name -> Tensor, got {params!r}")
    for name, value in params.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"{what}[{name!r}] must be a Tensor, got {type(value).__name__}")


def per_example_jacobian(
    fn: ModelFn, params: Mapping[str, Tensor], x: Tensor, *, chunk_size: int | None = None
) -> Tensor:
    """``phi`` of one run: ``(n * k, p)``.

    fn: ``fn(params, xb) -> outputs`` for a batch ``xb`` of shape ``(b, *in_shape)``; outputs
        ``(b,)`` or ``(b, *out_shape)`` with ``k = prod(out_shape)``. Must treat examples
        independently (no batch statistics).
    params: dict name -> tensor (the differentiated parameters).
    x: ``(n, *in_shape)``.
    chunk_size: passed to the example ``vmap`` to bound memory (None = all examples at once).
    """
    _check_params(params, "params")
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be a Tensor of shape (n, ...) with n >= 1, got {x!r:.80}")

    def one(p, xi):
        return fn(p, xi.unsqueeze(0)).reshape(-1)  # (k,)

    jac = vmap(jacrev(one), in_dims=(None, 0), chunk_size=chunk_size)(dict(params), x)
    n = x.shape[0]
    blocks = [j.reshape(n, j.shape[1], -1) for j in jac.values()]  # (n, k, p_name)
    phi = torch.cat(blocks, dim=-1)
    return phi.reshape(n * phi.shape[1], phi.shape[2])


def per_example_jacobian_batched(
    fn: ModelFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    *,
    x_per_run: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    """``phi`` of R runs: params have a leading run dim ``(R, ...)``; returns ``(R, n * k, p)``.

    x: ``(n, *in_shape)`` shared by all runs, or ``(R, n, *in_shape)`` with ``x_per_run=True``.
    """
    _check_params(params, "params")
    sizes = {v.shape[0] if v.dim() else None for v in params.values()}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"every batched parameter needs the same leading run dim R, got {sizes}")
    if x_per_run and x.shape[0] not in sizes:
        raise ValueError(f"x_per_run=True needs x of shape (R, n, ...) with R={sizes}, got {tuple(x.shape)}")
    return vmap(
        lambda p, xr: per_example_jacobian(fn, p, xr, chunk_size=chunk_size),
        in_dims=(0, 0 if x_per_run else None),
    )(dict(params), x)


def _module_fn_and_params(model: nn.Module) -> tuple[ModelFn, dict[str, Tensor]]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def fn(p, xb):
        # Frozen parameters are not in p: functional_call keeps the module's own for them.
        return functional_call(model, (p, buffers), (xb,))

    return fn, params


def model_jacobian(model: nn.Module, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """``phi`` ``(n * k, p)`` of an ``nn.Module`` w.r.t. its trainable parameters, in its
    current mode (use ``eval()`` for models with batch norm)."""
    fn, params = _module_fn_and_params(model)
    return per_example_jacobian(fn, params, x, chunk_size=chunk_size)


def matrix_rank(phi: Tensor, rtol: float = DEFAULT_RTOL, method: Method = "auto") -> Tensor:
    """Relative-threshold rank of ``phi`` ``(..., N, p)`` -> float64 ``(...)``.

    Integer values, NaN where a matrix has a non-finite entry. See module docstring for methods.
    """
    _check_rank_args(rtol, method)
    if not isinstance(phi, Tensor) or phi.dim() < 2:
        raise ValueError(f"phi must be a Tensor of shape (..., N, p), got {phi!r:.80}")
    phi = phi.to(torch.float64)
    finite = torch.isfinite(phi).flatten(-2).all(-1)
    phi = torch.where(finite[..., None, None], phi, torch.zeros_like(phi))
    use_gram = method == "gram" or (method == "auto" and rtol >= GRAM_MIN_RTOL)
    N, p = phi.shape[-2:]
    if use_gram:
        gram = phi @ phi.mT if N <= p else phi.mT @ phi
        lam = torch.linalg.eigvalsh(gram)  # ascending
        top = lam[..., -1:].clamp_min(0.0)
        rank = ((lam > rtol**2 * top) & (top > 0)).sum(-1)
    else:
        s = torch.linalg.svdvals(phi)  # descending
        top = s[..., :1]
        rank = ((s > rtol * top) & (top > 0)).sum(-1)
    return torch.where(finite, rank.to(torch.float64), torch.full_like(rank, math.nan, dtype=torch.float64))


def _single_rank(phi: Tensor, rtol: float, method: Method) -> int:
    rank = matrix_rank(phi, rtol, method)
    if torch.isnan(rank):
        raise ValueError("the Jacobian phi has non-finite entries (diverged parameters?); rank undefined")
    return int(rank.item())


def jacobian_rank(
    model: nn.Module,
    x: Tensor,
    rtol: float = DEFAULT_RTOL,
    *,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> int:
    """Rank of ``phi_theta(x)`` for any ``nn.Module`` (trainable parameters, current mode)."""
    _check_rank_args(rtol, method)
    return _single_rank(model_jacobian(model, x, chunk_size=chunk_size), rtol, method)


def jacobian_rank_fn(
    fn: ModelFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    rtol: float = DEFAULT_RTOL,
    *,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> int:
    """Rank of ``phi`` for a functional model ``fn(params, xb) -> outputs`` of one run."""
    _check_rank_args(rtol, method)
    return _single_rank(per_example_jacobian(fn, params, x, chunk_size=chunk_size), rtol, method)


def jacobian_rank_batched(
    fn: ModelFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    rtol: float = DEFAULT_RTOL,
    *,
    method: Method = "auto",
    x_per_run: bool = False,
    run_chunk: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Ranks of R runs: params ``(R, ...)``; returns float64 ``(R,)`` (NaN for diverged runs).

    run_chunk: number of runs whose ``phi`` (each ``(n k) x p``) is held at once (None = all).
    """
    _check_rank_args(rtol, method)
    _check_params(params, "params")
    if run_chunk is not None and (isinstance(run_chunk, bool) or not isinstance(run_chunk, int) or run_chunk < 1):
        raise ValueError(f"run_chunk must be a positive int or None, got {run_chunk!r}")
    R = next(iter(params.values())).shape[0]
    step = run_chunk or R
    out = []
    for start in range(0, R, step):
        sl = slice(start, start + step)
        sub = {k: v[sl] for k, v in params.items()}
        phi = per_example_jacobian_batched(
            fn, sub, x[sl] if x_per_run else x, x_per_run=x_per_run, chunk_size=chunk_size
        )
        out.append(matrix_rank(phi, rtol, method))
    return torch.cat(out)
