"""Files that survive a kill and never run code: atomic writes, writable-directory checks, JSON
any tool reads (NaN/inf as null), and checkpoint loading restricted to tensors and numbers.

The run store (:mod:`sgdlab.store.runs`) and every other writer (sweeps, windows, SLURM jobs, the
monitor) go through these; the guarantees are listed in ``sgdlab/store/runs.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np

from sgdlab.core.errors import CheckpointError

__all__ = ["atomic_write_bytes", "atomic_write_text", "check_writable_dir", "dumps", "ensure_writable_dir",
           "git_revision", "os_error", "safe_load", "to_tensors"]


def os_error(action: str, path, e: OSError) -> CheckpointError:
    """A one-line CheckpointError for a failed file operation (what, where, why)."""
    why = e.strerror or type(e).__name__
    return CheckpointError(f"cannot {action} {str(path)!r}: {why}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, sync it, rename it to ``path``. A failure (a full disk,
    a lost mount) leaves the old file untouched, removes the temporary one and raises a
    CheckpointError naming ``path`` (the OS error alone names no file)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, CheckpointError):
            raise
        raise os_error("write", path, e) from e


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def check_writable_dir(path: str | Path, what: str = "output directory") -> None:
    """Like :func:`ensure_writable_dir`, but leaves no trace: directories it had to create to
    find out are removed again."""
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    ensure_writable_dir(path, what)
    for d in missing:
        try:
            d.rmdir()
        except OSError:
            break


def ensure_writable_dir(path: str | Path, what: str = "output directory") -> Path:
    """Create ``path`` (and parents) if needed and check that files can be written in it; raises
    a one-line CheckpointError otherwise (under a file, in /proc, without permission, ...)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{what} {str(path)!r} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.tmp{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise os_error(f"write to the {what}", path, e) from None
    return path


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _clean(x):
    """NaN/inf -> None so that the JSON is standard (readable by any tool)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, list):
        return [_clean(v) for v in x]
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    return x


def dumps(obj) -> str:
    return json.dumps(_clean(json.loads(json.dumps(obj, default=_json_default, allow_nan=True))), indent=1)


def git_revision() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------- safe loading

def _numpy_globals() -> list:
    """The numpy types older sgdlab checkpoints pickled (arrays of numbers): allow-listed for
    ``weights_only`` loading; nothing else is."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.int64, np.int32, np.float64, np.float32, np.bool_)]
    return [_reconstruct, np.ndarray, np.dtype, *dtypes]


def safe_load(path: Path, what: str):
    """``torch.load`` that refuses code: tensors, numbers, strings, containers, numpy arrays."""
    import torch  # here, not at import: reading plans and tables needs no torch

    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{what} {str(path)!r} is missing") from None
    except Exception as e:  # torch raises several types for torn, corrupt or unsafe files  # noqa: BLE001
        unsafe = "Unsupported global" in str(e) or "weights_only" in str(e).lower()
        reason = ("it holds Python objects other than tensors and numbers, which sgdlab never writes; "
                  "it was not loaded (loading it could run code)") if unsafe else f"{type(e).__name__}: {e}"
        raise CheckpointError(f"{what} {str(path)!r} is corrupt or unsafe: {reason}") from None


def to_tensors(obj):
    """numpy arrays -> tensors, recursively (what checkpoints hold: weights_only-loadable)."""
    if isinstance(obj, np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, dict):
        return {k: to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_tensors(v) for v in obj)
    return obj
