"""Sweep files (``sgdlab sweep --file sweep.toml``): what they may hold, checked before anything is
planned::

    experiment = "diag-net"
    seeds = 8
    steps = 20001
    set = ["metrics.curvature.every=0"]

    [grid]
    "arms.0.schedule.lr" = [0.2, 0.25]       # values
    "arms.1.schedule.lr" = "logspace(0.25, 0.29, 4)"   # or a range, as in --grid

    [slurm]                                  # resources of the slurm executor (workflows.slurm.SlurmOptions)
    partition = "gpu"
"""

from __future__ import annotations

from sgdlab.core.config import load_toml_table
from sgdlab.core.errors import ConfigError

__all__ = ["SWEEP_FILE_KEYS", "read_sweep_file"]

# Top-level keys of a sweep file and the TOML type each must have.
SWEEP_FILE_KEYS = {"experiment": str, "seeds": int, "steps": int, "set": list, "grid": dict, "slurm": dict}


def read_sweep_file(path: str) -> dict:
    """The sweep file at ``path`` as a table, its keys and types checked; every error names the file."""
    spec = load_toml_table(path, "sweep file")
    for k, v in spec.items():
        if k not in SWEEP_FILE_KEYS:
            raise ConfigError(f"sweep file {path!r}: unknown key {k!r}; allowed: {', '.join(sorted(SWEEP_FILE_KEYS))}")
        want = SWEEP_FILE_KEYS[k]
        if not isinstance(v, want) or isinstance(v, bool):
            raise ConfigError(f"sweep file {path!r}: {k} must be a {want.__name__}, got {v!r}")
    for key, v in spec.get("grid", {}).items():
        if not (isinstance(v, str) or (isinstance(v, list) and v)):
            raise ConfigError(f"sweep file {path!r}: grid key {key!r} must be a non-empty list of values or a "
                              f"range such as 'logspace(0.1, 1, 5)', got {v!r}")
    return spec
