"""Feature sparsity coefficient of one ReLU layer, batched over runs.

Definition (Andriushchenko et al. 2023, "SGD with large step sizes learns sparse features")
------------------------------------------------------------------------------------------
``A in R^{n x m}``: post-ReLU features of one layer on the ``n`` training inputs.

1. Optionally L2-normalise each example's feature row, ``A_i <- A_i / ||A_i||`` (toy nets do,
   deep nets don't). A zero row stays zero. Signs are unchanged, so this only affects step 3.
2. A neuron ``j`` is *dead* if it is never active: ``A_ij <= 0`` for all ``i``.
3. Greedy merge in neuron order: neuron ``j`` (alive) is kept unless
   ``|corr(A_:j, A_:k)| > tau`` for some already kept ``k < j``; otherwise it is *merged*.
   ``corr`` is the Pearson correlation over the ``n`` inputs.
4. Coefficient ``= (1/n) sum_i (1/m) sum_{j kept} 1[A_ij > 0]``; the denominator ``m`` counts
   every neuron (dead and merged ones contribute zeros).

Correlation conventions (Pearson is undefined for a zero-variance vector)
-----------------------------------------------------------------------
A neuron whose activation vector is constant over the inputs is called *constant*. An alive
constant neuron has a positive constant value, i.e. it is active on every input. We define:

* constant vs constant: ``|corr| = 1`` (both are "active everywhere with the same value", the
  same pattern up to scale), so with ``tau < 1`` only the first constant neuron is kept;
* constant vs non-constant: ``|corr| = 0`` (never merged).

"Constant" is tested with a relative tolerance: ``std_j <= CONSTANT_RTOL * rms_j`` (rms of the
column), so that rounding (e.g. after row normalisation of rows that differ only in scale) does
not turn a constant column into a noisy one with arbitrary correlations. Computed ``|corr|`` is
clamped to ``[0, 1]`` so that ``tau = 1`` never merges, even exact duplicates.

Diverged runs: if a run's ``A`` holds any non-finite entry, every output of that run is NaN.

All arithmetic is done in float64 whatever the input dtype (correlations near ``tau`` decide
discrete outcomes, so we want them as exact as cheaply possible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "CONSTANT_RTOL",
    "DEEP_MAX_NEURONS",
    "TAU_DEEP",
    "TAU_REGRESSION_1D",
    "TAU_SHALLOW",
    "SparsityResult",
    "effective_rank",
    "feature_sparsity",
]

# Merge thresholds used in the paper.
TAU_REGRESSION_1D = 0.999  # 1-D regression two-layer net
TAU_SHALLOW = 0.99  # two/three-layer teacher-student nets
TAU_DEEP = 0.95  # deep nets (ResNets etc.)
# Deep nets: above this many neurons a random subset of this size is used.
DEEP_MAX_NEURONS = 1000
# A column with std <= CONSTANT_RTOL * rms is "constant" (see module docstring). 1e-10 is far above
# float64 rounding of a mean/variance (~1e-16 relative) and far below any real variation.
CONSTANT_RTOL = 1e-10
# Bound on the (runs x m x m) correlation tensor held at once: 2**24 float64 = 128 MiB.
_MAX_CORR_ELEMENTS = 2**24


@dataclass(frozen=True)
class SparsityResult:
    """Outputs of :func:`feature_sparsity`; each tensor has shape ``(R,)`` (``()`` for 2-D input).

    All are float64 so that diverged runs can be NaN; counts hold integer values.

    coefficient:       merged sparsity coefficient (fraction in [0, 1]).
    positive_fraction: raw fraction of positive activations, ``mean_ij 1[A_ij > 0]``.
    merged:            number of alive neurons dropped as correlated with a kept one.
    dead:              number of never-active neurons.
    effective_rank:    ``exp(H(p))``, ``p_k = s_k / sum s`` over the singular values of the
                       (row-normalised, sub-sampled if requested) feature matrix; 0 if it is zero.
    kept:              ``(R, m')`` bool mask of kept neurons (``(m',)`` for 2-D input), over the
                       ``m'`` neurons used (after sub-sampling); all False for a diverged run.
    neuron_index:      ``(m',)`` int64 indices of the neurons used, into the input's last dim.
    """

    coefficient: Tensor
    positive_fraction: Tensor
    merged: Tensor
    dead: Tensor
    effective_rank: Tensor
    kept: Tensor
    neuron_index: Tensor


def _check_inputs(A, tau, max_neurons, generator) -> Tensor:
    if isinstance(A, np.ndarray):
        A = torch.from_numpy(A)
    if not isinstance(A, Tensor):
        raise TypeError(f"activations must be a torch.Tensor or numpy array, got {type(A).__name__}")
    if A.dim() not in (2, 3):
        raise ValueError(f"activations must have shape (n, m) or (R, n, m), got shape {tuple(A.shape)}")
    if A.shape[-2] < 2:
        raise ValueError(f"need at least 2 inputs (n >= 2) for correlations, got n={A.shape[-2]}")
    if A.shape[-1] < 1:
        raise ValueError("activations have no neurons (m = 0); need m >= 1")
    if A.is_complex():
        raise ValueError(f"activations must be real (float, int or bool), got dtype {A.dtype}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (0.0 <= tau <= 1.0):
        raise ValueError(f"tau must be a number in [0, 1], got {tau!r}")
    if max_neurons is not None:
        if isinstance(max_neurons, bool) or not isinstance(max_neurons, int) or max_neurons < 1:
            raise ValueError(f"max_neurons must be a positive int or None, got {max_neurons!r}")
        if A.shape[-1] > max_neurons and not isinstance(generator, torch.Generator):
            raise ValueError(
                f"m={A.shape[-1]} > max_neurons={max_neurons}: sub-sampling needs an explicit "
                f"torch.Generator via generator=, got {generator!r}"
            )
    return A


def effective_rank(A: Tensor) -> Tensor:
    """Effective rank ``exp(-sum_k p_k log p_k)``, ``p_k = s_k / sum_l s_l`` (Roy & Vetterli 2007).

    A: ``(..., n, m)`` -> ``(...)`` float64. A zero matrix gets 0 (no singular mass at all).
    """
    s = torch.linalg.svdvals(A.to(torch.float64))
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(torch.float64).tiny)
    # 0 log 0 = 0: xlogy does exactly that.
    h = -torch.special.xlogy(p, p).sum(-1)
    return torch.where(total.squeeze(-1) > 0, torch.exp(h), torch.zeros_like(h))


def _abs_corr(A: Tensor) -> Tensor:
    """|Pearson correlation| between columns, with the constant-column convention.

    A: (R, n, m) float64, finite -> (R, m, m) float64 in [0, 1], diagonal set to 0.
    """
    n = A.shape[-2]
    centered = A - A.mean(-2, keepdim=True)
    std = centered.pow(2).mean(-2).sqrt()  # (R, m), population std (n cancels in corr)
    rms = A.pow(2).mean(-2).sqrt()
    constant = std <= CONSTANT_RTOL * rms  # zero columns count as constant too
    z = centered / torch.where(constant, torch.ones_like(std), std).unsqueeze(-2)
    z = z.masked_fill(constant.unsqueeze(-2), 0.0)
    corr = (z.transpose(-1, -2) @ z / n).abs().clamp_(max=1.0)
    both_const = constant.unsqueeze(-1) & constant.unsqueeze(-2)
    corr = corr.masked_fill(both_const, 1.0)
    corr.diagonal(dim1=-2, dim2=-1).zero_()
    return corr


def _greedy_keep(alive: Tensor, close: Tensor) -> Tensor:
    """Exact sequential greedy merge, vectorised over runs.

    alive: (R, m) bool; close: (R, m, m) bool, close[r, j, k] = |corr| > tau.
    Neuron j is kept iff alive and not close to any kept k < j. Only earlier neurons can be
    kept before j is decided, so one pass over j (vectorised over runs) is exact.
    """
    _R, m = alive.shape
    kept = torch.zeros_like(alive)
    for j in range(m):
        blocked = (close[:, j, :j] & kept[:, :j]).any(-1)
        kept[:, j] = alive[:, j] & ~blocked
    return kept


def feature_sparsity(
    A: Tensor,
    tau: float = TAU_SHALLOW,
    *,
    normalize: bool = False,
    max_neurons: int | None = None,
    generator: torch.Generator | None = None,
    with_effective_rank: bool = True,
) -> SparsityResult:
    """Feature sparsity coefficient (merged) and companions for one layer of R runs.

    A: ``(R, n, m)`` or ``(n, m)`` post-ReLU features on the n training inputs (any real dtype,
       any device; numpy arrays are accepted).
    tau: merge threshold in [0, 1]; ``|corr| > tau`` merges (so tau = 1 never merges).
    normalize: L2-normalise each example's feature row first (the paper's toy nets).
    max_neurons: if m exceeds it, a random subset of this many neurons (shared by all runs,
       drawn with ``generator`` via ``randperm``, then sorted to keep neuron order) is used
       and every output refers to that subset (the denominator is the subset size).
    generator: explicit ``torch.Generator`` (CPU), required only when sub-sampling happens.
    with_effective_rank: compute the effective rank (an SVD of A); NaN when False.

    Returns a :class:`SparsityResult`; per-run tensors have shape ``(R,)`` or ``()``.
    Cost: one ``(R, m, m)`` correlation via batched matmul (O(R n m^2)) plus a loop over the m
    neurons that is vectorised over runs.
    """
    A = _check_inputs(A, tau, max_neurons, generator)
    single = A.dim() == 2
    A = A.unsqueeze(0) if single else A
    m_in = A.shape[-1]
    idx = torch.arange(m_in)
    if max_neurons is not None and m_in > max_neurons:
        idx = torch.randperm(m_in, generator=generator)[:max_neurons].sort().values
        A = A[..., idx.to(A.device)]
    A = A.to(torch.float64)
    R, _n, m = A.shape

    finite = torch.isfinite(A).flatten(1).all(-1)  # (R,)
    A = torch.where(finite[:, None, None], A, torch.zeros_like(A))  # diverged runs: compute on 0s
    if normalize:
        norms = torch.linalg.vector_norm(A, dim=-1, keepdim=True)
        A = A / torch.where(norms > 0, norms, torch.ones_like(norms))

    active = A > 0  # (R, n, m)
    alive = active.any(-2)  # (R, m)
    chunk = max(1, _MAX_CORR_ELEMENTS // (m * m))
    kept_parts = []
    for start in range(0, R, chunk):
        sl = slice(start, start + chunk)
        close = _abs_corr(A[sl]) > tau
        kept_parts.append(_greedy_keep(alive[sl], close))
    kept = torch.cat(kept_parts) & finite[:, None]

    nan = torch.tensor(math.nan, dtype=torch.float64, device=A.device)
    act = active.to(torch.float64)

    def per_run(x: Tensor) -> Tensor:
        x = torch.where(finite, x.to(torch.float64), nan)
        return x[0] if single else x

    result = SparsityResult(
        coefficient=per_run((act * kept[:, None, :]).mean((-2, -1))),
        positive_fraction=per_run(act.mean((-2, -1))),
        merged=per_run((alive & ~kept).sum(-1)),
        dead=per_run((~alive).sum(-1)),
        # an SVD of (n, m): skip it where only the coefficient is wanted (deep-net blocks)
        effective_rank=per_run(effective_rank(A) if with_effective_rank else torch.full((R,), math.nan,
                                                                                       dtype=torch.float64)),
        kept=kept[0] if single else kept,
        neuron_index=idx,
    )
    return result
