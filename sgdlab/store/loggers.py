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

from sgdlab.core.errors import ConfigError
from sgdlab.core.registry import Registry

# name -> backend class ``cls(out: Path, runs: list[dict], name: str)`` with ``log(step, {metric:
# values per run})`` and ``close()``; ``sgdlab.register_logger`` adds one. ``out`` is DIR/<name>/.
LOGGERS: Registry[type] = Registry("logger")


def check_backends(names) -> None:
    """Raise ConfigError for a logger name that is not a backend (before any run directory is made)."""
    for backend in names:
        if LOGGERS.get_or_none(backend) is None:
            from sgdlab.core.plugins import load_entry_points

            load_entry_points()  # an installed plugin may provide it
        if LOGGERS.get_or_none(backend) is None:
            raise ConfigError(f"loggers: unknown {backend!r}; allowed: {', '.join(LOGGERS.names())}")


def _need(package: str, backend: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ConfigError(f"logging to {backend} needs its package: pip install {package} "
                          f"(sgdlab's own metrics.jsonl is always written)") from None


def _label(run: dict) -> str:
    return f"{run['arm']}/seed{run['seed']}".replace(" ", "_")


def finite_values(metrics: dict, i: int) -> dict[str, float]:
    """Run ``i``'s finite values of one evaluation row ({metric: values per run})."""
    return {k: x for k, v in metrics.items() if math.isfinite(x := float(v[i]))}


def Logger(backend: str, out: Path, runs: list[dict], name: str):
    """The ``backend`` logger writing under ``out/backend`` for a fixed list of runs."""
    check_backends([backend])
    path = Path(out) / backend
    path.mkdir(parents=True, exist_ok=True)
    logger = LOGGERS.get(backend)(path, runs, name)
    logger.backend, logger.out = backend, path  # what the run loop and export report
    return logger


@LOGGERS.register("tensorboard")
class TensorBoardLogger:
    """Every run a series tagged ``<metric>/<arm>/seed<s>`` in one event file."""

    def __init__(self, out: Path, runs: list[dict], name: str):
        _need("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.runs, self.writer = runs, SummaryWriter(log_dir=str(out))

    def log(self, step: int, metrics: dict) -> None:
        for i, r in enumerate(self.runs):
            for k, x in finite_values(metrics, i).items():
                self.writer.add_scalar(f"{k}/{_label(r)}", x, step)

    def close(self) -> None:
        self.writer.close()


@LOGGERS.register("wandb")
class WandbLogger:
    """Every run its own offline W&B run (``wandb sync`` uploads them later, if wanted)."""

    def __init__(self, out: Path, runs: list[dict], name: str):
        wandb = _need("wandb", "wandb")
        self.handles = [wandb.init(project="sgdlab", name=f"{name}/{_label(r)}", dir=str(out), mode="offline",
                                   config=r, reinit="create_new") for r in runs]

    def log(self, step: int, metrics: dict) -> None:
        for i, h in enumerate(self.handles):
            h.log(finite_values(metrics, i), step=step)

    def close(self) -> None:
        for h in self.handles:
            h.finish()


@LOGGERS.register("mlflow")
class MlflowLogger:
    """Every run its own MLflow run in a local file store."""

    def __init__(self, out: Path, runs: list[dict], name: str):
        mlflow = _need("mlflow", "mlflow")
        mlflow.set_tracking_uri(out.resolve().as_uri())
        exp = mlflow.set_experiment(name)
        self.client = mlflow.tracking.MlflowClient()
        self.ids = [self.client.create_run(exp.experiment_id, run_name=_label(r)).info.run_id for r in runs]

    def log(self, step: int, metrics: dict) -> None:
        for i, rid in enumerate(self.ids):
            for k, x in finite_values(metrics, i).items():
                self.client.log_metric(rid, k, x, step=step)

    def close(self) -> None:
        for rid in self.ids:
            self.client.set_terminated(rid)
