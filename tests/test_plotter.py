"""The plotter process (sgdlab.workflows.plotter): it writes the file this process would have
written, byte for byte; where it cannot (killed, a drawing error) the caller draws the figure
itself; the ``sgdlab`` command starts it before torch is imported and never imports matplotlib
itself when the plotter drew the only figure."""

import json
import os
import pickle
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from reliability_helpers import TINY_CLI, cli

from sgdlab.plots import panels
from sgdlab.plots.panel_data import panel_figure
from sgdlab.store.runs import RunDir
from sgdlab.workflows.plotter import Plotter

pytestmark = pytest.mark.study("diag_net")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plotter") / "r"
    r = cli("run", "diag-net", "--out", out, "--no-progress", *TINY_CLI)
    assert r.exit_code == 0, r.output
    return out


def _job_and_local(run_dir, tmp_path):
    """A panel figure of a copy of ``run_dir`` to draw, and the bytes this process draws of it."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    job = panel_figure(RunDir(copy))
    local = panels.draw_panel_figure(job).read_bytes()
    job.out.unlink()
    return job, local


def test_the_plotter_writes_the_file_this_process_would(run_dir, tmp_path, monkeypatch):
    job, local = _job_and_local(run_dir, tmp_path)
    plotter = Plotter._fork()  # start() declines here: this process imported torch
    try:
        def not_here(job):
            raise AssertionError("drawn in the caller")

        monkeypatch.setattr(panels, "draw_panel_figure", not_here)
        assert plotter.draw(job) == job.out
        assert job.out.read_bytes() == local
        if sys.platform.startswith("linux"):  # named for top and pgrep
            assert Path(f"/proc/{plotter.proc.pid}/comm").read_text().strip() == "sgdlab-plotter"
    finally:
        plotter.close()
    assert plotter.conn is None and not plotter.proc.is_alive()


def test_a_killed_plotter_leaves_the_figure_to_the_caller(run_dir, tmp_path):
    job, local = _job_and_local(run_dir, tmp_path)
    plotter = Plotter._fork()
    plotter.proc.kill()
    plotter.proc.join()
    assert plotter.draw(job) == job.out and job.out.read_bytes() == local
    assert plotter.conn is None  # not asked again


class _NoPickle:
    def __reduce__(self):
        raise pickle.PicklingError("not for another process")


def test_a_figure_that_does_not_pickle_is_drawn_by_the_caller(run_dir, tmp_path):
    import dataclasses

    job, local = _job_and_local(run_dir, tmp_path)
    job = dataclasses.replace(job, runs=[{**r, "note": _NoPickle()} for r in job.runs])  # a key the drawing ignores
    plotter = Plotter._fork()
    assert plotter.draw(job) == job.out and job.out.read_bytes() == local
    assert plotter.conn is None


def _take_and_hang(conn):
    conn.recv()
    threading.Event().wait()  # never answers


def test_a_plotter_that_never_answers_is_given_up(run_dir, tmp_path, monkeypatch):
    import multiprocessing as mp

    from sgdlab.workflows import plotter as mod

    job, local = _job_and_local(run_dir, tmp_path)
    here, there = mp.get_context("fork").Pipe()
    silent = mp.get_context("fork").Process(target=_take_and_hang, args=(there,))
    silent.start()
    there.close()
    monkeypatch.setattr(mod, "DRAW_SECONDS", 0.2)
    plotter = Plotter(silent, here)
    assert plotter.draw(job) == job.out and job.out.read_bytes() == local
    assert plotter.conn is None and not silent.is_alive()


def test_a_drawing_error_is_the_callers_own(run_dir, tmp_path):
    job, _ = _job_and_local(run_dir, tmp_path)
    shutil.rmtree(job.out.parent)  # nowhere to write: the plotter fails, then the caller does
    plotter = Plotter._fork()
    try:
        with pytest.raises(OSError):
            plotter.draw(job)
        assert plotter.proc.is_alive()  # it draws the next figure
    finally:
        plotter.close()


def test_the_plotter_starts_only_before_torch_and_with_a_core_to_spare(monkeypatch):
    assert "torch" in sys.modules and Plotter.start() is None
    monkeypatch.delitem(sys.modules, "torch")
    monkeypatch.setattr("sgdlab.workflows.plotter.available_cpus", lambda: 1)
    assert Plotter.start() is None


def test_panel_styles_travel_with_the_figure(run_dir):
    """The titles and log axes come from this process's metric registry, so a metric registered
    after the plotter was forked is drawn as here."""
    job = panel_figure(RunDir(run_dir))
    assert job.styles["train_loss"][1] is True  # a log axis
    styles = {n: (f"title of {n}", log) for n, (_, log) in job.styles.items()}
    fig = panels.draw_metric_panels(job.steps, job.metrics, job.runs, job.names, job.arms, styles=styles)
    assert [ax.get_title() for ax in fig.axes] == [f"title of {n}" for n in job.names]


CHILD = r"""
import sys
from sgdlab.__main__ import entry
sys.argv = ["sgdlab", *sys.argv[1:]]
try:
    entry()
finally:
    import multiprocessing
    print("REPORT", {"matplotlib": "matplotlib" in sys.modules,
                     "plotters": [p.name for p in multiprocessing.active_children()]}, file=sys.stderr)
"""


def test_the_sgdlab_command_hands_its_figure_to_the_plotter(tmp_path):
    out = tmp_path / "r"
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    p = subprocess.run([sys.executable, "-c", CHILD, "run", "diag-net", "--out", str(out), "--no-progress",
                        *TINY_CLI], env=env, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    report = next(ln for ln in p.stderr.splitlines() if ln.startswith("REPORT"))
    if len(os.sched_getaffinity(0)) >= 2:
        assert "'matplotlib': False" in report  # the plotter drew the figure
    assert "'plotters': []" in report  # and it stopped with the command
    meta = json.loads((out / "meta.json").read_text())
    assert meta["figures"] == ["figures/diag-net.png"] and meta["figure_errors"] == []
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "figures" / "diag-net.png").unlink()
    panels.plot_panels(RunDir(copy))
    assert (copy / "figures" / "diag-net.png").read_bytes() == (out / "figures" / "diag-net.png").read_bytes()
