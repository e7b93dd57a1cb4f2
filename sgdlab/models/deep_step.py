"""The training step of R runs of one ``nn.Module``: vectorised over runs, or a loop.

The runs' parameters and buffers are stacked ``(R, ...)`` tensors (the engine's state, as
``torch.func.stack_module_state`` lays them out). One step computes, per run r,

    L_r = mean_i loss(f(theta_r; x_ri), y_ri),   g_r = dL_r / d theta_r,

in train mode (BatchNorm normalises with run r's batch statistics and updates run r's running
statistics in place in its own buffer rows). Two ways, the same numbers:

* **vmap** (default): ``torch.func.vmap`` of ``functional_call`` over the run dimension; one
  forward and one backward for all runs (convolutions become one grouped convolution, BatchNorm
  keeps per-run statistics). Because runs are independent, ``d(sum_r L_r)/d theta_r = g_r``, so
  plain autograd on the summed loss gives every run's gradient.
* **loop**: one ``functional_call`` + ``autograd.grad`` per run; the fallback when a model
  cannot be vectorised (data-dependent Python control flow, ``.item()``, in-place writes into
  tensors that are not per run). The first vectorised step is probed on a copy of the state
  with two examples per run; if ``vmap`` fails the stepper prints one notice and loops.

Fast-path switches (``StepOptions``): ``channels_last`` memory format of the inputs (the
convolutions follow the input's format), ``autocast`` (bf16 on CPU and CUDA, fp16 on CUDA; the
loss is taken in float32) and ``torch.compile`` of the per-step function (forward and backward;
``mode`` as torch.compile's). Inputs are uint8 images converted per batch on their device.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

from sgdlab.core._torch import torch
from sgdlab.data.image_dataset import UINT8_MAX, to_unit_float

__all__ = ["COMPILE_MODES", "ModuleStepper", "StepOptions", "to_inputs"]

BUFFER = "buffer:"
# Autocast dtypes by name (resolved on use: torch is imported lazily).
AUTOCAST_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# torch.compile modes ("none" = eager).
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
# Examples per run in the vectorisation probe: BatchNorm needs more than one value per channel.
PROBE_EXAMPLES = 2
# torch.compile backend; tests may swap it for "aot_eager" (same graphs, no code generation).
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class StepOptions:
    vectorize: bool = True  # one vmap computation for all runs; False: a Python loop over runs
    channels_last: bool = False  # NHWC inputs (faster convolutions on GPUs with tensor cores)
    autocast: str = "none"  # none | bf16 | fp16: mixed precision of the forward/backward
    compile: str = "none"  # a torch.compile mode, or none


DEFAULT_OPTIONS = StepOptions()


def to_inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [0, 255] -> [0, 1] in the compute dtype directly; floating inputs (images in [0, 1]
    or flat features) cast to it (float64 runs stay exact); on x's device."""
    if x.dtype == torch.uint8:
        return x.to(dtype).div_(UINT8_MAX)
    return x.to(dtype) if x.is_floating_point() else to_unit_float(x)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Images (..., C, H, W) with channels innermost in memory (each (N, C, H, W) slice is
    ``torch.channels_last``)."""
    return x.movedim(-3, -1).contiguous().movedim(-1, -3)


class ModuleStepper:
    """``stepper(params, x, y) -> (loss (R,), {name: grad (R, ...)})`` for a module template.

    params: the engine's dict of stacked parameters and ``"buffer:<name>"`` buffers (buffers
    are updated in place); x: ``(R, b, *sample)`` per-run batches or ``(b, *sample)`` shared,
    uint8 or float, with ``len(sample) = sample_dims`` (3 for images (C, H, W), 1 for flat
    features); y: ``(R, b)`` or ``(b,)`` class labels.
    """

    def __init__(self, template: torch.nn.Module, param_names: list[str], buffer_names: list[str],
                 per_example_loss: Callable, options: StepOptions = DEFAULT_OPTIONS, sample_dims: int = 3):
        self.template = template
        self.sample_dims = sample_dims
        self.param_names, self.buffer_names = param_names, buffer_names
        self.per_example_loss = per_example_loss
        self.options = options
        # None until the first step of several runs decides (vectorisation probe); then True / False.
        self.vectorized: bool | None = None if options.vectorize else False
        self._compiled: dict[str, Callable] = {}

    # ------------------------------------------------------------------ one run
    def _one(self, leaves: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean batch loss of one run (a 0-dim tensor); works per run inside vmap too."""
        out = torch.func.functional_call(self.template, {**leaves, **buffers}, (x,))
        if out.dtype in (torch.float16, torch.bfloat16):  # the loss in float32 under autocast
            out = out.float()
        return self.per_example_loss(out, y).mean()

    def _vmapped(self, leaves, buffers, x, y):
        dims = (0, 0, 0 if self._per_run(x) else None, 0 if y.dim() == 2 else None)
        return torch.func.vmap(self._one, in_dims=dims, randomness="error")(leaves, buffers, x, y)

    def _fn(self, kind: str) -> Callable:
        fn = self._vmapped if kind == "vmap" else self._one
        if self.options.compile == "none":
            return fn
        if kind not in self._compiled:
            mode = None if self.options.compile == "default" else self.options.compile
            self._compiled[kind] = torch.compile(fn, mode=mode, backend=COMPILE_BACKEND, dynamic=False)
        return self._compiled[kind]

    # ------------------------------------------------------------------ context
    def _autocast(self, device: torch.device):
        if self.options.autocast == "none":
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=getattr(torch, AUTOCAST_DTYPES[self.options.autocast]))

    def _per_run(self, x: torch.Tensor) -> bool:
        return x.dim() == self.sample_dims + 2

    def _inputs(self, x: torch.Tensor, dtype) -> torch.Tensor:
        x = to_inputs(x, dtype)
        return _channels_last(x) if self.options.channels_last else x

    # ------------------------------------------------------------------ the step
    def __call__(self, params: dict, x: torch.Tensor, y: torch.Tensor):
        p0 = params[self.param_names[0]]
        xb = self._inputs(x, p0.dtype)
        many = p0.shape[0] > 1  # one run: the plain step (vmap would only add overhead)
        if many and self.vectorized is None:
            self.vectorized = self._probe(params, xb, y)
        self.template.train(True)
        if many and self.vectorized:
            return self._step_vmap(params, xb, y)
        return self._step_loop(params, xb, y)

    def _step_vmap(self, params, x, y):
        leaves = {n: params[n].detach().requires_grad_(True) for n in self.param_names}
        buffers = {n: params[BUFFER + n] for n in self.buffer_names}
        with self._autocast(x.device):
            losses = self._fn("vmap")(leaves, buffers, x, y)
        grads = torch.autograd.grad(losses.sum(), [leaves[n] for n in self.param_names])
        return losses.detach(), dict(zip(self.param_names, grads))

    def _step_loop(self, params, x, y):
        R = params[self.param_names[0]].shape[0]
        losses, grads = [], {n: [] for n in self.param_names}
        fn = self._fn("loop")
        for r in range(R):
            leaves = {n: params[n][r].detach().requires_grad_(True) for n in self.param_names}
            buffers = {n: params[BUFFER + n][r] for n in self.buffer_names}
            with self._autocast(x.device):
                loss = fn(leaves, buffers, x[r] if self._per_run(x) else x, y[r] if y.dim() == 2 else y)
            g = torch.autograd.grad(loss, [leaves[n] for n in self.param_names])
            losses.append(loss.detach())
            for n, gi in zip(self.param_names, g):
                grads[n].append(gi)
        if R == 1:  # views, not copies (a GPU step would launch one copy per tensor)
            return losses[0][None], {n: v[0][None] for n, v in grads.items()}
        return torch.stack(losses), {n: torch.stack(v) for n, v in grads.items()}

    def _probe(self, params, x, y) -> bool:
        """Can this model run under vmap? One eager step of PROBE_EXAMPLES examples per run on
        copies of the state (a failure half-way must not leave the real buffers updated)."""
        leaves = {n: params[n].detach().clone().requires_grad_(True) for n in self.param_names}
        buffers = {n: params[BUFFER + n].clone() for n in self.buffer_names}
        xs = x[:, :PROBE_EXAMPLES] if self._per_run(x) else x[:PROBE_EXAMPLES]
        ys = y[:, :PROBE_EXAMPLES] if y.dim() == 2 else y[:PROBE_EXAMPLES]
        self.template.train(True)
        try:
            losses = self._vmapped(leaves, buffers, xs, ys)
            torch.autograd.grad(losses.sum(), [leaves[n] for n in self.param_names])
        except Exception as e:  # any failure of vmap means: loop  # noqa: BLE001
            msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
            R = params[self.param_names[0]].shape[0]
            print(f"notice: {type(self.template).__name__} cannot be vectorised over runs "
                  f"({type(e).__name__}: {msg[:160]}); looping over its {R} runs instead", file=sys.stderr)
            return False
        return True
