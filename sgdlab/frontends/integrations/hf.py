"""``sgdlab.Monitor`` as a Hugging Face ``transformers.TrainerCallback``::

    from sgdlab.frontends.integrations.hf import MonitorCallback
    loss_fn = lambda out, y: F.cross_entropy(out.logits, y)     # what the Trainer minimises
    cb = MonitorCallback(loss_fn, (input_ids, labels), out="runs/hf", batch_size=8,
                         metrics={"sharpness": 100, "threshold": 100, "batch_sharpness": 500})
    Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb]).train()

The measurement set is tensors ``(x, y)`` with ``model(x)`` a valid call (e.g. ``input_ids``);
``loss_fn(model(x), y)`` must be the training loss (a ``ModelOutput``'s ``.logits`` is fine).
The optimizer is the Trainer's: with AdamW (its default) ``threshold`` is Adam's edge
(2 + 2 beta1)/((1 - beta1) lr) and the default metric is ``preconditioned_sharpness``; with
``optim="sgd"`` the plain 2/lr. The step counter is ``state.global_step``; the final state is
measured at ``on_train_end``.

Where the values go: every measurement is logged the way ``Trainer.log`` logs (``sgdlab/<metric>``
keys, appended to ``state.log_history`` and passed to every callback's ``on_log``), so whatever
``report_to`` names (TensorBoard, W&B, MLflow, ...) receives it next to ``train/loss``. A callback
is not handed its Trainer, so the callback finds the Trainer's callback handler, the list that
holds it, once at train begin (``log_to_trainer=False``: the run directory only).

Restarts: ``trainer.train(resume_from_checkpoint=...)`` restores ``state.global_step`` before
training begins; the callback then resumes the record in ``out`` (``Monitor(resume=True)``).
"""

from __future__ import annotations

import gc
import math

from transformers import TrainerCallback
from transformers.trainer_callback import CallbackHandler

from sgdlab.workflows.monitor import Monitor

__all__ = ["MonitorCallback"]


class MonitorCallback(TrainerCallback):
    """Builds a :class:`sgdlab.Monitor` on the Trainer's model at train begin; ``**monitor_kw`` go to it."""

    def __init__(self, loss_fn, data, *, log_to_trainer: bool = True, **monitor_kw):
        self.loss_fn, self.data, self.kw, self.log_to_trainer = loss_fn, data, monitor_kw, log_to_trainer
        self.monitor: Monitor | None = None
        self._handler: CallbackHandler | None = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        kw = dict(self.kw)
        kw.setdefault("resume", state.global_step > 0)  # resume_from_checkpoint restored the step
        self.monitor = Monitor(model, self.loss_fn, self.data, optimizer, **kw)
        self._handler = self._find_handler() if self.log_to_trainer else None
        self._log(args, state, control, self.monitor.step(state.global_step))

    def on_step_end(self, args, state, control, **kwargs):
        self._log(args, state, control, self.monitor.step(state.global_step))
        if state.global_step >= state.max_steps > 0:  # the final state, while the report_to writers are open
            self._log(args, state, control, self.monitor.finish(state.global_step))

    def on_train_end(self, args, state, control, **kwargs):
        if self.monitor is not None:
            self.monitor.close(state.global_step)  # the final state if not measured yet, summary.json

    def _find_handler(self) -> CallbackHandler | None:
        """The Trainer's CallbackHandler: the one whose ``callbacks`` list holds this callback."""
        for ref in gc.get_referrers(self):
            if isinstance(ref, list):
                for owner in gc.get_referrers(ref):
                    if isinstance(owner, CallbackHandler) and owner.callbacks is ref:
                        return owner
        return None

    def _log(self, args, state, control, m) -> None:
        """What ``Trainer.log`` does with ``logs``: epoch added, log_history, every callback's on_log."""
        if m is None or self._handler is None:
            return
        logs = {f"sgdlab/{k}": v for k, v in m.values.items() if math.isfinite(v)}
        if state.epoch is not None:
            logs["epoch"] = state.epoch
        state.log_history.append({**logs, "step": m.step})
        self._handler.on_log(args, state, control, logs)
