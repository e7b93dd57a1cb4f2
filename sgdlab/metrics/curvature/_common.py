"""Shared pieces of the curvature library: the operator protocol, generators, the loss note.

Every spectral routine (Lanczos, Hutchinson, SLQ) works on a *symmetric operator*: any object
with ``dim`` (p), ``dtype``, ``device``, ``n_hvp`` and ``matvec(v)`` mapping a ``(p,)`` tensor
to a ``(p,)`` tensor. :class:`~.hvp.HessianOperator` (a model's Hessian) and
:class:`~.dense.MatrixOperator` (an explicit matrix) both satisfy it.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

from sgdlab.core.errors import ConfigError

# Carried by every result object: the eigenvalues are those of the loss *as the caller's
# loss_fn defines it*. Scaling the loss by c scales every eigenvalue by c (docs/curvature.md).
LOSS_REDUCTION = (
    "Hessian of the mean over examples of loss_fn(model(x), y), batches weighted by their size; "
    "eigenvalues scale linearly with the loss (train c*loss_fn -> multiply by c before comparing "
    "with 2/eta)"
)


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric linear map on R^p given by matrix-vector products."""

    dim: int
    dtype: torch.dtype
    device: torch.device
    n_hvp: int
    loss_reduction: str

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # (p,) -> (p,)
        ...


def check_operator(op) -> None:
    if not isinstance(op, SymmetricOperator):
        raise ConfigError(
            f"expected a symmetric operator (HessianOperator, MatrixOperator or any object with "
            f"dim, dtype, device, n_hvp, loss_reduction and matvec), got {type(op).__name__}"
        )


def make_generator(generator: torch.Generator | None, seed: int) -> torch.Generator:
    """The caller's generator, or a fresh CPU generator seeded with ``seed`` (never global RNG)."""
    if generator is None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        return torch.Generator().manual_seed(seed)
    if not isinstance(generator, torch.Generator):
        raise ConfigError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def randn(p: int, generator: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
    """Standard normal (p,) drawn on the generator's device, then moved to ``device``."""
    return torch.randn(p, generator=generator, dtype=dtype, device=generator.device).to(device)


def rademacher(p: int, generator: torch.Generator, dtype: torch.dtype, device) -> torch.Tensor:
    """Uniform random signs, shape (p,)."""
    bits = torch.randint(0, 2, (p,), generator=generator, device=generator.device)
    return (2 * bits - 1).to(dtype=dtype, device=device)


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive_float(name: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not (value > 0 or (allow_zero and value == 0)) or math.isnan(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)
