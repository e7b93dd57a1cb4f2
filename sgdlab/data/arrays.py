"""Data from arrays, without code: ``kind = "arrays"`` reads a ``.npz`` / ``.pt`` file.

The file (or the dict a ``function`` data kind returns, :mod:`sgdlab.data.function`) holds

* ``x`` ``(n, d)`` features or ``(n, C, H, W)`` images and ``y`` ``(n,)`` or ``(n, k)``: required;
* ``x_test``, ``y_test``: optional, both or neither, shaped like ``x``, ``y`` after the first axis;
* any other key: an *extra* handed to models and metrics (e.g. ``support`` (d,) bool,
  ``beta_star`` (d,), ``rank_inputs`` (m, d), ``num_classes`` ()).

Types: real ``y`` are regression targets (float64); integer or bool ``y`` are class labels
(int64, >= 0; ``num_classes`` = the largest label + 1 unless given as an extra). ``x`` becomes
float64, except uint8 images ``(n, C, H, W)``, which stay uint8 (deep nets scale them to [0, 1]).
Inputs and training targets must be finite; ``y_test`` may be all NaN (no test labels: models skip
the test loss).

Without ``x_test`` / ``y_test``: ``test_fraction = 0`` (default) evaluates the test metrics on
the training set itself (``test_loss`` = ``train_loss``); ``0 < test_fraction < 1`` holds out that
fraction of the examples, chosen by ``default_rng(split_seed).permutation(n)`` (the first
``round(test_fraction n)`` of the permutation are the test set).

Every malformation (missing file, unreadable or corrupt file, missing key, length mismatch,
non-numeric dtype, NaN/inf, wrong rank) is one :class:`~sgdlab.core.errors.DataError` line naming
the file and the key. ``.pt`` files are read with ``torch.load(weights_only=True)`` and ``.npz``
files with ``allow_pickle=False``: a data file never runs code.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import DataError, choices_message
from sgdlab.data.base import DataConfig, Dataset
from sgdlab.data.checks import check_extras, check_values, real_array

__all__ = ["ArrayFile", "dataset_from_arrays", "dataset_from_output", "load_arrays"]

REQUIRED = ("x", "y")
TEST_KEYS = ("x_test", "y_test")
# Rank of one example of x: flat features (d,) or an image (C, H, W).
INPUT_RANKS = (1, 3)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise DataError(f"cannot read array file {str(path)!r}: not a .npz archive (write it with "
                        f"np.savez(path, x=x, y=y))")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _weights_only_detail(e: Exception) -> str:
    """The useful line of torch's long weights-only refusal (e.g. 'Unsupported global: ...')."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        after = [ln.strip() for ln in text.split(marker, 1)[1].splitlines() if ln.strip()]
        if after:
            return after[0].split(". ")[0]
    return type(e).__name__


