"""``torch``, imported on first use.

Configs, the command line's ``--help`` / ``list`` / ``show`` and everything else that only reads
or writes configs must not pay torch's import (most of a short run's fixed cost).
Modules that define config kinds therefore write ``from .._torch import torch`` instead of
``import torch``: the name is a stand-in that imports the real module the first time one of its
attributes is read, then holds all of them (later reads are plain attribute lookups, no
forwarding cost). Only attribute access is deferred; ``sys.modules["torch"]`` is never touched.
Rule for such modules: no ``torch.`` at module level (class bases, default arguments,
decorators, non-string annotations), or the import happens at once.
"""

from __future__ import annotations

import importlib
import types


class LazyModule(types.ModuleType):
    """Forwards attribute reads to ``importlib.import_module(name)``, imported on the first read."""

    def __init__(self, name: str):
        super().__init__(name)
        self.__dict__["_loaded"] = False

    def __getattr__(self, attr: str):
        if not self.__dict__["_loaded"]:
            real = importlib.import_module(self.__name__)
            self.__dict__.update(real.__dict__)  # from now on ordinary lookups, no __getattr__
            self.__dict__["_loaded"] = True
            if attr in self.__dict__:
                return self.__dict__[attr]
        return getattr(importlib.import_module(self.__name__), attr)  # e.g. a submodule imported later

    def __repr__(self) -> str:
        state = "loaded" if self.__dict__["_loaded"] else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


torch = LazyModule("torch")

__all__ = ["LazyModule", "torch"]
