"""The bundled experiments and config files: find, load, override. No torch, no trainer: the
command line's ``list`` and ``show`` answer from here in a fraction of a second.

Experiments are named TOML files in folders that studies and plugins register
(``sgdlab.register_experiments(folder)``, from the module their ``sgdlab.plugins`` entry point names).
"""

from __future__ import annotations

from pathlib import Path

from sgdlab.core import config as _config
from sgdlab.core.errors import ConfigError, choices_message
from sgdlab.core.plugins import load_entry_points, resolve_spec
from sgdlab.core.registry import Registry
from sgdlab.spec.config_paths import resolve_paths
from sgdlab.spec.experiment import ExperimentConfig

__all__ = ["EXPERIMENTS", "add_experiments", "describe_experiments", "list_experiments", "load_experiment",
           "override"]

EXPERIMENTS: Registry[Path] = Registry("experiment")  # name -> its TOML file


def add_experiments(folder: str | Path) -> list[str]:
    """Register every ``NAME.toml`` of ``folder`` as experiment NAME; returns the names.

    A name already registered from another file raises, naming both files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"register_experiments: {folder} is not a folder of experiment .toml files")
    names = []
    for f in sorted(folder.glob("*.toml")):
        have = EXPERIMENTS.get_or_none(f.stem)
        if have is None:
            EXPERIMENTS.add(f.stem, f.resolve())
        elif have != f.resolve():
            raise ConfigError(f"experiment {f.stem!r} is registered twice: {have} and {f.resolve()}")
        names.append(f.stem)
    return names


def list_experiments() -> list[str]:
    """Names of the registered experiment configs (the studies' and installed plugins')."""
    load_entry_points()
    return EXPERIMENTS.names()


def load_experiment(name_or_path: str | Path) -> ExperimentConfig:
    """A bundled experiment by name (e.g. "diag-net") or any config TOML file by path."""
    p = Path(name_or_path)
    if p.is_dir() and (p / "config.toml").exists():
        p = p / "config.toml"
    if p.suffix == ".toml" or p.is_file():
        return _from_file(p)
    names = list_experiments()
    if str(name_or_path) not in names:
        raise ConfigError(choices_message("experiment", str(name_or_path), names)
                          + " (or give a path to a .toml config)")
    return _config.load_toml(ExperimentConfig, EXPERIMENTS.get(str(name_or_path)))


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
        table = _config.load_toml_table(EXPERIMENTS.get(name))
        out.append((name, str(table.get("description", ""))))
    return out
