"""``sgdlab.Monitor`` as a Hugging Face ``transformers.TrainerCallback``::

    from sgdlab.frontends.integrations.hf import MonitorCallback
    loss_fn = lambda out, y: F.cross_entropy(out.logits, y)     # what the Trainer minimises
    cb = MonitorCallback(loss_fn, (input_ids, labels), out="runs/hf", batch_size=8,
                         metrics={"sharpness": 100, "threshold": 100, "batch_sharpness": 500})
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

The measurement set is tensors ``(x, y)`` with ``model(x)`` a valid call (e.g. ``input_ids``);
``loss_fn(model(x), y)`` must be the training loss (a ``ModelOutput``'s ``.logits`` is fine).
The optimizer is the Trainer's (``optim="sgd"`` gives ``threshold`` its meaning; adaptive
optimizers log lr with NaN thresholds); the step counter is ``state.global_step``.
"""

from __future__ import annotations

from transformers import TrainerCallback

from sgdlab.workflows.monitor import Monitor

__all__ = ["MonitorCallback"]


class MonitorCallback(TrainerCallback):
    """Builds a :class:`sgdlab.Monitor` on the Trainer's model at train begin; ``**monitor_kw`` go to it."""

    def __init__(self, loss_fn, data, **monitor_kw):
        self.loss_fn, self.data, self.kw = loss_fn, data, monitor_kw
        self.monitor: Monitor | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        self.monitor = Monitor(model, self.loss_fn, self.data, optimizer, **self.kw)
        self.monitor.step(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.monitor.step(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close()
