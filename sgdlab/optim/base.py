"""The optimizer runtime (:class:`Optimizer`) and the base of the optimizer configs
(:class:`OptimizerConfig`, the ``optimizer`` table of an arm).

An optimizer is composed of small pieces, each optional:
* a *sampler* (how batches are drawn: with/without replacement, full batch);
* a *gradient rule* (the step direction when it is not the plain mini-batch gradient: label
  noise, isotropic noise, the constant-noise SDE, random labels; see ``optim.noise``);
* the *update*: explicit L2 (``weight_decay``, gradient of wd/2 |theta|^2), decoupled weight
  decay, heavy-ball momentum (PyTorch's convention b <- mu b + g, theta <- theta - lr b, or
  Nesterov's g + mu b), and an exponential moving average of the weights.

The configs themselves live in ``optim.config`` (sgd, gd), ``optim.noise`` and ``optim.sde``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sgdlab.core._torch import torch
from sgdlab.core.config import Choice
from sgdlab.core.registry import Registry
from sgdlab.optim import samplers

__all__ = ["Optimizer", "OptimizerConfig"]


@dataclass
class Optimizer:
    """The runtime of one group of runs (built by ``OptimizerConfig.build``)."""

    sampler: samplers.Sampler
    rule: object | None = None  # an optim.noise.GradientRule, or None for the plain gradient
    weight_decay: float = 0.0  # explicit L2: d += weight_decay * theta
    decoupled_weight_decay: float = 0.0  # theta <- theta - lr * decoupled_weight_decay * theta
    momentum: float = 0.0
    nesterov: bool = False
    ema: float = 0.0  # weights' EMA decay per step (0 = no EMA)

    @property
    def stochastic(self) -> bool:
        return self.sampler.stochastic or bool(getattr(self.rule, "stochastic", False))

    @property
    def plain(self) -> bool:
        """True when a step is exactly theta <- theta - lr * grad (compiled kernels may run it)."""
        return self.rule is None and self.plain_update

    @property
    def plain_update(self) -> bool:
        """True when the update is theta <- theta - lr * direction (a rule's kernel may run it)."""
        return (self.weight_decay == 0 and self.decoupled_weight_decay == 0 and self.momentum == 0
                and self.ema == 0)

    def starting_at(self, start: int) -> Optimizer:
        """This runtime as a phase that begins at absolute step ``start`` (``sgdlab.spec.phases``): what
        its rule schedules (noise levels, ...) counts steps from there; randomness stays keyed by
        the absolute step. Returns self."""
        if self.rule is not None:
            self.rule.start = start
        return self

    def init_state(self, params: dict[str, torch.Tensor], grad_keys) -> dict[str, torch.Tensor]:
        """A fresh state: momentum buffers at 0, the EMA copy at the current weights."""
        st = {}
        for k in grad_keys:
            if self.momentum:
                st["momentum:" + k] = torch.zeros_like(params[k])
            if self.ema:
                st["ema:" + k] = params[k].clone()
        return st

    def update(self, params, grads, state, step: torch.Tensor, alive: torch.Tensor) -> None:
        """In place, per run: step (R,) is lr_t (0 for frozen runs), alive (R,) bool.

        A frozen run's parameters and state do not change (its gradient, possibly non-finite,
        is replaced by 0 before use). Few kernels per parameter tensor (a GPU step launches
        them all): the masking, the momentum decay and the step are one broadcast op each; the
        sums over the parameter list are ``torch._foreach`` ops (one launch for many tensors).
        """
        keys = list(grads)
        ps = [params[k] for k in keys]
        shapes = [(-1,) + (1,) * (p.dim() - 1) for p in ps]
        gs = list(grads.values())
        if self.weight_decay:
            gs = torch._foreach_add(gs, ps, alpha=self.weight_decay)
        gs = [torch.where(alive.view(sh), g, 0.0) for g, sh in zip(gs, shapes)]
        if self.momentum:
            bs = [state["momentum:" + k] for k in keys]
            # b <- keep * b + g with keep = momentum (frozen runs: 1, and g = 0), in the run's dtype.
            keep = torch.ones_like(step).masked_fill_(alive, self.momentum)
            for b, sh in zip(bs, shapes):
                b.mul_(keep.view(sh))
            torch._foreach_add_(bs, gs)
            gs = torch._foreach_add(gs, bs, alpha=self.momentum) if self.nesterov else bs
        if self.decoupled_weight_decay:
            gs = torch._foreach_add(gs, ps, alpha=self.decoupled_weight_decay)
        for p, d, sh in zip(ps, gs, shapes):
            p.addcmul_(step.view(sh), d, value=-1)  # frozen runs: step 0, d finite
        if self.ema:
            for k, p, sh in zip(keys, ps, shapes):
                e = state["ema:" + k]
                e.copy_(torch.where(alive.view(sh), self.ema * e + (1 - self.ema) * p, e))


class OptimizerConfig(Choice):
    registry: ClassVar[Registry] = Registry("optimizer")

    def build(self, n: int, total_steps: int) -> Optimizer:  # pragma: no cover - abstract
        raise NotImplementedError

    def group_key(self) -> tuple:
        """Runs with equal keys can advance together as one batched job."""
        return (self.kind,) + tuple(sorted((k, repr(v)) for k, v in vars(self).items()))
