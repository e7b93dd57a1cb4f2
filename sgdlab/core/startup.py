"""Start-up work with Python's cycle collector paused.

Importing torch, numba or matplotlib creates hundreds of thousands of objects (modules, classes,
functions, registries), nearly all of which live until the process exits. Each allocation counts
toward the cycle collector's next pass, and each pass walks the objects made so far to free next
to nothing. Pausing the collector while a command imports them and builds its engine removes that
work from every run's start-up; ``python benchmarks/startup.py`` measures what it saves.

Reference counting still frees every object without a reference cycle at once; a cycle made inside
the block waits for the first pass after it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused(freeze: bool = False) -> Iterator[None]:
    """The block runs with the cycle collector off; afterwards it is on again only if it was on
    before (a program that turned it off keeps it off, and nested blocks are harmless).

    ``freeze``: then move every object alive into the permanent generation (``gc.freeze``), so
    that no later pass walks them again; for a process that keeps what it imported until it
    exits (the ``sgdlab`` command), not for a library call: a cycle among frozen objects that
    later becomes garbage is never freed."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_on:
            gc.enable()
