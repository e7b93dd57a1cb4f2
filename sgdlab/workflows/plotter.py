"""A process that draws a run's panel figure, started by the ``sgdlab`` command before torch is imported.

``sgdlab run`` starts on one core (the interpreter, torch's import, the config, the data and the
checks before training take seconds) and ends on one core, drawing its figure after importing
matplotlib (about half a second of that figure). Forked as the command starts, this process
imports matplotlib on another core meanwhile, then waits on a pipe, using no CPU. At the end the
caller hands it the figure's inputs (:class:`sgdlab.plots.panel_data.PanelFigure`: plain values,
the metric registry's labels and log axes included, so modules the caller imported later do not
matter) and it writes the file the caller would have written, byte for byte.

Started only where it helps and is safe: Linux (fork), at least :data:`MIN_CPUS` CPUs to use
(within the CPU quota: ``cores.available_cpus``), torch not yet imported (forking a process
whose torch may have started threads is not). Where
it cannot draw (it died, failed to import matplotlib, drawing raised, or no answer came within
:data:`DRAW_SECONDS`), the caller draws the figure itself, so the figure is never lost and an
error is the caller's own. It dies with the caller and ignores Ctrl-C, which the caller handles.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import pickle
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sgdlab.core.startup import collector_paused
from sgdlab.workflows.children import die_with_parent, name_process
from sgdlab.workflows.cores import available_cpus

if TYPE_CHECKING:
    from sgdlab.plots.panel_data import PanelFigure

__all__ = ["MIN_CPUS", "Plotter"]

# With one CPU the plotter's import would take the core the command starts on.
MIN_CPUS = 2
# Seconds the plotter gets to exit after "stop" before it is killed.
JOIN_SECONDS = 2.0
# Seconds the caller waits for a figure before it draws the figure itself: far more than any
# panel figure takes (under a second), or matplotlib's first import building its font cache.
DRAW_SECONDS = 120.0


class Plotter:
    """The caller's end of a plotter process (module doc). ``draw`` is a drop-in for
    :func:`sgdlab.plots.panels.draw_panel_figure`."""

    def __init__(self, proc, conn):
        self.proc, self.conn = proc, conn

    @classmethod
    def start(cls) -> Plotter | None:
        """A plotter process, or None where it would not help or is not safe (module doc)."""
        if not sys.platform.startswith("linux") or "torch" in sys.modules or available_cpus() < MIN_CPUS:
            return None
        return cls._fork()

    @classmethod
    def _fork(cls) -> Plotter:
        ctx = mp.get_context("fork")
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(there, os.getpid()), name="sgdlab-plotter", daemon=True)
        proc.start()
        there.close()
        return cls(proc, here)

    @classmethod
    @contextlib.contextmanager
    def started(cls) -> Iterator[Plotter | None]:
        """:meth:`start`, stopped when the block ends (killed if it raised)."""
        plotter = cls.start()
        try:
            yield plotter
        except BaseException:
            if plotter is not None:
                plotter.close(kill=True)
            raise
        if plotter is not None:
            plotter.close()

    def draw(self, job: PanelFigure) -> Path:
        """Draw and write ``job`` in the plotter process; in this one where it cannot."""
        if self.conn is not None:
            try:
                self.conn.send(("draw", job))
                kind, value = self.conn.recv() if self.conn.poll(DRAW_SECONDS) else ("stuck", None)
            except (OSError, EOFError, pickle.PicklingError, TypeError, AttributeError):  # gone, or not picklable
                kind, value = "gone", None
            if kind in ("gone", "stuck"):
                self.close(kill=True)
            if kind == "ok":
                return value
        from sgdlab.plots.panels import draw_panel_figure

        return draw_panel_figure(job)

    def close(self, kill: bool = False) -> None:
        """Stop the process (``kill``: at once)."""
        if self.conn is None:
            return
        if not kill:
            with contextlib.suppress(OSError):
                self.conn.send(("stop",))
            self.proc.join(JOIN_SECONDS)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()
        self.conn = None


def _serve(conn, parent: int) -> None:
    """The plotter process: import the drawing code, then draw each job sent until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    die_with_parent(parent)
    name_process("sgdlab-plotter")
    try:  # the import this process is for, made while the caller starts
        with collector_paused():  # matplotlib's import: sgdlab.core.startup
            from sgdlab.plots import panels
    except Exception:  # noqa: BLE001  (the caller draws, and meets the same error as its own)
        return
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the caller is gone
            return
        if msg[0] == "stop":
            return
        try:
            reply = ("ok", panels.draw_panel_figure(msg[1]))
        except Exception as e:  # noqa: BLE001  (drawn again by the caller, whose error it then is)
            reply = ("error", f"{type(e).__name__}: {e}")
        conn.send(reply)
