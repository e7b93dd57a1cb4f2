"""Exact initial parameters of arms (``ArmConfig.init``): from a tensor file or another run.

:func:`initial_params` turns every arm's ``init`` into ``{run index: {name: tensor}}`` for
:meth:`sgdlab.engine.train.Engine.initial_state`, matching runs one by one:

* ``file``: each entry has the parameter's shape (every seed of the arm starts there) or a
  leading seed axis of the arm's number of seeds (seed order);
* ``run``: run ``(arm, seed)`` starts where the source run of the same seed and of arm ``arm``
  (default: the same label) was at ``step``; a source arm that ran once (no randomness) serves
  every seed.

Every mismatch (a missing file or arm or seed or step, a parameter absent or of another shape)
is one :class:`~sgdlab.core.errors.ConfigError` naming the arm and what is available.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from sgdlab.core.errors import ConfigError, DataError
from sgdlab.data.checks import check_values, real_array
from sgdlab.spec.experiment import ExperimentConfig, InitConfig
from sgdlab.store.runs import RunDir, safe_load

__all__ = ["initial_params"]


def _read(path: Path, where: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{where}: init file {str(path)!r} does not exist")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: np.array(z[k]) for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise DataError(f"{where}: init file {str(path)!r} is unreadable ({type(e).__name__}: {e})") from None
    else:
        data = safe_load(path, f"{where}: init file")
    if not isinstance(data, dict) or not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
        raise ConfigError(f"{where}: init file {str(path)!r} must hold a table of tensors, one per parameter")
    source = f"{where}: init file {str(path)!r}"
    out = {}
    for k, v in data.items():  # the rules of every user array (sgdlab.data.checks): real, finite, bounded
        a = real_array(str(k), v, source)
        check_values(str(k), a, source)
        out[str(k)] = torch.from_numpy(np.ascontiguousarray(a))
    return out


def _from_file(init: InitConfig, where: str, runs, shapes: dict[str, tuple]) -> dict[int, dict]:
    data = _read(Path(init.file), where)
    missing = sorted({k for k in shapes if not k.startswith("buffer:")} - set(data))
    extra = sorted(set(data) - set(shapes))
    if missing or extra:
        raise ConfigError(f"{where}: init file {init.file!r} " + (f"lacks {missing}" if missing else
                          f"has {extra}, which the model does not") + f"; the model's parameters: {shapes}")
    out: dict[int, dict] = {r.index: {} for r in runs}
    for k, v in data.items():
        if tuple(v.shape) == shapes[k]:
            for r in runs:
                out[r.index][k] = v
        elif tuple(v.shape) == (len(runs), *shapes[k]):
            for i, r in enumerate(runs):
                out[r.index][k] = v[i]
        else:
            raise ConfigError(f"{where}: init file {init.file!r}: {k!r} has shape {tuple(v.shape)}; expected "
                              f"{shapes[k]} (every seed) "
                              f"or {(len(runs), *shapes[k])} (one per seed of the arm, seeds "
                              f"{[r.seed for r in runs]})")
    return out


def _from_run(init: InitConfig, where: str, label: str, runs) -> dict[int, dict]:
    rd = RunDir(init.run)
    src_arm = init.arm or label
    src_runs = rd.runs()
    src = [r for r in src_runs if r["arm"] == src_arm]
    if not src:
        arms = sorted({r["arm"] for r in src_runs})
        raise ConfigError(f"{where}: run {init.run!r} has no arm {src_arm!r}; its arms: {arms} (set init.arm)")
    saved = rd.saved_params()
    if not saved:
        raise ConfigError(f"{where}: run {init.run!r} saved no parameters (no snapshots, no checkpoint)")
    step = max(saved) if init.step == -1 else init.step
    if step not in saved:
        raise ConfigError(f"{where}: run {init.run!r} saved no parameters at step {step}; saved steps: "
                          f"{sorted(saved)}")
    by_seed = {r["seed"]: r["index"] for r in src}
    # Only a source arm without any randomness (one run standing for every seed) serves every seed;
    # any other is matched run by run, seed by seed.
    shared = src[0]["index"] if len(src) == 1 and src[0].get("deterministic") else None
    out = {}
    for r in runs:
        i = by_seed.get(r.seed, shared)
        if i is None:
            raise ConfigError(f"{where}: run {init.run!r} has no run of arm {src_arm!r} with seed {r.seed}; "
                              f"its seeds: {sorted(by_seed)}")
        out[r.index] = dict(saved[step][i])
    return out


def initial_params(cfg: ExperimentConfig, eng) -> dict[int, dict[str, torch.Tensor]]:
    """``{run index: {name: tensor}}`` for every run of an arm with ``init`` (module docstring)."""
    out: dict[int, dict] = {}
    shapes = None
    for a, arm in enumerate(cfg.arms):
        if arm.init is None:
            continue
        where = f"arms.{a}.init ({arm.label})"
        runs = [r for r in eng.runs if r.arm == arm.label]
        if arm.init.file:
            if shapes is None:
                shapes = {k: tuple(v.shape[1:]) for k, v in eng.model.init_params([0], dtype=eng.dtype).items()}
            out.update(_from_file(arm.init, where, runs, shapes))
        else:
            out.update(_from_run(arm.init, where, arm.label, runs))
    return out
