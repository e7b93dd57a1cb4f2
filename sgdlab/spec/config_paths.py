"""Relative paths in a config, made absolute: read relative to the config file, recorded absolute.

A config names files in ``data.path`` (array files, image archives), ``data.function``
(``./file.py:function``), ``arms.N.init.file`` and ``arms.N.init.run``. Like ``imports``, a
relative one is read relative to the config file that holds it (:func:`resolve_paths` with the
file's directory, in ``catalog.load_experiment``); one given on the command line (``--set``) or in
a bundled experiment, relative to the current directory. The run directory records them absolute
(:func:`absolute_config`), so ``sgdlab run runs/X/config.toml``, ``--resume`` and sweep workers
find the same files from any directory.
"""

from __future__ import annotations

from pathlib import Path

from sgdlab.core.user_modules import is_file_spec

__all__ = ["absolute_config", "resolve_paths"]


def _absolute(p: str, base: Path) -> str:
    path = Path(p).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _function(target: str, base: Path) -> str:
    module, sep, attr = target.rpartition(":")
    if sep and module and is_file_spec(module):
        return f"{_absolute(module, base)}:{attr}"
    return target


def resolve_paths(table: dict, base: str | Path) -> dict:
    """A copy of a plain-dict config with its relative file paths made absolute against ``base``."""
    base = Path(base)
    out = dict(table)
    data = out.get("data")
    if isinstance(data, dict):
        data = dict(data)
        if isinstance(data.get("path"), str) and data["path"].strip():
            data["path"] = _absolute(data["path"], base)
        if isinstance(data.get("function"), str) and data["function"].strip():
            data["function"] = _function(data["function"], base)
        out["data"] = data
    arms = out.get("arms")
    if isinstance(arms, list):
        new_arms = []
        for arm in arms:
            init = arm.get("init") if isinstance(arm, dict) else None
            if isinstance(init, dict):
                init = {k: (_absolute(v, base) if k in ("file", "run") and isinstance(v, str) and v.strip() else v)
                        for k, v in init.items()}
                arm = {**arm, "init": init}
            new_arms.append(arm)
        out["arms"] = new_arms
    return out


def absolute_config(cfg):
    """``cfg`` with every relative file path made absolute against the current directory (the
    config a run directory records); ``cfg`` itself when it has none."""
    from sgdlab.core.config import from_dict, to_dict

    data = to_dict(cfg)
    resolved = resolve_paths(data, Path.cwd())
    return cfg if resolved == data else from_dict(type(cfg), resolved)
