"""Data from a Python function: ``kind = "function"`` calls ``module:function(**kwargs)``.

::

    [data]
    kind = "function"
    function = "./tasks.py:make_data"     # or "my_package.tasks:make_data" (importable module)
    kwargs = { n = 100, seed = 0 }

The function returns a dict of arrays (numpy or torch) with the keys of an array file
(:mod:`sgdlab.data.arrays`: ``x``, ``y``, optional ``x_test``, ``y_test``, extras) or a ready
:class:`~sgdlab.data.base.Dataset`; both are validated the same way, and ``test_fraction`` /
``split_seed`` split a result without a test set exactly as for an array file. It runs in every
process that builds the experiment (resume, sweep workers), so it must be deterministic in its
arguments: pass a seed through ``kwargs``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from sgdlab.core.config import check
from sgdlab.core.errors import DataError, SgdlabError
from sgdlab.core.user_modules import exception_line, resolve, split_target
from sgdlab.data.arrays import check_split, dataset_from_output
from sgdlab.data.base import DataConfig, Dataset

KEY = "data.function"


@dataclass(frozen=True)
class FunctionData(DataConfig):
    """The dataset a user function returns (module docstring)."""

    kind: ClassVar[str] = "function"
    # "module:function" (an importable module) or "./file.py:function" (a file, relative to the
    # config file; to the current directory on the command line); returns a dict with keys x, y (optional x_test, y_test, extras) or a Dataset
    function: str = ""
    kwargs: Any = None  # keyword arguments of the call, a table, e.g. {n = 100, seed = 0}
    # Only for a result without x_test / y_test, as data kind "arrays": 0 = test metrics on the
    # training set; in (0, 1) = hold out this fraction (seeded by split_seed).
    test_fraction: float = 0.0
    split_seed: int = 0

    def __post_init__(self):
        split_target(self.function, KEY)
        check(self.kwargs is None or isinstance(self.kwargs, dict),
              f"kwargs must be a table of keyword arguments, e.g. kwargs = {{n = 100}}, got {self.kwargs!r}")
        check_split(self.test_fraction, self.split_seed)

    def build(self) -> Dataset:
        fn = resolve(self.function, KEY)
        if not callable(fn):
            raise DataError(f"{KEY}: {self.function!r} is a {type(fn).__name__}, not a function")
        kwargs = dict(self.kwargs or {})
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as e:
            raise DataError(f"{KEY}: {self.function}(**{kwargs}) does not match its signature: {e}") from None
        except ValueError:  # no signature (builtins): let the call decide
            pass
        try:
            out = fn(**kwargs)
        except SgdlabError:
            raise
        except Exception as e:
            raise DataError(f"{KEY}: {self.function}(**{kwargs}) raised {exception_line(e, fn)}") from e
        return dataset_from_output(out, f"{KEY}: {self.function}", self.test_fraction, self.split_seed)
