"""A run's figures, drawn by a process of their own while the run is spread over processes.

Drawing starts by importing matplotlib and the panels (a third of a second on a laptop core),
which a run pays after its training, on its critical path. A run spread over several processes
(:mod:`sgdlab.workflows.shards`) moves that import off it: as the shard workers start, the
calling process forks one more, the figure process, which imports the plotting modules while the
training runs (for that moment the operating system shares the cores among the processes) and
then sleeps until the training ends. It is then given the caller's own metric arrays and draws
what the caller would have drawn, with the same code on the same numbers (the same bytes), while
the caller prints the summary table. The caller records the figures in meta.json, as before.

A one-process run (``--workers 1``) keeps to one process and draws its figures itself. If the
figure process fails or dies, the caller draws the figures itself, as a one-process run does.
Forked workers only (Linux: :data:`sgdlab.workflows.shards.START_METHOD`): a spawned process would
pay the whole start-up again.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from sgdlab.core.errors import SgdlabError
from sgdlab.store.runs import RunDir
from sgdlab.workflows.children import die_with_parent

__all__ = ["FigureProcess", "draw_all", "figure_process"]

# Seconds the figure process gets to exit when the run ends before it drew anything.
JOIN_SECONDS = 5.0


def draw_all(rd: RunDir) -> tuple[list[Path], list[str]]:
    """Every figure of ``rd`` drawn: (files, errors). A figure that fails is an error here, not an
    exception: a figure must never lose a finished run."""
    from sgdlab.plots import plot_run

    errors: list[str] = []
    try:
        return plot_run(rd, errors=errors), errors
    except (SgdlabError, OSError, ValueError) as e:
        return [], [*errors, f"{type(e).__name__}: {e}"]


def _serve(conn, rd: RunDir, parent: int, close_fds: tuple[int, ...]) -> None:
    """The figure process: import the plotting modules, wait for the metrics, draw, reply."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    die_with_parent(parent)
    for fd in close_fds:  # the caller's directory lock: only the caller may hold it
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(Exception):  # what fails to import here fails in the caller's own drawing too
        import matplotlib.backends.backend_agg  # noqa: F401  (savefig's PNG writer)

        import sgdlab.plots.panels  # noqa: F401
    try:
        msg = conn.recv()
    except (EOFError, OSError):  # the run ended without figures (an error, Ctrl-C)
        return
    if msg[0] != "draw":
        return
    _, steps, metrics = msg
    try:
        rd.remember_metrics(steps, metrics)  # as the caller did: the figures read these arrays
        drawn, errors = draw_all(rd)
        reply = ("drawn", [str(p) for p in drawn], errors)
    except BaseException as e:  # noqa: BLE001  (anything else: the caller draws them itself)
        reply = ("failed", f"{type(e).__name__}: {e}")
    with contextlib.suppress(OSError):
        conn.send(reply)


class FigureProcess:
    """The forked figure process of a run directory (module doc). :meth:`draw` once, then
    :meth:`close`."""

    def __init__(self, rd: RunDir, close_fds: tuple[int, ...] = ()):
        ctx = mp.get_context("fork")
        self.conn, there = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(there, rd, os.getpid(), tuple(close_fds)),
                                name="sgdlab-figures")
        self.proc.start()
        there.close()

    def draw(self, steps: np.ndarray, metrics: dict[str, np.ndarray],
             meanwhile: Callable[[], object] = lambda: None) -> tuple[list[Path], list[str]] | None:
        """The figures drawn there from ``steps`` (E,) and ``metrics`` (name -> (E, R)), as
        (files, errors), while ``meanwhile()`` runs here; None if that process failed (the caller
        then draws them itself)."""
        try:
            self.conn.send(("draw", steps, metrics))
        except OSError:
            meanwhile()
            return None
        meanwhile()
        try:
            msg = self.conn.recv()
        except (EOFError, OSError):
            return None
        return ([Path(p) for p in msg[1]], msg[2]) if msg[0] == "drawn" else None

    def close(self, kill: bool = False) -> None:
        """End the process (``kill``: at once, after an error or Ctrl-C)."""
        self.conn.close()  # a process still waiting for the metrics returns
        if kill:
            self.proc.kill()
        self.proc.join(JOIN_SECONDS)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


@contextlib.contextmanager
def figure_process(rd: RunDir | None, processes: int, close_fds: tuple[int, ...] = ()) -> Iterator[FigureProcess | None]:
    """A :class:`FigureProcess` for ``rd`` when the run is spread over ``processes`` > 1 forked
    processes, else None; closed at the end (killed after an error)."""
    from sgdlab.workflows.shards import START_METHOD

    if rd is None or processes <= 1 or START_METHOD != "fork":
        yield None
        return
    fp = FigureProcess(rd, close_fds)
    try:
        yield fp
    except BaseException:
        fp.close(kill=True)
        raise
    fp.close()
