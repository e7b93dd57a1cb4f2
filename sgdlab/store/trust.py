"""Which code sgdlab runs when it reads a run directory.

A run directory's config.toml may name Python modules (``imports``, the module of
``data.function``): reading the directory with their kinds would execute them. A run directory
received from someone else is therefore code, not data. The rule:

* reading (``load_run``, ``sgdlab plot``, ``export``, ``--resume``, a sweep's jobs) imports a run
  directory's modules only if every one is **yours**, or the caller opts in (``trust_imports=True``,
  ``--trust-imports``);
* a module file is yours when this user ran it with sgdlab on this machine (``sgdlab.run`` records
  its path and content hash under :func:`state_dir`), or this process already imported it from
  the same path, and its content hash is still the same;
* without them, a config whose kinds come from its modules cannot be built: the error says so and
  names the modules; summaries and tables (``summary``, ``compare``) never need them.

``summary`` and ``compare`` read summary.json only and never import anything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
from pathlib import Path

from sgdlab.core.errors import ConfigError
from sgdlab.store.inputs import code_inputs, digest

__all__ = ["STATE_ENV", "adopt_edits", "check_trusted", "load_config", "remember", "state_dir", "untrusted"]

STATE_ENV = "SGDLAB_STATE_DIR"
TRUSTED = "trusted-modules"
TRUST_HINT = ("sgdlab imports a run directory's modules only when they are yours (run by you with sgdlab here, "
              "same path and content): a run directory from elsewhere is code, not data; pass --trust-imports "
              "(trust_imports=True) if you trust its code")


def state_dir() -> Path:
    """Where sgdlab keeps per-user state: ``$SGDLAB_STATE_DIR``, else ``$XDG_STATE_HOME/sgdlab``,
    else ``~/.local/state/sgdlab``."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "sgdlab"


def _entry(path: Path, sha: str) -> Path:
    key = hashlib.sha256(f"{path}\n{sha}".encode()).hexdigest()
    return state_dir() / TRUSTED / key


def remember(table: dict) -> None:
    """Record the module files of a config that this user runs as theirs (one small file per
    (path, content hash): concurrent writers never conflict). Best effort: a read-only home only
    means that reading the run later needs --trust-imports."""
    for path in code_inputs(table).values():
        try:
            e = _entry(path, digest(path))
            if not e.exists():
                e.parent.mkdir(parents=True, exist_ok=True)
                e.write_text(str(path) + "\n")
        except OSError:
            pass


def _imported_here(path: Path) -> bool:
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f and f.endswith(path.name):
            try:
                if Path(f).resolve() == path:
                    return True
            except OSError:
                continue
    return False


def untrusted(table: dict) -> list[str]:
    """``key (path)`` of every module of a config that is not the caller's own (module docstring)."""
    out = []
    for key, path in code_inputs(table).items():
        try:
            own = path.is_file() and (_entry(path, digest(path)).exists() or _imported_here(path))
        except OSError:
            own = False
        if not own:
            out.append(f"{key} ({path})")
    return out


def check_trusted(table: dict, where: str, action: str) -> None:
    """Refuse (one ConfigError naming them) to ``action`` when a config names modules that are not
    the caller's own: resuming or continuing a run directory runs its code."""
    bad = untrusted(table)
    if bad:
        raise ConfigError(f"{where}: {action} would run code it names that is not yours ({', '.join(bad)}). "
                          f"{TRUST_HINT}")


def load_config(table: dict, where: str, trust: bool = False):
    """The ExperimentConfig of a run directory's config table, importing its modules only if they
    are the caller's own or ``trust``; otherwise built without them (``imports`` kept as recorded),
    or a ConfigError naming them when its kinds need them."""
    from sgdlab.core.config import from_dict
    from sgdlab.spec.experiment import ExperimentConfig

    bad = [] if trust else untrusted(table)
    if not bad:
        return from_dict(ExperimentConfig, table)
    stripped = {k: v for k, v in table.items() if k != "imports"}
    try:
        cfg = from_dict(ExperimentConfig, stripped)
    except ConfigError as e:
        raise ConfigError(f"{where}: its config needs code it names but that was not imported "
                          f"({', '.join(bad)}): {e}. {TRUST_HINT}") from None
    return dataclasses.replace(cfg, imports=tuple(table.get("imports") or ()))


def adopt_edits(recorded: dict) -> None:
    """After ``--accept-changed-inputs``: a module file that was yours when the run started (its
    recorded path and hash are in your record) stays yours with today's content."""
    for rec in recorded.values():
        path, sha = Path(rec.get("path", "")), rec.get("sha256", "")
        try:
            if path.is_file() and _entry(path, sha).exists():
                e = _entry(path, digest(path))
                e.parent.mkdir(parents=True, exist_ok=True)
                e.write_text(str(path) + "\n")
        except OSError:
            pass
