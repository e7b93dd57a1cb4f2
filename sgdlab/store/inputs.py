"""The files an experiment reads, and their content hashes: what makes a resumed run the same
experiment as the one that was started.

A config names input files in a few keys (:func:`input_files`): ``imports`` (module files, or the
files of installed modules), ``data.path`` (kind ``arrays``), the module of ``data.function`` (kind
``function``) and ``arms.N.init.file``. :func:`fingerprint` records ``{key: {"path", "sha256"}}``
in the run directory's meta.json when the run starts; :func:`changes` lists what differs now.
Everything works on the config's plain table (``to_dict`` or the TOML), without importing any
module, so a resume can check the modules before it runs their code.

Not covered: files a user's own data kind opens itself, and the run behind ``init.run`` (read
through its run directory, whose own guarantees apply).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
from pathlib import Path

from sgdlab.core.user_modules import is_file_spec

__all__ = ["changes", "code_inputs", "digest", "fingerprint", "input_files", "module_file"]

# Bytes read at a time while hashing (data files can be large).
HASH_CHUNK = 1 << 20


def digest(path: str | Path) -> str:
    """SHA-256 of a file's content (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def module_file(spec: str) -> Path | None:
    """The file a module spec names, found without importing anything: a ``.py`` file itself, or
    the source of an installed module (a package's ``__init__.py``); None if there is none."""
    if is_file_spec(spec):
        return Path(spec).expanduser().resolve()
    path = None
    found = None
    for part in spec.split("."):
        try:
            found = importlib.machinery.PathFinder.find_spec(part, path)
        except (ImportError, ValueError):
            return None
        if found is None:
            return None
        path = found.submodule_search_locations
    origin = getattr(found, "origin", None)
    return Path(origin).resolve() if origin and origin not in ("built-in", "frozen") else None


def code_inputs(table: dict) -> dict[str, Path]:
    """The module files a config would run: ``imports[i]`` and ``data.function``'s module."""
    out = {}
    imports = table.get("imports") or []
    for i, spec in enumerate(imports if isinstance(imports, list) else []):
        f = module_file(spec) if isinstance(spec, str) and spec.strip() else None
        if f is not None:
            out[f"imports[{i}]"] = f
    data = table.get("data") if isinstance(table.get("data"), dict) else {}
    if data.get("kind") == "function" and isinstance(data.get("function"), str) and ":" in data["function"]:
        f = module_file(data["function"].rpartition(":")[0])
        if f is not None:
            out["data.function"] = f
    return out


def input_files(table: dict) -> dict[str, Path]:
    """Every input file a config names, ``{config key: path}`` (module docstring)."""
    out = code_inputs(table)
    data = table.get("data") if isinstance(table.get("data"), dict) else {}
    if data.get("kind") == "arrays" and isinstance(data.get("path"), str) and data["path"]:
        out["data.path"] = Path(data["path"]).expanduser().resolve()
    arms = table.get("arms") if isinstance(table.get("arms"), list) else []
    for a, arm in enumerate(arms):
        init = arm.get("init") if isinstance(arm, dict) else None
        if isinstance(init, dict) and isinstance(init.get("file"), str) and init["file"]:
            out[f"arms.{a}.init.file"] = Path(init["file"]).expanduser().resolve()
    return out


def fingerprint(table: dict) -> dict[str, dict]:
    """``{key: {"path": absolute path, "sha256": hex}}`` of every existing input file."""
    return {k: {"path": str(p), "sha256": digest(p)} for k, p in input_files(table).items() if p.is_file()}


def changes(recorded: dict, table: dict) -> list[str]:
    """What differs between the recorded fingerprint and the files the config names now, one
    phrase each (empty: the same inputs)."""
    now = input_files(table)
    out = []
    for key, rec in sorted(recorded.items()):
        path = now.get(key)
        if path is None:
            out.append(f"{key} is no longer in the config")
        elif not path.is_file():
            out.append(f"{key} ({path}) no longer exists")
        elif str(path) != rec.get("path"):
            out.append(f"{key} now names {path}, the run started with {rec.get('path')}")
        elif digest(path) != rec.get("sha256"):
            out.append(f"{key} ({path}) changed since the run started")
    out += [f"{key} ({now[key]}) was not an input when the run started" for key in sorted(set(now) - set(recorded))]
    return out
