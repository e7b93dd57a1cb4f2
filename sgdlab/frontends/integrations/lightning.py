"""``sgdlab.Monitor`` as a PyTorch Lightning callback::

    from sgdlab.frontends.integrations.lightning import MonitorCallback
    cb = MonitorCallback(F.cross_entropy, (x_sub, y_sub), out="runs/lit", batch_size=64,
                         metrics={"sharpness": 100, "threshold": 100, "batch_sharpness": 500})
    lightning.Trainer(callbacks=[cb], ...).fit(module, loader)

``loss_fn(module(x), y)`` must be the loss ``training_step`` minimises (Lightning does not expose
it). The optimizer is ``trainer.optimizers[0]``; the step counter is ``trainer.global_step``
(optimizer steps, so gradient accumulation measures once per step). Each measurement is also
sent to ``trainer.logger`` when there is one (``log_to_trainer``).
"""

from __future__ import annotations

import math

from lightning.pytorch.callbacks import Callback

from sgdlab.workflows.monitor import Monitor

__all__ = ["MonitorCallback"]


class MonitorCallback(Callback):
    """Builds a :class:`sgdlab.Monitor` on ``pl_module`` at train start; ``**monitor_kw`` go to it."""

    def __init__(self, loss_fn, data, *, log_to_trainer: bool = True, **monitor_kw):
        self.loss_fn, self.data, self.kw, self.log_to_trainer = loss_fn, data, monitor_kw, log_to_trainer
        self.monitor: Monitor | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        opt = trainer.optimizers[0] if trainer.optimizers else None
        self.monitor = Monitor(pl_module, self.loss_fn, self.data, opt, **self.kw)
        self._measure(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._measure(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.monitor is not None:
            self.monitor.close()

    def _measure(self, trainer) -> None:
        m = self.monitor.step(trainer.global_step)
        if m is not None and self.log_to_trainer and trainer.logger is not None:
            vals = {f"sgdlab/{k}": v for k, v in m.values.items() if math.isfinite(v)}
            trainer.logger.log_metrics(vals, step=m.step)
