"""Config kinds that record a training loop sgdlab did not run (written by ``sgdlab.Monitor``).

A monitor run directory is a standard run directory, so its ``config.toml`` must load as an
``ExperimentConfig``: data, model, optimizer and schedule are these ``external`` kinds. They carry
a description of what the user trained (for the record and for figures), and their ``build()``
raises a ConfigError: the loop lives in the user's code, so the run cannot be re-run by sgdlab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sgdlab.core.errors import ConfigError
from sgdlab.data.base import DataConfig
from sgdlab.models.base import ModelConfig
from sgdlab.optim.config import OptimizerConfig
from sgdlab.optim.schedules import ScheduleConfig

__all__ = ["EXTERNAL", "ExternalData", "ExternalModel", "ExternalOptimizer", "ExternalSchedule"]

EXTERNAL = "external"
_NOT_RUNNABLE = ("written by sgdlab.Monitor from a user's own training loop: {what} cannot be rebuilt and the "
                 "run cannot be re-run by sgdlab (plot, summary and export work)")


def _refuse(what: str):
    raise ConfigError(_NOT_RUNNABLE.format(what=what))


@dataclass(frozen=True)
class ExternalData(DataConfig):
    """The measurement set of a monitored loop."""

    kind: ClassVar[str] = EXTERNAL
    description: str = ""  # what was passed: tensors, a DataLoader, its dataset class
    n: int = 0  # examples in the fixed measurement set

    def build(self):
        _refuse("the data")


@dataclass(frozen=True)
class ExternalModel(ModelConfig):
    """The user's nn.Module and loss."""

    kind: ClassVar[str] = EXTERNAL
    name: str = ""  # the module's class name
    parameters: int = 0  # trainable parameters p
    loss: str = ""  # the loss function's name
    bn_mode: str = ""  # BatchNorm semantics of the Hessian ("" = no BatchNorm)

    def build(self, data):
        _refuse("the model")


@dataclass(frozen=True)
class ExternalOptimizer(OptimizerConfig):
    """The user's optimizer, as read at the start of monitoring."""

    kind: ClassVar[str] = EXTERNAL
    name: str = ""  # optimizer class name ("" = none given)
    batch_size: int = 0  # training batch size given to the monitor (0 = not given)

    def build(self, n, total_steps):
        _refuse("the optimizer")


@dataclass(frozen=True)
class ExternalSchedule(ScheduleConfig):
    """Step sizes set by the user's loop; the monitor logs the current one (metric ``lr``)."""

    kind: ClassVar[str] = EXTERNAL
    lr: float = 0.0  # step size of the first param group at the start (0 = no optimizer given)

    def build(self, total_steps):
        _refuse("the step-size schedule")

    def describe(self) -> str:
        return f"set by the training loop (eta={self.lr:g} at the start)" if self.lr else "set by the training loop"
