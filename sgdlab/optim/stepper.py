"""Advance a batch of runs by many steps: the one inner loop of the engine."""

from __future__ import annotations

import numpy as np
import torch

from sgdlab.optim.base import Optimizer
from sgdlab.optim.samplers import STREAM_AUGMENT


def advance(model, params, data, opt: Optimizer, opt_state: dict, seeds, lr: np.ndarray, t0: int,
            diverged: np.ndarray, max_loss: np.ndarray, fused: bool = True) -> None:
    """Advance every live run from step t0 by T = lr.shape[1] steps, in place.

    params: dict of (R, ...) tensors; opt_state: the optimizer's state tensors (momentum, EMA),
    updated in place; lr: (R, T) step sizes; seeds: (R,) run seeds (batch, noise and
    augmentation randomness, all keyed by (seed, step)); diverged: (R,) int64, -1 while alive,
    else the step at which the run's mini-batch loss was non-finite or above ``max_loss`` (R,):
    the run is frozen before that step. A plain optimizer runs the model's compiled kernel when
    it has one (``fused``), and so does a gradient rule with a ``fused_advance`` (the SDE) under a
    plain update; everything else is torch ops: direction from the optimizer's rule
    (or the model's gradient), then the optimizer's update.
    """
    R, T = lr.shape
    if T == 0:
        return
    sampler = opt.sampler
    idx = None if sampler.full else sampler.batch(seeds, t0, t0 + T)
    if opt.rule is not None:
        opt.rule.bind(seeds, data.n, params)
    if fused and _model_kernel(model, opt, data):
        idx_arg = idx if idx is not None else np.zeros((R, 0, 0), dtype=np.int64)
        if model.fused_sgd(params, data, idx_arg, sampler.full, lr, t0, diverged, max_loss):
            return
    if fused and _rule_kernel(opt, data) and opt.rule.fused_advance(model, params, data, lr, t0, diverged, max_loss):
        return
    _advance_torch(model, params, data, opt, opt_state, seeds, idx, lr, t0, diverged, max_loss)


def _model_kernel(model, opt: Optimizer, data) -> bool:
    """Is this a plain step the model's compiled kernel (``fused_sgd``) is offered?"""
    return opt.plain and data.augment is None and hasattr(model, "fused_sgd")


def _rule_kernel(opt: Optimizer, data) -> bool:
    """Is this a plain update of a gradient rule with a compiled kernel (the SDE's ``fused_advance``)?"""
    return getattr(opt.rule, "fused_advance", None) is not None and opt.plain_update and data.augment is None


def kernel_path(model, opt: Optimizer, data) -> bool:
    """Do ``advance``'s steps with ``opt`` go to a compiled kernel (with ``fused``, where the model
    accepts the tensors: CPU, contiguous; the SDE's also float64), never to the torch ops?"""
    return _model_kernel(model, opt, data) or (_rule_kernel(opt, data) and hasattr(model, "fused_sde"))


def augment_key(seed: int, t: int) -> int:
    """Seed of the augmentation generator of run ``seed`` at step ``t``."""
    return int(np.random.SeedSequence([int(seed), STREAM_AUGMENT, int(t)]).generate_state(1)[0])


def _augment(data, xb, seeds, t):
    """Per run, the data's batch transform with a generator keyed by (seed, t). Transforms with
    a ``runs`` method (sgdlab's crop + flip) do all runs at once on the data's device."""
    gens = [torch.Generator(device="cpu").manual_seed(augment_key(s, t)) for s in seeds]
    runs = getattr(data.augment, "runs", None)
    if runs is not None:
        return runs(xb, gens)
    return torch.stack([data.augment(xb[r], g) for r, g in enumerate(gens)])


def _advance_torch(model, params, data, opt, opt_state, seeds, idx, lr, t0, diverged, max_loss):
    some = next(iter(params.values()))
    dt, dev = some.dtype, some.device
    x, y = data.x_train, data.y_train
    lr_t = torch.as_tensor(lr, dtype=dt, device=dev)
    cap = torch.as_tensor(max_loss, dtype=dt, device=dev)
    alive = torch.as_tensor(diverged < 0, device=dev)
    # Divergence steps stay on the device until the chunk ends: no host-device synchronisation
    # per step, so a GPU never waits for the host between steps.
    div = torch.as_tensor(diverged, device=dev)
    idx_t = None if idx is None else torch.as_tensor(idx, device=x.device)
    zero = torch.zeros((), dtype=dt, device=dev)
    for t in range(lr.shape[1]):
        if idx_t is None:
            xb, yb = x, y
        else:
            ib = idx_t[:, t]  # (R, b)
            xb, yb = x[ib], y[ib]
        if data.augment is not None:
            if idx_t is None:  # full batch: one copy per run so each run augments its own
                xb, yb = xb.expand(len(seeds), *xb.shape), yb.expand(len(seeds), *yb.shape)
            xb = _augment(data, xb, seeds, t0 + t)
        if opt.rule is None:
            loss, grads = model.loss_and_grad(params, xb, yb)
        else:
            loss, grads = opt.rule.loss_and_grad(model, params, xb, yb, t0 + t)
        newly = ~(loss <= cap) & alive  # NaN compares False
        div = torch.where(newly, t0 + t, div)
        alive = alive & ~newly
        opt.update(params, grads, opt_state, torch.where(alive, lr_t[:, t], zero), alive)
    diverged[:] = div.cpu().numpy()
