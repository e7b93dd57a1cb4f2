"""Explicit initial values of a model's parameters, written in its config (no seed hunting).

A value is one number (every entry of the parameter) or nested lists of the parameter's shape,
e.g. ``u0 = 1.0`` or ``u0 = [1.0, 0.5, 0.5]`` for a ``(d,)`` vector, ``w0 = [[2.0]]`` for a
``(width, d)`` matrix. Models check the numbers when the config is built and the shape when the
data (hence ``d``) is known, with errors naming the key, the shape given and the shape expected.
"""

from __future__ import annotations

import math

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import ConfigError

# One number, a list (a vector) or a list of lists (a matrix), as TOML writes them.
InitValues = float | tuple[float, ...] | tuple[tuple[float, ...], ...] | None


def _flat(value) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return [value]


def check_init_values(key: str, value: InitValues) -> None:
    """Every number finite, lists non-empty (shapes are checked by :func:`init_tensor`)."""
    if value is None:
        return
    nums = _flat(value)
    check(len(nums) > 0, f"{key}: an empty list; give one number or the parameter's values")
    check(all(math.isfinite(x) for x in nums), f"{key}: initial values must be finite numbers, got {value!r}")


def init_tensor(key: str, value: InitValues, shape: tuple[int, ...], meaning: str,
                column_ok: bool = False) -> torch.Tensor | None:
    """The float64 tensor of ``shape`` that ``value`` describes (None stays None).

    One number fills the tensor; a list must have exactly ``shape``. ``column_ok``: a matrix of
    shape ``(k, 1)`` may also be written as a flat list of ``k`` numbers (a column vector).
    ``meaning`` says what the shape is made of, for the error message.
    """
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return torch.full(shape, float(value), dtype=torch.float64)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except ValueError:  # ragged nested lists
        arr = None
    if arr is not None and column_ok and len(shape) == 2 and shape[1] == 1 and arr.shape == shape[:1]:
        arr = arr[:, None]
    if arr is None or arr.shape != shape:
        got = "rows of unequal length" if arr is None else f"shape {np.shape(value)}"
        raise ConfigError(f"{key}: expected one number or values of shape {shape} "
                          f"({meaning}), got {got}")
    return torch.from_numpy(arr.copy())


def init_vector(key: str, value: InitValues, d: int) -> torch.Tensor | None:
    """A ``(d,)`` initial vector of a model on ``d`` input coordinates."""
    return init_tensor(key, value, (d,), f"d = {d} input coordinates")
