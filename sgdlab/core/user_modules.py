"""Import a user's Python module named in a config: by module name or from a ``.py`` file.

``import_user_module("my_tasks", key)`` imports an installed / ``PYTHONPATH`` module;
``import_user_module("./tasks.py", key)`` (any spec ending in ``.py`` or containing a path
separator) imports that file, relative to the current directory, as the module named by its
stem (``tasks``), once per process: a second import of the same file returns the same module,
so kinds it registers are registered once, and objects it defines pickle by that name.
``resolve("./tasks.py:make_data", key)`` returns the module's attribute.

Every failure is one :class:`~sgdlab.core.errors.ConfigError` naming the config key that asked for
the module (``key``, e.g. ``data.function``), the module and the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from sgdlab.core.errors import ConfigError

__all__ = ["exception_line", "exit_line", "import_user_module", "is_file_spec", "resolve", "split_target"]


def is_file_spec(spec: str) -> bool:
    """True for a module file (``./tasks.py``, ``dir/tasks.py``), False for a module name."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec


# sgdlab's own source files: a user's error is reported at the innermost frame outside them.
_SGDLAB_DIR = str(Path(__file__).resolve().parent)


def _where(e: BaseException, code=None) -> str:
    """`` at file:line`` of the user's frame of an exception, or ''. The frame is the innermost one
    in the file defining ``code`` (the user's function) if given, else the innermost frame outside
    sgdlab; its file is shown by full path (the user's file, whichever directory it is in)."""
    tb = traceback.extract_tb(e.__traceback__)
    if not tb:
        return ""
    own = getattr(getattr(code, "__code__", None), "co_filename", None)
    frames = [f for f in tb if own and f.filename == own] or [f for f in tb if not f.filename.startswith(_SGDLAB_DIR)]
    f = (frames or tb)[-1]
    return f" at {f.filename}:{f.lineno}"


def exception_line(e: BaseException, code=None) -> str:
    """``Type: first line of the message at file:line``: an exception in one line (``code``: the
    user's function that was called, whose frame is named)."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}{': ' + text if text else ''}{_where(e, code)}"


def exit_line(e: SystemExit) -> str:
    """What a module's ``sys.exit(n)`` at import time did, in one line."""
    return f"it called sys.exit({e.code!r}){_where(e)} (a module imported by sgdlab must not exit the process)"


def _import_file(spec: str, key: str) -> ModuleType:
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"{key}: module file {spec!r} does not exist (relative paths are read from the current "
                          f"directory, {Path.cwd()})")
    path = path.resolve()
    name = path.stem
    if not name.isidentifier():
        raise ConfigError(f"{key}: module file {spec!r}: {name!r} is not a valid module name; rename the file")
    old = sys.modules.get(name)
    if old is not None:
        if getattr(old, "__file__", None) and Path(old.__file__).resolve() == path:
            return old
        raise ConfigError(f"{key}: cannot import {spec!r} as module {name!r}: a different module of that name is "
                          f"already imported (from {getattr(old, '__file__', 'built-in')}); rename the file")
    mspec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module
    try:
        mspec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if isinstance(e, SystemExit):
            raise ConfigError(f"{key}: importing module file {spec!r} failed: {exit_line(e)}") from e
        if not isinstance(e, Exception):
            raise
        raise ConfigError(f"{key}: importing module file {spec!r} failed: {exception_line(e)}") from e
    return module


def import_user_module(spec: str, key: str) -> ModuleType:
    """The module ``spec`` (a name or a ``.py`` file, see the module docstring)."""
    if not spec:
        raise ConfigError(f"{key}: empty module name")
    if is_file_spec(spec):
        return _import_file(spec, key)
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):  # the module itself (or its package) is missing
            raise ConfigError(f"{key}: no module named {spec!r} (a module must be installed or on PYTHONPATH; "
                              f"give a file as ./{spec.replace('.', '/')}.py)") from e
        raise ConfigError(f"{key}: importing module {spec!r} failed: {exception_line(e)}") from e
    except SystemExit as e:
        raise ConfigError(f"{key}: importing module {spec!r} failed: {exit_line(e)}") from e
    except Exception as e:
        raise ConfigError(f"{key}: importing module {spec!r} failed: {exception_line(e)}") from e


def split_target(target: str, key: str) -> tuple[str, str]:
    """``"module:attr"`` -> ``("module", "attr")`` (the last ``:``, so Windows drives work)."""
    module, sep, attr = target.rpartition(":")
    if not sep or not module or not all(p.isidentifier() for p in attr.split(".")):
        raise ConfigError(f"{key}: expected 'module:function' or './file.py:function', got {target!r}")
    return module, attr


def resolve(target: str, key: str):
    """The object ``module:attr`` names (``attr`` may be dotted: ``module:Class.method``)."""
    module_name, attr = split_target(target, key)
    obj = import_user_module(module_name, key)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            public = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            raise ConfigError(f"{key}: {module_name!r} has no attribute {attr!r}; callables there: "
                              f"{', '.join(public) or 'none'}") from None
    return obj
