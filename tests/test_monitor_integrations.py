"""The Lightning and Hugging Face callbacks with the real libraries on tiny models: measured at the
framework's global steps, and training with the callback is bit for bit training without it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdlab.metrics.probes import ProbeSettings
from sgdlab.store.runs import RunDir

QUICK = ProbeSettings(max_batches=12, tol=1e-3)
METRICS = {"sharpness": 4, "threshold": 4, "batch_sharpness": 8, "sparsity": 4}


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(128, 6, generator=g), torch.randint(0, 3, (128,), generator=g)


def test_lightning_callback(tmp_path):
    L = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    from sgdlab.frontends.integrations.lightning import MonitorCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def fit(callbacks):
        torch.manual_seed(0)
        x, y = _data()
        net = Net()
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
        L.Trainer(max_steps=12, callbacks=callbacks, accelerator="cpu", logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(net, loader)
        return net, (x, y)

    plain, (x, y) = fit([])
    cb = MonitorCallback(F.cross_entropy, (x, y), out=tmp_path / "lit", batch_size=16, bn_mode="train",
                         metrics=METRICS, settings=QUICK)
    monitored, _ = fit([cb])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), monitored.state_dict().values()))
    steps, m = RunDir(tmp_path / "lit").metrics()
    assert steps.tolist() == [0, 4, 8, 12] and np.isfinite(m["sharpness"]).all()
    # step 12, the final state, gets every metric at on_train_end
    assert np.isfinite(m["batch_sharpness"][:, 0]).tolist() == [True, False, True, True]
    assert (m["threshold"] == 20.0).all() and RunDir(tmp_path / "lit").summary() is not None


def test_hf_trainer_callback(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    from sgdlab.frontends.integrations.hf import MonitorCallback

    class Net(nn.Module):  # the Trainer's protocol: forward(**batch) -> {"loss", "logits"}
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

        def forward(self, x, labels=None):
            logits = self.net(x)
            return {"logits": logits} if labels is None else {"loss": F.cross_entropy(logits, labels), "logits": logits}

    def fit(callbacks):
        x, y = _data()
        torch.manual_seed(0)
        net = Net()
        args = TrainingArguments(str(tmp_path / "hf"), max_steps=10, per_device_train_batch_size=16, learning_rate=0.1,
                                 optim="sgd", lr_scheduler_type="constant", use_cpu=True, report_to=[],
                                 save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=3)
        Trainer(model=net, args=args, train_dataset=[{"x": a, "labels": b} for a, b in zip(x, y)],
                callbacks=callbacks).train()
        return net, (x, y)

    plain, (x, y) = fit([])
    cb = MonitorCallback(lambda out, t: F.cross_entropy(out["logits"], t), (x, y), out=tmp_path / "mon",
                         batch_size=16, metrics={"sharpness": 5, "threshold": 5, "batch_sharpness": 5}, settings=QUICK)
    monitored, _ = fit([cb])
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), monitored.state_dict().values()))
    steps, m = RunDir(tmp_path / "mon").metrics()
    assert steps.tolist() == [0, 5, 10] and np.isfinite(m["sharpness"]).all() and np.isfinite(m["batch_sharpness"]).all()
    assert (m["threshold"] == 20.0).all()
