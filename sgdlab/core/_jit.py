"""Calling numba kernels: say once when a kernel had to be compiled.

Kernels are compiled with ``cache=True``: numba stores the machine code next to the module (or,
where that directory is read-only, in the user cache directory; ``NUMBA_CACHE_DIR`` overrides
both), so only the first run after installing sgdlab, or after a kernel's source changed,
compiles. That run prints one line per kernel.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

_reported: set[str] = set()


def ensure_cache_dir(module_file: str) -> None:
    """Before a module defines cached kernels: if neither numba's in-tree cache (next to the
    module) nor the user cache directory is writable and ``NUMBA_CACHE_DIR`` is unset, cache in
    the temporary directory instead (numba would otherwise refuse ``cache=True`` at import)."""
    import numba

    if numba.config.CACHE_DIR or os.access(Path(module_file).parent, os.W_OK):
        return
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    if os.access(user if user.exists() else user.parent, os.W_OK):
        return
    numba.config.CACHE_DIR = str(Path(tempfile.gettempdir()) / "sgdlab-numba-cache")


def call_kernel(kernel, *args):
    """``kernel(*args)``; the call that compiles it (no usable on-disk cache) prints one line
    saying so and where the cache lives."""
    if kernel.__name__ in _reported:
        return kernel(*args)
    misses = sum(kernel.stats.cache_misses.values())
    t0 = time.perf_counter()
    out = kernel(*args)
    _reported.add(kernel.__name__)
    if sum(kernel.stats.cache_misses.values()) > misses:
        print(f"sgdlab: compiled the {kernel.__name__} kernel in {time.perf_counter() - t0:.1f} s "
              f"(one-off; cached in {kernel.stats.cache_path})", file=sys.stderr)
    return out
