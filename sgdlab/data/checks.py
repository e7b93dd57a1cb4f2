"""The one set of rules for arrays a user hands to sgdlab, whatever the door: array files and
data functions (:mod:`sgdlab.data.arrays`), exact-init files (:mod:`sgdlab.workflows.inits`) and the data a
model is given (:func:`check_model_data`).

* an array is numeric and real: bool, integer or float (complex values are refused, never cast);
* float values are finite and of magnitude <= :data:`MAX_ABS` (losses square and sum them: larger
  values overflow float64 and show up later as a divergence at step 0 or an error from a library);
* extras with a meaning have their shape: ``support`` ``(d,)`` of booleans (or 0/1), ``beta_star``
  ``(d,)``, for inputs ``x`` of ``d`` features;
* a model states what it needs (``ModelConfig.check_data``), e.g. the diagonal net scalar targets.

Every violation is one :class:`~sgdlab.core.errors.DataError` naming the source (the file, or the
function), the key and what is expected.
"""

from __future__ import annotations

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.errors import DataError

__all__ = ["MAX_ABS", "check_extras", "check_model_data", "check_values", "data_source", "real_array"]

# numpy dtype kinds accepted: bool, signed / unsigned integer, float.
NUMERIC_KINDS = "biuf"
# Largest magnitude of a float value: its square times 1e8 examples stays far below float64's
# 1.8e308, so losses, Gram matrices and gradients of sane models stay finite.
MAX_ABS = 1e100
# Extras of a fixed meaning: name -> what one example's feature axis has to match.
FEATURE_EXTRAS = ("support", "beta_star")


def real_array(name: str, value, source: str) -> np.ndarray:
    """``value`` (numpy, torch or nested lists) as a numpy array of a real numeric dtype."""
    if torch.is_tensor(value):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            value = value.float()
        value = value.resolve_conj().numpy() if value.is_complex() else value.numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as e:
        raise DataError(f"{source}: {name!r} is not an array ({e})") from None
    if a.dtype.kind == "c":
        raise DataError(f"{source}: {name!r} has complex dtype {a.dtype}; expected real values (bool, integer or "
                        f"float): complex values are never cast")
    if a.dtype.kind not in NUMERIC_KINDS:
        raise DataError(f"{source}: {name!r} has non-numeric dtype {a.dtype}; expected bool, integer or float")
    return a


def check_values(name: str, a: np.ndarray, source: str, allow_nan: bool = False) -> None:
    """Float values finite (NaN allowed with ``allow_nan``) and of magnitude <= MAX_ABS."""
    if a.dtype.kind != "f" or a.size == 0:
        return
    bad = ~np.isfinite(a) if not allow_nan else np.isinf(a)
    if bad.any():
        first = np.argwhere(bad)[0].tolist()
        raise DataError(f"{source}: {name!r} has {int(bad.sum())} NaN/inf values (first at index {first}); "
                        f"expected finite values")
    if float(np.finfo(a.dtype).max) <= MAX_ABS:  # float16/32: every finite value is small enough
        return
    big = np.abs(a) > MAX_ABS
    if big.any():
        first = np.argwhere(big)[0].tolist()
        raise DataError(f"{source}: {name!r} has {int(big.sum())} values of magnitude > {MAX_ABS:g} (first at "
                        f"index {first}, {a[tuple(first)]:g}); their squares overflow float64: rescale them")


def check_extras(extras: dict, x_shape: tuple, source: str) -> dict:
    """Extras of a fixed meaning checked against the inputs; ``support`` becomes bool."""
    if len(x_shape) != 2:
        return extras
    d = x_shape[1]
    for k in FEATURE_EXTRAS:
        if k in extras and tuple(extras[k].shape) != (d,):
            raise DataError(f"{source}: extra {k!r} has shape {tuple(extras[k].shape)}; expected ({d},), one "
                            f"value per feature of 'x'")
    if "support" in extras:
        s = extras["support"]
        if s.dtype != torch.bool:
            if s.is_floating_point() or not bool(((s == 0) | (s == 1)).all()):
                raise DataError(f"{source}: extra 'support' must be booleans (or 0/1 integers) marking the "
                                f"relevant features, got {s.dtype} values {s.flatten()[:4].tolist()}")
            extras = {**extras, "support": s.to(torch.bool)}
    return extras


def data_source(data_cfg) -> str:
    """How error messages name where a config's data comes from."""
    for key in ("path", "function"):
        if getattr(data_cfg, key, ""):
            return f"data.{key} {getattr(data_cfg, key)!r}"
    return f"data kind {data_cfg.kind!r}"


def check_model_data(model_cfg, data, source: str) -> None:
    """The model's own requirements on the data (``ModelConfig.check_data``), before it is built."""
    check = getattr(model_cfg, "check_data", None)
    if check is not None:
        check(data, source)
