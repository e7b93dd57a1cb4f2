"""Advance a batch of runs by many steps: the one inner loop of the engine."""

from __future__ import annotations

import numpy as np
import torch

from .samplers import Sampler


def advance(model, params, data, sampler: Sampler, seeds, lr: np.ndarray, t0: int,
            diverged: np.ndarray, max_loss: np.ndarray, fused: bool = True) -> None:
    """Advance every live run from step t0 by T = lr.shape[1] steps, in place.

    params: dict of (R, ...) tensors; lr: (R, T) step sizes; seeds: (R,) run seeds (batch
    randomness); diverged: (R,) int64, -1 while alive, else the step at which the run's
    mini-batch loss was non-finite or above ``max_loss`` (R,): the run is frozen before that
    step. Uses the model's compiled kernel when it has one (``fused``), else torch ops.
    Weight decay (``sampler.weight_decay``, set from the optimizer config; 0 if absent) adds
    lr * weight_decay * theta to every update; compiled kernels do not have it (torch path).
    A gradient rule (``sampler.rule``, set by noisy optimizers, see ``optim.noise``) replaces
    ``model.loss_and_grad`` by ``rule.loss_and_grad(model, params, xb, yb, t)`` (noise keyed by
    (seed, t)); compiled kernels are used only without one.
    """
    R, T = lr.shape
    if T == 0:
        return
    wd = float(getattr(sampler, "weight_decay", 0.0))
    idx = None if sampler.full else sampler.batch(seeds, t0, t0 + T)
    rule = getattr(sampler, "rule", None)
    if rule is not None:
        rule.bind(seeds, data.n, params)
    if fused and wd == 0 and rule is None and hasattr(model, "fused_sgd"):
        idx_arg = idx if idx is not None else np.zeros((R, 0, 0), dtype=np.int64)
        if model.fused_sgd(params, data, idx_arg, sampler.full, lr, t0, diverged, max_loss):
            return
    _advance_torch(model, params, data, idx, lr, t0, diverged, max_loss, wd, rule)


def _advance_torch(model, params, data, idx, lr, t0, diverged, max_loss, wd=0.0, rule=None):
    some = next(iter(params.values()))
    dt, dev = some.dtype, some.device
    x, y = data.x_train, data.y_train
    lr_t = torch.as_tensor(lr, dtype=dt, device=dev)
    cap = torch.as_tensor(max_loss, dtype=dt, device=dev)
    alive = torch.as_tensor(diverged < 0, device=dev)
    idx_t = None if idx is None else torch.as_tensor(idx, device=dev)
    for t in range(lr.shape[1]):
        if idx_t is None:
            xb, yb = x, y
        else:
            ib = idx_t[:, t]  # (R, b)
            xb, yb = x[ib], y[ib]
        if rule is None:
            loss, grads = model.loss_and_grad(params, xb, yb)
        else:
            loss, grads = rule.loss_and_grad(model, params, xb, yb, t0 + t)
        newly = ~(loss <= cap) & alive  # NaN compares False
        if bool(newly.any()):
            diverged[newly.cpu().numpy()] = t0 + t
            alive = alive & ~newly
        step = torch.where(alive, lr_t[:, t], torch.zeros((), dtype=dt, device=dev))
        for k, g in grads.items():  # parameters only: buffers (e.g. BN statistics) have no gradient
            p = params[k]
            shape = (-1,) + (1,) * (p.dim() - 1)
            g = g + wd * p if wd else g
            upd = torch.where(alive.view(shape), step.view(shape) * g, torch.zeros((), dtype=dt, device=dev))
            p.sub_(upd)
