"""The bundled experiments and config files: find, load, override. No torch, no trainer: the
command line's ``list`` and ``show`` answer from here in a fraction of a second."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from . import config as _config
from .errors import ConfigError, choices_message
from .experiment import ExperimentConfig
from .config_paths import resolve_paths
from .plugins import resolve_spec

__all__ = ["describe_experiments", "list_experiments", "load_experiment", "override"]


def _experiments_dir():
    return resources.files("sgdlab.experiments")


def list_experiments() -> list[str]:
    """Names of the bundled experiment configs (experiments/*.toml)."""
    return sorted(p.name[:-5] for p in _experiments_dir().iterdir() if p.name.endswith(".toml"))


def load_experiment(name_or_path: str | Path) -> ExperimentConfig:
    """A bundled experiment by name (e.g. "diag-net") or any config TOML file by path."""
    p = Path(name_or_path)
    if p.is_dir() and (p / "config.toml").exists():
        p = p / "config.toml"
    if p.suffix == ".toml" or p.is_file():
        return _from_file(p)
    res = _experiments_dir() / f"{name_or_path}.toml"
    if not res.is_file():
        raise ConfigError(choices_message("experiment", str(name_or_path), list_experiments())
                          + " (or give a path to a .toml config)")
    with resources.as_file(res) as f:
        return _config.load_toml(ExperimentConfig, f)


def _from_file(path: Path) -> ExperimentConfig:
    """A config file; its ``imports`` and file paths (``data.path``, ``data.function``, ``init.file``,
    ``init.run``) are found relative to the file, not the current directory."""
    table = resolve_paths(_config.load_toml_table(path), path.parent)
    if isinstance(table.get("imports"), list):
        table["imports"] = [resolve_spec(s, path.parent) if isinstance(s, str) and s.strip() else s
                            for s in table["imports"]]
    return _config.from_dict(ExperimentConfig, table)


def override(cfg: ExperimentConfig, assignments) -> ExperimentConfig:
    """cfg with ``key.path=value`` assignments applied (validated), e.g. ["seeds=4"]."""
    return _config.override(cfg, list(assignments))


def describe_experiments() -> list[tuple[str, str]]:
    """(name, description) of every bundled experiment, read from the TOML files (no config is built)."""
    out = []
    for name in list_experiments():
        with resources.as_file(_experiments_dir() / f"{name}.toml") as f:
            table = _config.load_toml_table(f)
        out.append((name, str(table.get("description", ""))))
    return out
