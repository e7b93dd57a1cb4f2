"""sgdlab: study the hidden dynamics of SGD (loss stabilization, sparse features, sharpness).

Python API (no CLI parsing involved)::

    import sgdlab
    cfg = sgdlab.load_experiment("diag-net")          # a frozen ExperimentConfig
    cfg = sgdlab.override(cfg, ["seeds=4", "steps=20001"])
    result = sgdlab.run(cfg, out="runs/diag")         # trains, writes the run directory
    result.metrics["test_loss"]                       # (n_evals, n_runs) numpy array
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sgdlab")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"


_API = {"run", "resume", "load_run", "load_experiment", "list_experiments", "override", "export_run",
        "ExperimentConfig", "RunResult"}
_REGISTER = {"register_data", "register_model", "register_optimizer", "register_schedule", "register_metric",
             "register_figure"}


def __getattr__(name):
    # Lazy: importing sgdlab must stay cheap and must not pull in the trainer for
    # users who only want sgdlab.metrics.
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _REGISTER:
        from . import register

        return getattr(register, name)
    raise AttributeError(f"module 'sgdlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API | _REGISTER)