def _read_pt(path: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of corrupt files
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise DataError(f"cannot read array file {str(path)!r}: torch.load(weights_only=True) refused it "
                        f"({_weights_only_detail(e)}); a data file must be a dict of tensors, "
                        f"torch.save({{'x': x, 'y': y}}, path)") from None
    if not isinstance(obj, Mapping):
        raise DataError(f"{str(path)!r}: expected a dict of arrays (torch.save({{'x': ..., 'y': ...}}, path)), "
                        f"got {type(obj).__name__}")
    return dict(obj)


READERS = {".npz": _read_npz, ".pt": _read_pt, ".pth": _read_pt}


def load_arrays(path: str | Path) -> dict[str, Any]:
    """The arrays of a ``.npz`` / ``.pt`` / ``.pth`` file as a dict (not yet validated)."""
    p = Path(path)
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        raise DataError(f"{str(path)!r}: {choices_message('array file type', p.suffix or '(none)', READERS)}")
    if not p.is_file():
        raise DataError(f"array file {str(path)!r} does not exist (relative paths are read from the current "
                        f"directory, {Path.cwd()})")
    try:
        return reader(p)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001
        # torch.load / np.load raise many types on corrupt input (UnpicklingError, RuntimeError,
        # zipfile.BadZipFile, EOFError, ValueError for object arrays, ...): all mean "not a
        # readable array file", reported in one line.
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read array file {str(path)!r} ({type(e).__name__}: {msg})") from None


def _numeric(name: str, value, source: str) -> np.ndarray:
    return real_array(name, value, source)


def _finite(name: str, a: np.ndarray, source: str) -> None:
    check_values(name, a, source)


def _check_x(name: str, x: np.ndarray, source: str) -> None:
    if x.ndim - 1 not in INPUT_RANKS:
        hint = f" (one feature per example: {name}[:, None])" if x.ndim == 1 else ""
        raise DataError(f"{source}: {name!r} must be (n, d) features or (n, C, H, W) images, got shape "
                        f"{x.shape}{hint}")


def _check_y(name: str, y: np.ndarray, source: str) -> None:
    if y.ndim not in (1, 2):
        raise DataError(f"{source}: {name!r} must be (n,) or (n, k), got shape {y.shape}")
    if y.dtype.kind in "biu":
        if y.ndim != 1:
            raise DataError(f"{source}: integer class labels {name!r} must be (n,), got shape {y.shape}")
        if y.size and y.min() < 0:
            raise DataError(f"{source}: class labels {name!r} must be >= 0, got {y.min()}")


def _x_tensor(x: np.ndarray) -> torch.Tensor:
    if x.dtype == np.uint8 and x.ndim == 4:
        return torch.from_numpy(np.ascontiguousarray(x))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


def _y_tensor(y: np.ndarray) -> torch.Tensor:
    if y.dtype.kind in "biu":
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float64))


def _extra_tensor(a: np.ndarray) -> torch.Tensor:
    if a.dtype.kind == "b":
        return torch.from_numpy(np.ascontiguousarray(a))
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64 if a.dtype.kind in "iu" else np.float64))


def _split(n: int, test_fraction: float, split_seed: int, source: str) -> tuple[np.ndarray, np.ndarray]:
    n_test = round(test_fraction * n)
    if not 1 <= n_test <= n - 1:
        raise DataError(f"{source}: test_fraction {test_fraction} of {n} examples leaves {n_test} test and "
                        f"{n - n_test} training examples; both need at least 1")
    perm = np.random.default_rng(split_seed).permutation(n)
    return perm[n_test:], perm[:n_test]


def dataset_from_arrays(arrays: Mapping[str, Any], source: str, test_fraction: float = 0.0,
                        split_seed: int = 0) -> Dataset:
    """Validate ``arrays`` (module docstring) and build the :class:`Dataset`; ``source`` names
    where they came from in error messages (a file path, ``module:function``)."""
    keys = sorted(map(str, arrays))
    for k in REQUIRED:
        if k not in arrays:
            raise DataError(f"{source}: no array {k!r}; found: {', '.join(keys) or 'nothing'} "
                            f"(required: x, y; optional: x_test, y_test, extras)")
    has_test = [k in arrays for k in TEST_KEYS]
    if any(has_test) and not all(has_test):
        given, missing = TEST_KEYS if has_test[0] else TEST_KEYS[::-1]
        raise DataError(f"{source}: {given!r} without {missing!r}; give both or neither")
    a = {k: _numeric(k, v, source) for k, v in arrays.items()}
    x, y = a["x"], a["y"]
    _check_x("x", x, source)
    _check_y("y", y, source)
    if len(x) != len(y):
        raise DataError(f"{source}: 'x' has {len(x)} examples but 'y' has {len(y)}")
    if len(x) == 0:
        raise DataError(f"{source}: 'x' has no examples")
    _finite("x", x, source)
    _finite("y", y, source)
    if all(has_test):
        xt, yt = a["x_test"], a["y_test"]
        if test_fraction:
            raise DataError(f"{source}: the arrays have their own test split (x_test, y_test); leave "
                            f"data.test_fraction at 0, got {test_fraction}")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{source}: 'x_test' examples have shape {xt.shape[1:]}, 'x' examples {x.shape[1:]}")
        if yt.shape[1:] != y.shape[1:] or len(yt) != len(xt):
            raise DataError(f"{source}: 'y_test' has shape {yt.shape}, expected {(len(xt), *y.shape[1:])} "
                            f"(one row per 'x_test' example, like 'y')")
        if (yt.dtype.kind in "biu") != (y.dtype.kind in "biu"):
            raise DataError(f"{source}: 'y' is {y.dtype} but 'y_test' is {yt.dtype}: both class labels (integer) "
                            f"or both real targets")
        _check_y("y_test", yt, source)
        _finite("x_test", xt, source)
        # all NaN: no test labels
        check_values("y_test", yt, source, allow_nan=yt.dtype.kind == "f" and bool(np.isnan(yt).all()))
    elif test_fraction:
        tr, te = _split(len(x), test_fraction, split_seed, source)
        x, y, xt, yt = x[tr], y[tr], x[te], y[te]
    else:  # no test split: the test metrics are those of the training set
        xt, yt = x, y
    extras = {k: _extra_tensor(v) for k, v in a.items() if k not in REQUIRED + TEST_KEYS}
    for k in extras:
        check_values(k, a[k], source)
    extras = check_extras(extras, x.shape, source)
    if y.dtype.kind in "biu":
        top = int(max(y.max(), yt.max() if yt.size else 0))
        if "num_classes" in extras:
            k = extras["num_classes"]
            if k.numel() != 1 or int(k) <= top:
                raise DataError(f"{source}: 'num_classes' must be one integer > the largest label {top}, "
                                f"got {k.tolist()}")
        else:
            extras["num_classes"] = torch.tensor(top + 1)
    return Dataset(_x_tensor(x), _y_tensor(y), _x_tensor(xt), _y_tensor(yt), extras)


