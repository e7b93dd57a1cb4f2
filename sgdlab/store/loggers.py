"""Optional metric logging to TensorBoard, Weights & Biases (offline) or MLflow (local files),
next to sgdlab's own metrics.jsonl. Each backend is used only when its package is installed;
none of them ever needs the network.

Live: ``ExperimentConfig.loggers = ["tensorboard"]`` logs at every evaluation. After the fact:
``sgdlab export DIR --to tensorboard`` (``sgdlab.workflows.api.export_run``) replays a run directory's metrics.jsonl.
Every run of a batched experiment is logged as its own series, tagged ``<metric>/<arm>/seed<s>``
(TensorBoard) or as its own W&B / MLflow run.
"""

from __future__ import annotations

import math
from pathlib import Path

from sgdlab.core.errors import ConfigError, choices_message

BACKENDS = ("tensorboard", "wandb", "mlflow")
PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_backends(names) -> None:
    """Raise ConfigError for a logger name that is not a backend (before any run directory is made)."""
    for backend in names:
        if backend not in BACKENDS:
            raise ConfigError(f"loggers: unknown {backend!r}; allowed: {', '.join(BACKENDS)}")


def _need(backend: str):
    import importlib

    try:
        return importlib.import_module(PACKAGES[backend])
    except ImportError:
        raise ConfigError(f"logging to {backend} needs its package: pip install {PACKAGES[backend]} "
                          f"(sgdlab's own metrics.jsonl is always written)") from None


def _label(run: dict) -> str:
    return f"{run['arm']}/seed{run['seed']}".replace(" ", "_")


class Logger:
    """log(step, {metric: values per run}) for a fixed list of runs; close() at the end."""

    def __init__(self, backend: str, out: Path, runs: list[dict], name: str):
        if backend not in BACKENDS:
            raise ConfigError(choices_message("logger", backend, BACKENDS))
        _need(backend)
        self.backend, self.runs = backend, runs
        self.out = Path(out) / backend
        self.out.mkdir(parents=True, exist_ok=True)
        if backend == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(self.out))
        elif backend == "wandb":
            import wandb

            self.handles = [wandb.init(project="sgdlab", name=f"{name}/{_label(r)}", dir=str(self.out),
                                       mode="offline", config=r, reinit="create_new") for r in runs]
        else:
            import mlflow

            mlflow.set_tracking_uri(self.out.resolve().as_uri())
            exp = mlflow.set_experiment(name)
            client = mlflow.tracking.MlflowClient()
            self.client = client
            self.ids = [client.create_run(exp.experiment_id, run_name=_label(r)).info.run_id for r in runs]

    def log(self, step: int, metrics: dict) -> None:
        for i, r in enumerate(self.runs):
            vals = {k: float(v[i]) for k, v in metrics.items() if math.isfinite(float(v[i]))}
            if self.backend == "tensorboard":
                for k, x in vals.items():
                    self.writer.add_scalar(f"{k}/{_label(r)}", x, step)
            elif self.backend == "wandb":
                self.handles[i].log(vals, step=step)
            else:
                for k, x in vals.items():
                    self.client.log_metric(self.ids[i], k, x, step=step)

    def close(self) -> None:
        if self.backend == "tensorboard":
            self.writer.close()
        elif self.backend == "wandb":
            for h in self.handles:
                h.finish()
        else:
            for rid in self.ids:
                self.client.set_terminated(rid)
