"""Every registry is open: a user's deep architecture and image dataset train through the engine
exactly like the bundled ones (``sgdlab.register_architecture``, ``sgdlab.register_image_dataset``)."""

from typing import ClassVar

import torch
from torch import nn

import sgdlab
from sgdlab.core.config import from_dict
from sgdlab.data.image_dataset import ImageDataset
from sgdlab.models.cifar.base import BlockNet, PoolHead


@sgdlab.register_image_dataset("oreg_stripes")
def stripes(path=None, n: int = 48):
    """Vertical vs horizontal stripes, 1 x 8 x 8 uint8 images."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (2 * n,), generator=g)
    base = (torch.arange(8) % 2 * 255).to(torch.uint8)
    x = torch.where(y[:, None, None, None] == 0, base.view(1, 1, 1, 8), base.view(1, 1, 8, 1)).expand(-1, 1, 8, 8)
    x = x.contiguous()
    return ImageDataset(x[:n], y[:n], x[n:], y[n:], num_classes=2, name="oreg_stripes")


@sgdlab.register_architecture("oreg_tiny_cnn")
def tiny_cnn(num_classes: int, width: int, in_channels: int = 3, generator=None) -> BlockNet:
    # the engine initialises the parameters per run from its own generator
    block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU())
    return BlockNet(nn.Conv2d(in_channels, width, 3, padding=1), [block], PoolHead(width, num_classes))


def test_a_registered_architecture_and_image_dataset_train_in_the_engine(tmp_path):
    cfg = from_dict(sgdlab.ExperimentConfig, {
        "name": "open-registries", "data": {"kind": "images", "name": "oreg_stripes"},
        "model": {"kind": "deep_net", "name": "oreg_tiny_cnn", "width": 4},
        "arms": [{"name": "sgd", "optimizer": {"kind": "sgd", "batch_size": 16},
                  "schedule": {"kind": "constant", "lr": 0.05}}],
        "steps": 20, "seeds": 2, "eval": {"grid": "linear", "points": 2}, "dtype": "float32"})
    res = sgdlab.run(cfg, out=tmp_path / "r", progress=False, quiet=True)
    assert res.metrics["train_loss"].shape == (2, 2)
    assert torch.isfinite(torch.as_tensor(res.metrics["train_loss"])).all()


@sgdlab.register_logger("oreg_memory")
class MemoryLogger:
    """Keeps what it is given, in memory."""

    seen: ClassVar[list] = []

    def __init__(self, out, runs, name):
        self.runs = runs

    def log(self, step, metrics):
        MemoryLogger.seen.append((step, {k: list(map(float, v)) for k, v in metrics.items()}))

    def close(self):
        MemoryLogger.seen.append("closed")


@sgdlab.register_executor("oreg_reversed")
def reversed_inprocess(todo, args, ctx):
    """Runs the jobs in-process, last first."""
    from sgdlab.workflows.executors import run_job

    for j, a in reversed(list(zip(todo, args))):
        yield j["id"], run_job(*a)


def _tiny_cfg(**over):
    d = {"name": "oreg", "data": {"kind": "smoke_blobs2"}, "model": {"kind": "oreg_mlp"},
         "arms": [{"name": "sgd", "optimizer": {"kind": "sgd", "batch_size": 8},
                   "schedule": {"kind": "constant", "lr": 0.1}}],
         "steps": 10, "seeds": 1, "eval": {"grid": "linear", "points": 2}, "dtype": "float32", **over}
    return from_dict(sgdlab.ExperimentConfig, d)


@sgdlab.register_data("smoke_blobs2")
def blobs(n: int = 32, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2 * n)
    x = rng.standard_normal((2 * n, 3)) + y[:, None]
    return {"x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}


@sgdlab.register_model("oreg_mlp")
def mlp(hidden: int = 8, *, num_classes: int, input_shape):
    return nn.Sequential(nn.Linear(input_shape[0], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def test_a_registered_logger_receives_every_evaluation(tmp_path):
    MemoryLogger.seen.clear()
    sgdlab.run(_tiny_cfg(loggers=["oreg_memory"]), out=tmp_path / "r", progress=False, quiet=True)
    assert [s for s, _ in MemoryLogger.seen[:-1]] == [0, 10] and MemoryLogger.seen[-1] == "closed"
    assert "train_loss" in MemoryLogger.seen[0][1]


def test_a_registered_executor_runs_a_sweep(tmp_path):
    from sgdlab.workflows.sweep import Sweep

    sw = Sweep.create(tmp_path / "s", _tiny_cfg(), [("steps", [10, 12])])
    res = sw.execute("oreg_reversed", progress=False)
    assert [v["status"] for v in res.values()] == ["done", "done"] and list(res) == [1, 0]
