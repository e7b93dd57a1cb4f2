"""A registered metric (``sgdlab.register_metric``) measured by ``sgdlab.Monitor``.

A metric is one function ``fn(model, params, data) -> (R,)`` for both the engine and the Monitor.
In the engine ``model`` is the batched model, ``params`` the ``(R, ...)`` tensors of R runs and
``data`` the experiment's :class:`~sgdlab.data.base.Dataset`. In the Monitor the same function is
called with R = 1 on views of the user's training:

* ``model``: a :class:`ModuleModel`: ``forward(params, x) -> (1, ...)`` is the user's module at
  ``params`` (``torch.func.functional_call``; dropout off, BatchNorm with its running statistics),
  ``loss(params, x, y) -> (1,)`` the loss as trained, ``trainable(params)`` the names, and
  ``module`` the ``nn.Module`` itself;
* ``params``: a snapshot of its trainable parameters ``{name: (1, *shape)}`` (names as in
  ``module.named_parameters()``);
* ``data``: a :class:`MeasurementData`: ``x_train``, ``y_train`` = the Monitor's fixed
  measurement set, ``x_test``, ``y_test`` empty, ``extras`` empty.

It runs under ``torch.no_grad()`` inside the Monitor's measurement (RNG states, flags and the
module's parameters untouched) and must return one value (a tensor or array of 1 element).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.func import functional_call

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.probes import Probe

__all__ = ["MeasurementData", "ModuleModel", "metric_probe"]


@dataclass
class MeasurementData:
    """The Monitor's measurement set in the fields of a Dataset (module doc)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    extras: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.x_train.shape[0]


class ModuleModel:
    """A user's ``nn.Module`` as a batched model of R runs over a functional snapshot ``fn``
    (a :class:`~sgdlab.metrics.curvature.hvp.FunctionalLoss`); call inside ``fn.context()``."""

    random_init = True

    def __init__(self, fn):
        self._fn = fn
        self.module = fn.model

    def trainable(self, params) -> list[str]:
        return list(params)

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``(R, ...)``: the module's output at each run's parameters."""
        x = x.to(self._fn.device, self._fn.dtype) if x.is_floating_point() else x.to(self._fn.device)
        R = next(iter(params.values())).shape[0]
        return torch.stack([functional_call(self.module, {**{k: v[r] for k, v in params.items()},
                                                          **self._fn.constants}, (x,)) for r in range(R)])

    def loss(self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(R,)``: the loss as trained (``loss_fn``, a mean over the batch) per run."""
        out = self.forward(params, x)
        y = y.to(self._fn.device, self._fn.dtype) if y.is_floating_point() else y.to(self._fn.device)
        return torch.stack([self._fn.loss_fn(o, y) for o in out])


def metric_probe(name: str, fn, description: str = "") -> Probe:
    """The Monitor probe of a registered metric ``fn(model, params, data)`` (module doc): it
    writes the metric ``name``."""

    def run(moment) -> dict[str, float]:
        p = moment.p
        view = p.functional(evaluated=True)
        params = {k: v[None] for k, v in view.unflatten(view.theta).items()}
        empty = (p.x[:0], p.y[:0])
        data = MeasurementData(p.x, p.y, *empty)
        with view.context(), torch.no_grad():
            value = torch.as_tensor(fn(ModuleModel(view), params, data)).reshape(-1)
        if value.numel() != 1:
            raise ConfigError(f"metric {name!r} returned {value.numel()} values for 1 run (the Monitor's model); "
                              f"it must return one value per run, shape (R,)")
        return {name: float(value[0])}

    return Probe(description or f"user metric {name!r}: fn(model, params, data) with R = 1 "
                 f"(sgdlab.metrics.module_view)", lambda _p: [name], run)