def dataset_from_output(out: Any, source: str, test_fraction: float = 0.0, split_seed: int = 0) -> Dataset:
    """What a user's data function returned (a dict of arrays, or a ready :class:`Dataset`),
    validated like an array file and built into a Dataset; a returned Dataset keeps its
    ``augment`` (a batch transform, not an array). ``source`` names the function in errors."""
    augment = out.augment if isinstance(out, Dataset) else None
    if isinstance(out, Dataset):
        out = {"x": out.x_train, "y": out.y_train, "x_test": out.x_test, "y_test": out.y_test, **out.extras}
    if not isinstance(out, Mapping):
        raise DataError(f"{source} returned a {type(out).__name__}; expected a dict of arrays with keys x, y "
                        f"(optional x_test, y_test, extras) or a sgdlab Dataset")
    ds = dataset_from_arrays(out, source, test_fraction, split_seed)
    ds.augment = augment
    return ds


def check_split(test_fraction: float, split_seed: int) -> None:
    """Config-time checks of the two split keys shared by the array-based kinds."""
    check(0.0 <= test_fraction < 1.0, f"test_fraction must be in [0, 1), got {test_fraction}")
    check(split_seed >= 0, f"split_seed must be >= 0, got {split_seed}")


@dataclass(frozen=True)
class ArrayFile(DataConfig):
    """Arrays from a ``.npz`` (``np.savez(path, x=..., y=...)``) or ``.pt`` / ``.pth``
    (``torch.save({"x": ..., "y": ...}, path)``) file; keys, types and the test split as in the
    module docstring of :mod:`sgdlab.data.arrays`."""

    kind: ClassVar[str] = "arrays"
    # The file, relative to the current directory (recorded as given): keys x, y, optional
    # x_test, y_test and extras (any other key, e.g. support, beta_star, num_classes).
    path: str = ""
    # Only for a file without x_test / y_test: 0 = test metrics on the training set itself;
    # in (0, 1) = hold out this fraction of the examples as the test set (seeded by split_seed).
    test_fraction: float = 0.0
    split_seed: int = 0  # permutation seed of the test_fraction split

    def __post_init__(self):
        check(bool(self.path), "path: give the array file, e.g. path = \"data/task.npz\" (.npz, .pt or .pth)")
        check_split(self.test_fraction, self.split_seed)

    def build(self) -> Dataset:
        return dataset_from_arrays(load_arrays(self.path), f"data.path {self.path!r}", self.test_fraction,
                                   self.split_seed)
