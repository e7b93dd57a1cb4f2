"""sgdlab: study the hidden dynamics of SGD (loss stabilization, sparse features, sharpness).

Python API (no CLI parsing involved)::

    import sgdlab
    cfg = sgdlab.load_experiment("diag-net")          # a frozen ExperimentConfig
    cfg = sgdlab.override(cfg, ["seeds=4", "steps=20001"])
    result = sgdlab.run(cfg, out="runs/diag")         # trains, writes the run directory
    result.metrics["test_loss"]                       # (n_evals, n_runs) numpy array

    monitor = sgdlab.Monitor(model, loss_fn, (x, y), optimizer, out="runs/mine")  # YOUR loop
    monitor.step()                                    # once per step; docs/curvature.md
"""

import os as _os

# MKL (torch's BLAS on x86) otherwise picks code paths by the memory alignment of each row, so a
# run's numbers would change in the last bits with the runs sharing its batched tensors; strict
# conditional numerical reproducibility makes them depend on the values only, which spreading
# runs over processes relies on (sgdlab.shards). MKL reads it at its first call; a user's value is
# kept.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

_API = {"run", "resume", "load_run", "load_experiment", "list_experiments", "override", "export_run",
        "ExperimentConfig", "RunResult"}
_REGISTER = {"register_data", "register_model", "register_optimizer", "register_schedule", "register_metric",
             "register_figure"}
_MONITOR = {"Monitor", "LogSpaced"}  # measure a user's own training loop (sgdlab/monitor.py)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sgdlab")
    except PackageNotFoundError:  # running from a source tree without install
        return "0.0.0+unknown"


def __getattr__(name):
    # Lazy: importing sgdlab must stay cheap (importlib.metadata alone is ~20 ms of `sgdlab --help`)
    # and must not pull in the trainer for users who only want sgdlab.metrics.
    if name == "__version__":
        globals()["__version__"] = v = _version()
        return v
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _REGISTER:
        from . import register

        return getattr(register, name)
    if name in _MONITOR:
        from . import monitor

        return getattr(monitor, name)
    raise AttributeError(f"module 'sgdlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"__version__"} | _API | _REGISTER | _MONITOR)
