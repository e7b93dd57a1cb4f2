"""sgdlab.Monitor in PyTorch Lightning: sharpness vs 2/eta, batch sharpness and feature sparsity."""

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sgdlab.frontends.integrations.lightning import MonitorCallback
from sgdlab.metrics.probes import ProbeSettings


class Net(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, 64), nn.ReLU(), nn.Linear(64, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])  # the loss the monitor is given

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


g = torch.Generator().manual_seed(0)
x, y = torch.randn(512, 10, generator=g), torch.randint(0, 3, (512,), generator=g)
loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
monitor = MonitorCallback(F.cross_entropy, loader, subset=256, out="runs/monitor_lightning", overwrite=True,
                          metrics={"sharpness": 20, "threshold": 20, "batch_sharpness": 40, "sparsity": 20},
                          settings=ProbeSettings(max_batches=50))  # a quick demo: at most 50 batches per estimate
trainer = L.Trainer(max_steps=80, callbacks=[monitor], accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.fit(Net(), loader)
print(monitor.monitor)  # the last measurement, one line; `sgdlab plot runs/monitor_lightning` draws them all
