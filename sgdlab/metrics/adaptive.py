"""Edge of stability of adaptive optimizers: the preconditioned sharpness and its threshold.

For an update theta <- theta - eta P^-1 m with a diagonal preconditioner P (Adam, AdamW,
RMSprop), the curvature that decides stability is the *preconditioned sharpness*
lambda_max(P^-1 H) (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability"),
equal to lambda_max(P^-1/2 H P^-1/2), which is symmetric (Lanczos applies). P is read from the
optimizer's second-moment state, exactly as its next step would use it:

* Adam / AdamW: P = sqrt(v_hat) + eps, v_hat = exp_avg_sq / (1 - beta2^t) (``max_exp_avg_sq``
  with amsgrad); threshold (2 + 2 beta1) / ((1 - beta1) eta) -- the edge of gradient descent with
  EMA momentum on a quadratic (38/eta at beta1 = 0.9).
* RMSprop: P = sqrt(square_avg) + eps (centered: sqrt(square_avg - grad_avg^2) + eps), no bias
  correction (PyTorch applies none); threshold 2/eta without momentum, (2 + 2 mu)/eta with
  heavy-ball momentum mu.

Before the first step (no state yet) P is not defined: the probe records NaN. Coupled weight
decay (Adam's and RMSprop's ``weight_decay``: the gradient is g + wd theta) is part of the
objective the preconditioner sees, so the operator is P^-1 (H + wd I). AdamW's decoupled decay
(theta <- (1 - eta wd) theta) only contracts: it is left out (it moves the edge by O(eta wd)).

Param groups with different step sizes or betas (one reduction, exact for the update): with
c_g = the momentum factor of group g ((2 + 2 beta1)/(1 - beta1) for Adam) and the reference group
r = the one with the largest eta_g / c_g (the most unstable), every coordinate i of group g gets
s_i = (eta_g / eta_r) (c_r / c_g) / P_i, and the logged ``preconditioned_sharpness`` =
lambda_max(S^1/2 (H + W) S^1/2) is compared with the single threshold c_r / eta_r: coordinate by
coordinate the linearised update is stable iff eta_g / c_g P_i^-1 (H + W) is below 1, i.e. iff
the reduced operator is below c_r/eta_r. With one group this is lambda_max(P^-1 H) against the
paper's threshold. Groups with lr 0 contribute s = 0 (frozen); all lr 0: threshold inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["ADAPTIVE", "AdaptiveEdge", "PreconditionedOperator", "adaptive_edge", "is_adaptive"]

# Optimizer classes whose preconditioner we read (by class name: subclasses of torch's keep its state keys).
ADAPTIVE = ("Adam", "AdamW", "RMSprop")


def is_adaptive(optimizer) -> bool:
    """True for an optimizer whose update is preconditioned by a second-moment state (module doc)."""
    return optimizer is not None and any(c.__name__ in ADAPTIVE for c in type(optimizer).__mro__)


def _kind(optimizer) -> str:
    return next(c.__name__ for c in type(optimizer).__mro__ if c.__name__ in ADAPTIVE)


def _factor(kind: str, group: dict) -> float:
    """c_g: threshold x eta of one group (module doc)."""
    if kind == "RMSprop":
        mu = float(group.get("momentum", 0.0))
        return 2.0 + 2.0 * mu
    beta1 = float(group["betas"][0])
    return (2.0 + 2.0 * beta1) / (1.0 - beta1) if beta1 < 1 else math.inf


def _sqrt_second_moment(kind: str, group: dict, state: dict) -> torch.Tensor | None:
    """P - eps for one parameter, or None before its first step."""
    if kind == "RMSprop":
        if "square_avg" not in state:
            return None
        v = state["square_avg"]
        if group.get("centered", False):
            v = v - state["grad_avg"] ** 2
        return v.sqrt()
    if "exp_avg_sq" not in state:
        return None
    v = state["max_exp_avg_sq"] if group.get("amsgrad", False) else state["exp_avg_sq"]
    t = float(state["step"])
    beta2 = float(group["betas"][1])
    return (v / (1.0 - beta2 ** t)).sqrt()


@dataclass(frozen=True)
class AdaptiveEdge:
    """The reduced preconditioner and threshold (module doc).

    scale: s (p,) float64 in the order of ``names`` (None before the first step); decay: coupled
    weight decay per coordinate (p,) float64; threshold: c_r / eta_r (inf when every lr is 0,
    NaN when a step size is negative); lr, beta1: of the reference group.
    """

    scale: torch.Tensor | None
    decay: torch.Tensor
    threshold: float
    lr: float
    beta1: float


def adaptive_edge(optimizer, named_params: list[tuple[str, torch.Tensor]]) -> AdaptiveEdge:
    """The reduction of the module doc for ``named_params`` (the trainable parameters, in the
    order of the flat parameter vector); parameters the optimizer does not hold get s = 0."""
    kind = _kind(optimizer)
    where = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    groups = [g for g in optimizer.param_groups if g["params"]]
    lrs = [float(g["lr"]) for g in groups]
    momentum = (lambda g: float(g.get("momentum", 0.0))) if kind == "RMSprop" else (lambda g: float(g["betas"][0]))
    if any(lr < 0 or not math.isfinite(lr) for lr in lrs):
        ref = groups[0]
        return AdaptiveEdge(None, torch.zeros(0), math.nan, lrs[0], momentum(ref))
    ratio = [lr / _factor(kind, g) for lr, g in zip(lrs, groups)]  # eta_g / c_g
    r = max(range(len(groups)), key=lambda i: ratio[i])
    threshold = 1.0 / ratio[r] if ratio[r] > 0 else math.inf
    scales, decays, missing = [], [], False
    for _, prm in named_params:
        g = where.get(id(prm))
        n = prm.numel()
        if g is None:  # not optimised: it never moves
            scales.append(torch.zeros(n, dtype=torch.float64, device=prm.device))
            decays.append(torch.zeros(n, dtype=torch.float64, device=prm.device))
            continue
        coupled = kind == "RMSprop" or (kind == "Adam" and not g.get("decoupled_weight_decay", False))
        decays.append(torch.full((n,), float(g.get("weight_decay", 0.0)) if coupled else 0.0,
                                 dtype=torch.float64, device=prm.device))
        root = _sqrt_second_moment(kind, g, optimizer.state.get(prm, {}))
        if root is None:
            missing = True
            continue
        rel = (float(g["lr"]) / _factor(kind, g)) / ratio[r] if ratio[r] > 0 else 1.0
        scales.append(rel / (root.detach().reshape(-1).double() + float(g["eps"])))
    cat = (lambda ts: torch.cat(ts) if ts else torch.zeros(0, dtype=torch.float64))
    return AdaptiveEdge(None if missing else cat(scales), cat(decays), threshold, lrs[r], momentum(groups[r]))


class PreconditionedOperator:
    """S^1/2 (H + W) S^1/2 as a symmetric operator (``matvec``), from a Hessian operator ``op``,
    the scale s (p,) and the coupled decay w (p,) of :class:`AdaptiveEdge`; its eigenvalues are
    those of S (H + W)."""

    def __init__(self, op, scale: torch.Tensor, decay: torch.Tensor):
        self.op = op
        self.root = scale.sqrt().to(op.device, op.dtype)
        self.decay = decay.to(op.device, op.dtype)
        self.dim, self.dtype, self.device = op.dim, op.dtype, op.device
        self.loss_reduction = op.loss_reduction

    @property
    def n_hvp(self) -> int:
        return self.op.n_hvp

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        u = self.root * v.to(self.dtype)
        return self.root * (self.op.matvec(u) + self.decay * u)
