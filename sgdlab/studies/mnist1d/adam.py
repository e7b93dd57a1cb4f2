"""The ``adam`` optimizer kind (Kingma & Ba; PyTorch's ``torch.optim.Adam`` update), the MNIST-1D
benchmark's optimizer (its ``notebooks/train.py``: Adam, learning rate 1e-2, no weight decay,
batch 100). Per run r and parameter tensor, with the step's learning rate eta_t = lr_t[r]:

    g <- g + weight_decay * theta                  (explicit L2, as torch.optim.Adam)
    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2,   k <- k + 1
    theta <- theta - eta_t * (m / (1 - beta1^k)) / (sqrt(v / (1 - beta2^k)) + eps)

``m, v`` (same shapes as the parameters) and the per-run update count ``k (R,)`` are optimizer
state: checkpointed with the run, reset at the start of a phase. A frozen (diverged) run's
parameters and state stay as they are. Registered through :func:`sgdlab.register_optimizer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.frontends.register import register_optimizer
from sgdlab.optim.base import Optimizer, OptimizerConfig
from sgdlab.optim.config import _batch_sampler

COUNT = "adam_count"  # state key of the per-run update count k (R,)


@dataclass
class AdamOptimizer(Optimizer):
    """The runtime of :class:`AdamConfig` (module doc); never plain, so no fused kernel runs it."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    @property
    def plain_update(self) -> bool:
        return False

    def init_state(self, params, grad_keys):
        keys = list(grad_keys)
        st = {}
        for k in keys:
            st["adam_m:" + k] = torch.zeros_like(params[k])
            st["adam_v:" + k] = torch.zeros_like(params[k])
        st[COUNT] = torch.zeros(params[keys[0]].shape[0], dtype=params[keys[0]].dtype,
                                device=params[keys[0]].device)
        return st

    def update(self, params, grads, state, step, alive) -> None:
        k = state[COUNT]
        k.add_(alive.to(k.dtype))
        # bias corrections per run (a frozen run's values do not matter: its step is 0)
        c1 = 1 - self.beta1 ** k.clamp(min=1)
        c2 = 1 - self.beta2 ** k.clamp(min=1)
        for name, g in grads.items():
            p = params[name]
            sh = (-1,) + (1,) * (p.dim() - 1)
            a = alive.view(sh)
            if self.weight_decay:
                g = g + self.weight_decay * p
            g = torch.where(a, g, 0.0)
            m, v = state["adam_m:" + name], state["adam_v:" + name]
            m.copy_(torch.where(a, self.beta1 * m + (1 - self.beta1) * g, m))
            v.copy_(torch.where(a, self.beta2 * v + (1 - self.beta2) * g * g, v))
            denom = (v / c2.view(sh)).sqrt_().add_(self.eps)
            p.addcdiv_(m * (step / c1).view(sh), denom, value=-1)


@register_optimizer("adam")
@dataclass(frozen=True)
class AdamConfig(OptimizerConfig):
    """Adam on mini-batches (module doc); ``replacement = false`` is random reshuffling."""

    batch_size: int = 100  # the MNIST-1D benchmark's batch
    replacement: bool = False  # the benchmark walks through the training set (here: reshuffled each epoch)
    beta1: float = 0.9  # torch.optim.Adam defaults
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0  # explicit L2 added to the gradient (as torch.optim.Adam)

    def __post_init__(self):
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"betas must be in [0, 1), got {self.beta1}, {self.beta2}")
        check(self.eps > 0 and math.isfinite(self.eps), f"eps must be > 0, got {self.eps}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")

    def build(self, n, total_steps):
        return AdamOptimizer(_batch_sampler(n, self.batch_size, self.replacement), weight_decay=self.weight_decay,
                             beta1=self.beta1, beta2=self.beta2, eps=self.eps)
