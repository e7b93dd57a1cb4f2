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

_API = {"run", "resume", "load_run", "load_experiment", "list_experiments", "override", "export_run",
        "ExperimentConfig", "RunResult"}
_REGISTER = {"register_data", "register_model", "register_optimizer", "register_schedule", "register_metric",
             "register_figure", "register_experiments", "register_docs_numbers", "register_architecture",
             "register_image_dataset", "register_executor", "register_logger",
             "register_metric_spec"}
_MONITOR = {"Monitor", "LogSpaced"}  # measure a user's own training loop (sgdlab/workflows/monitor.py)


def __getattr__(name):
    # Lazy: importing sgdlab must stay cheap (importlib.metadata alone is ~20 ms of `sgdlab --help`)
    # and must not pull in the trainer for users who only want sgdlab.metrics.
    if name == "__version__":
        from sgdlab._version import version

        globals()["__version__"] = v = version()
        return v
    if name in _API:
        from sgdlab.workflows import api

        return getattr(api, name)
    if name in _REGISTER:
        from sgdlab.frontends import register

        return getattr(register, name)
    if name in _MONITOR:
        from sgdlab.workflows import monitor

        return getattr(monitor, name)
    raise AttributeError(f"module 'sgdlab' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"__version__"} | _API | _REGISTER | _MONITOR)


# Module paths from before the layer folders (sgdlab.runs, sgdlab.api, ...) keep importing, with a
# DeprecationWarning, for one release. A finder rather than stub files keeps the top of the package
# to the facade and the version.
_MOVED = {
    "errors": "core.errors", "registry": "core.registry", "config": "core.config",
    "plugins": "core.plugins", "user_modules": "core.user_modules", "_torch": "core._torch",
    "_jit": "core._jit", "schedules": "optim.schedules", "experiment": "spec.experiment",
    "phases": "spec.phases", "catalog": "spec.catalog", "external": "spec.external",
    "train": "engine.train", "runs": "store.runs",
    "files": "store.files", "locking": "store.locking", "summary": "store.summary",
    "loggers": "store.loggers", "api": "workflows.api", "inits": "workflows.inits",
    "window": "workflows.window", "compare": "workflows.compare", "sweep": "workflows.sweep",
    "slurm": "workflows.slurm", "monitor": "workflows.monitor", "cli": "frontends.cli",
    "register": "frontends.register", "integrations": "frontends.integrations",
    "docs_numbers": "frontends.docs_numbers",
    # the studies' own modules, now in their folders
    "models.diagonal": "studies.diag_net.model", "models._diag_kernel": "studies.diag_net._kernel",
    "metrics.diagonal": "studies.diag_net.metrics", "metrics.diag_rank": "studies.diag_net.rank",
    "plots.surface": "studies.diag_net.surface", "plots.relu": "studies.relu_nets.figures",
    "data.related": "studies.related.data", "metrics.related": "studies.related.metrics",
    "plots.related": "studies.related.figures", "models.two_layer": "studies.related.two_layer",
    "models.linear": "studies.related.linear", "data.eos": "studies.eos.data",
}


def _install_moved_finder() -> None:
    import importlib
    import importlib.abc
    import importlib.machinery
    import sys
    import warnings

    class _Alias(importlib.abc.Loader):
        def __init__(self, new: str):
            self.new = new

        def create_module(self, spec):
            warnings.warn(f"{spec.name} moved to {self.new}; the old path goes in the next release",
                          DeprecationWarning, stacklevel=2)
            return importlib.import_module(self.new)

        def exec_module(self, module):  # the real module is already executed
            pass

    class _MovedFinder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            head, _, rest = fullname.partition(".")
            if head != "sgdlab" or not rest:
                return None
            parts = rest.split(".")
            for n in range(len(parts), 0, -1):  # the longest moved prefix
                old = ".".join(parts[:n])
                if old in _MOVED:
                    new = ".".join(["sgdlab", _MOVED[old], *parts[n:]])
                    return importlib.machinery.ModuleSpec(fullname, _Alias(new))
            return None

    if not any(type(f).__name__ == "_MovedFinder" for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())


_install_moved_finder()
