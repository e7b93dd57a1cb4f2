"""Optional logging backends: TensorBoard events readable back; clear errors when not installed."""

import importlib

import pytest

import sgdlab
from sgdlab.core.errors import ConfigError

pytestmark = pytest.mark.study("diag_net")


def tiny(**over):
    cfg = sgdlab.load_experiment("diag-net")
    sets = ["steps=300", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=50",
            "eval.grid='linear'", "eval.points=4"]
    return sgdlab.override(cfg, sets + [f"{k}={v}" for k, v in over.items()])


def test_unknown_logger_lists_the_backends(tmp_path):
    # checked by the store before the run directory exists (the experiment schema does not know them)
    with pytest.raises(ConfigError, match="loggers: unknown 'neptune'; allowed: mlflow, (.*, )?tensorboard, wandb"):
        sgdlab.run(tiny(loggers="['neptune']"), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    from sgdlab.store import loggers

    real = importlib.import_module

    def fake(name, *a, **k):
        if name == "wandb":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(ConfigError, match="pip install wandb"):
        sgdlab.run(tiny(loggers="['wandb']"), tmp_path / "r", progress=False, quiet=True)
    assert {"mlflow", "tensorboard", "wandb"} <= set(loggers.LOGGERS.names())


def test_tensorboard_live_and_export(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = sgdlab.run(tiny(loggers="['tensorboard']"), tmp_path / "r", progress=False, quiet=True)
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    tag = "test_loss/SGD_eta=0.25/seed0"
    assert tag in tags
    vals = [e.value for e in acc.Scalars(tag)]
    assert vals == pytest.approx(res.metrics["test_loss"][:, 0].tolist(), rel=1e-6)
    from sgdlab.workflows.api import export_run as export

    out = export(tmp_path / "r", "tensorboard")
    assert out.exists()
