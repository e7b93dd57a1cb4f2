"""Where a user's kinds come from: modules a config imports, and installed plugins.

An experiment config may name Python modules to import before it is built::

    imports = ["my_tasks", "./tasks.py"]

* a module name is imported as usual (installed, or on ``PYTHONPATH``); when no such module is
  installed but a file ``<name>.py`` lies next to the config file (or in the current directory),
  that file is imported;
* a file (``./tasks.py``, ``dir/tasks.py``) is imported from the config file's directory (or the
  current directory for a config built in Python or on the command line).

Files are recorded by absolute path in the resolved config, so the run directory's config.toml
re-imports the same files from any directory: on ``--resume``, in sweep workers (process pool,
Ray) and in ``sgdlab plot``. What the modules register (``sgdlab.frontends.register``) is then available
exactly like a bundled kind.

Installed packages can also declare entry points in the group ``sgdlab.plugins`` (each entry
point names a module or a callable to run); they are loaded once per process, the first time an
experiment config is built or an unknown kind is looked up.

Every failure is one :class:`~sgdlab.core.errors.ConfigError` naming the module and the key that asked
for it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

from sgdlab.core.errors import ConfigError
from sgdlab.core.user_modules import (
    exception_line,
    exit_line,
    import_user_module,
    is_file_spec,
)

__all__ = ["ENTRY_POINT_GROUP", "import_modules", "load_entry_points", "resolve_spec"]

ENTRY_POINT_GROUP = "sgdlab.plugins"
_loaded_entry_points = False


def _module_missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):  # a parent package is missing, or a bad name
        return True


def resolve_spec(spec: str, base_dir: str | Path | None = None) -> str:
    """A module spec as the resolved config records it: a file as an absolute path (relative to
    ``base_dir``, default the current directory), a module name as given unless no such module
    is installed and ``<base_dir>/<name>.py`` exists (then that file)."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    spec = spec.strip()
    if not is_file_spec(spec) and _module_missing(spec):
        local = base / (spec.replace(".", "/") + ".py")
        if local.is_file():
            spec = str(local)
    if is_file_spec(spec):
        path = Path(spec).expanduser()
        spec = str(path if path.is_absolute() else (base / path).resolve())
    return spec


def import_modules(specs, key: str = "imports", base_dir: str | Path | None = None) -> tuple[str, ...]:
    """Import every module of ``specs``; returns them resolved (:func:`resolve_spec`). ``key``
    names the config key (or option) in error messages."""
    out = []
    if isinstance(specs, str) or not isinstance(specs, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of module names or .py files, got {specs!r}")
    for i, spec in enumerate(specs):
        where = f"{key}[{i}]" if key == "imports" else key
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"{where}: expected a module name or a .py file, got {spec!r}")
        spec = resolve_spec(spec, base_dir)
        import_user_module(spec, where)
        out.append(spec)
    return tuple(out)


def load_entry_points() -> None:
    """Load every ``sgdlab.plugins`` entry point once per process (a callable one is called)."""
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    from importlib import (
        metadata,  # here, not at import: it adds to every light command
    )

    _loaded_entry_points = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, type):
                obj()
        except ModuleNotFoundError as e:
            if not _is_the_plugin_itself(e.name, ep.module):
                _loaded_entry_points = False
                raise ConfigError(f"plugin {ep.name!r} ({ep.value}, entry point group {ENTRY_POINT_GROUP!r}) "
                                  f"failed to load: {exception_line(e)}") from e
            # its module is gone (a package uninstalled, a study's folder removed): the rest works
            warnings.warn(f"plugin {ep.name!r}: module {ep.module!r} is not installed; its kinds are unavailable",
                          stacklevel=2)
        except (Exception, SystemExit) as e:  # a broken plugin is one clear error, not a traceback
            _loaded_entry_points = False
            why = exit_line(e) if isinstance(e, SystemExit) else exception_line(e)
            raise ConfigError(f"plugin {ep.name!r} ({ep.value}, entry point group {ENTRY_POINT_GROUP!r}) "
                              f"failed to load: {why}") from e


def _is_the_plugin_itself(missing: str | None, module: str) -> bool:
    """Whether a ModuleNotFoundError for ``missing`` means the entry point's own module is absent
    (not a dependency it imports)."""
    return bool(missing) and (module == missing or module.startswith(missing + "."))
