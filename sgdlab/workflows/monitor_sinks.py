"""Where a Monitor's measurements also go: the writers the user already logs to.

``Monitor(..., log_to=[writer, run])`` sends every measurement to each object passed, besides the
run directory, recognised by what it can do (no import of TensorBoard or W&B here):

* an object with ``add_scalar(tag, value, global_step)`` (``torch.utils.tensorboard.SummaryWriter``,
  tensorboardX): one scalar per finite metric, tag ``<prefix><metric>``;
* an object with ``log(dict, step=...)`` (an active ``wandb.Run``, ``wandb`` itself after
  ``wandb.init``): one call per measurement with the finite metrics.

The user's writers are theirs: the Monitor flushes them at ``close()`` but never closes them.
Non-finite values (metrics not due, NaN of a failed measurement) are left out, as TensorBoard and
W&B would draw them as gaps or refuse them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from sgdlab.core.errors import ConfigError

__all__ = ["PREFIX", "Sink", "sinks"]

PREFIX = "sgdlab/"  # the tag prefix: the monitor's curves in one group of the user's dashboard


class Sink:
    """One user writer (module doc); ``write(step, values)`` sends the finite values."""

    def __init__(self, target, prefix: str = PREFIX):
        if callable(getattr(target, "add_scalar", None)):
            self.kind = "add_scalar"
        elif callable(getattr(target, "log", None)):
            self.kind = "log"
        else:
            raise ConfigError(f"log_to takes objects with add_scalar(tag, value, step) (a TensorBoard SummaryWriter) "
                              f"or log(dict, step=) (a W&B run), got {type(target).__name__}")
        self.target, self.prefix = target, prefix

    def write(self, step: int, values: Mapping[str, float]) -> None:
        vals = {f"{self.prefix}{k}": float(v) for k, v in values.items() if math.isfinite(v)}
        if not vals:
            return
        if self.kind == "add_scalar":
            for k, v in vals.items():
                self.target.add_scalar(k, v, step)
        else:
            self.target.log(vals, step=step)

    def flush(self) -> None:
        fn = getattr(self.target, "flush", None)
        if callable(fn):
            fn()


def sinks(targets) -> list[Sink]:
    """Sinks of ``targets`` (one object or a sequence of them; None: none)."""
    if targets is None:
        return []
    if not isinstance(targets, (list, tuple)):
        targets = [targets]
    return [Sink(t) for t in targets]
