"""Run directories: contents, resume == uninterrupted, kill at any moment, bad input."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from waiting import wait_for

import sgdlab
from sgdlab.core.config import dump_toml
from sgdlab.core.errors import CheckpointError
from sgdlab.store.runs import RunDir

pytestmark = pytest.mark.study("diag_net")


def tiny(**over):
    cfg = sgdlab.load_experiment("diag-net")
    sets = ["steps=4000", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100",
            "eval.grid='linear'", "eval.points=21", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4",
            "arms.3.schedule.lr=0.4"]
    return sgdlab.override(cfg, sets + [f"{k}={v}" for k, v in over.items()])


def test_run_directory_contents(tmp_path):
    res = sgdlab.run(tiny(), tmp_path / "r", progress=False, quiet=True)
    files = {p.name for p in (tmp_path / "r").iterdir()}
    assert {"config.toml", "meta.json", "runs.json", "metrics.jsonl", "checkpoint.pt", "summary.json",
            "figures"} <= files
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["sgdlab_version"] and "torch" in meta and "command" in meta and "finished" in meta
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert len(summary["runs"]) == res.metrics["train_loss"].shape[1] == 9  # 4 SGD arms x 2 + GD once
    r0 = summary["runs"][0]
    assert {"seed", "schedule", "diverged_at", "final", "arm"} <= set(r0)
    assert (tmp_path / "r" / "figures" / "diag-net.png").stat().st_size > 10_000
    # the saved config re-runs to the same numbers
    again = sgdlab.run(sgdlab.load_experiment(tmp_path / "r" / "config.toml"), progress=False, quiet=True)
    np.testing.assert_array_equal(again.metrics["test_loss"], res.metrics["test_loss"])
    # loading from disk gives the same arrays
    loaded = sgdlab.load_run(tmp_path / "r")
    np.testing.assert_array_equal(loaded.metrics["test_loss"], res.metrics["test_loss"])
    assert res.arm("GD eta=1.0").tolist() == [8]


@pytest.mark.parametrize("every_eval", [True, False])
def test_resume_equals_uninterrupted(tmp_path, every_eval):
    cfg = tiny(checkpoint_seconds=1e-9 if every_eval else 3600)
    full = sgdlab.run(cfg, tmp_path / "full", progress=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(cfg, tmp_path / "cut", progress=False, quiet=True, _stop_after=2200)
    assert RunDir(tmp_path / "cut").summary() is None
    resumed = sgdlab.resume(tmp_path / "cut", progress=False, quiet=True)
    np.testing.assert_array_equal(resumed.steps, full.steps)
    for k in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k])
    a = json.loads((tmp_path / "full" / "summary.json").read_text())
    b = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert [r["final"] for r in a["runs"]] == [r["final"] for r in b["runs"]]
    assert [r["diverged_at"] for r in a["runs"]] == [r["diverged_at"] for r in b["runs"]]


def test_killed_process_resumes_to_the_same_result(tmp_path):
    """SIGKILL a real `sgdlab run` mid-way, resume it, compare with an uninterrupted run."""
    cfg = tiny(steps=400000, checkpoint_seconds=0.2, **{"eval.points": 400})
    cfg_file = tmp_path / "cfg.toml"
    cfg_file.write_text(dump_toml(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "sgdlab", "run", str(cfg_file), "--out", str(out),
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # kill once a checkpoint exists and metrics reached the 30th evaluation, well before the end
    assert wait_for(lambda: (out / "checkpoint.pt").exists()
                    and len((out / "metrics.jsonl").read_text().splitlines()) > 30,
                    "a checkpoint and 30 metrics rows", proc), proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert RunDir(out).summary() is None, "the run finished before it could be killed"
    resumed = sgdlab.resume(out, progress=False, quiet=True)
    full = sgdlab.run(cfg, progress=False, quiet=True)
    for k in full.metrics:
        np.testing.assert_array_equal(resumed.metrics[k], full.metrics[k])


def test_metrics_are_readable_with_a_torn_last_line(tmp_path):
    sgdlab.run(tiny(), tmp_path / "r", progress=False, quiet=True)
    p = tmp_path / "r" / "metrics.jsonl"
    n = len(p.read_text().splitlines())
    with open(p, "a") as f:
        f.write('{"step": 99999, "train_lo')  # a write cut by a kill
    steps, _m = RunDir(tmp_path / "r").metrics()
    assert len(steps) == n


def test_bad_run_directories(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        sgdlab.resume(tmp_path / "nope")
    sgdlab.run(tiny(), tmp_path / "r", progress=False, quiet=True)
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match="already holds a run"):
        sgdlab.run(tiny(), tmp_path / "r", progress=False, quiet=True)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before  # nothing lost
    (tmp_path / "r" / "summary.json").unlink()
    (tmp_path / "r" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        sgdlab.resume(tmp_path / "r", progress=False, quiet=True)
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="not an sgdlab run directory"):
        sgdlab.run(tiny(), tmp_path / "other", progress=False, quiet=True)


def test_resume_of_a_finished_run_is_a_no_op(tmp_path):
    a = sgdlab.run(tiny(), tmp_path / "r", progress=False, quiet=True)
    b = sgdlab.resume(tmp_path / "r", progress=False, quiet=True)
    np.testing.assert_array_equal(a.metrics["train_loss"], b.metrics["train_loss"])


@pytest.mark.parametrize("buffer_bytes, parts", [(0, 5), (None, 2)])
def test_snapshots_are_written_when_their_buffer_is_full(tmp_path, monkeypatch, buffer_bytes, parts):
    # without a full buffer (control) snapshots wait for a checkpoint: the first one (step 0) and
    # the final one; a buffer that any snapshot fills writes each on its own
    from sgdlab.workflows import run_loop

    if buffer_bytes is not None:
        monkeypatch.setattr(run_loop, "SNAPSHOT_BUFFER_BYTES", buffer_bytes)
    sgdlab.run(tiny(snapshots=3, checkpoint_seconds=1e9), tmp_path / "r", progress=False, quiet=True)
    assert len(list((tmp_path / "r" / "snapshots").glob("*.pt"))) == parts
    assert len(RunDir(tmp_path / "r").snapshots()) == 5


def test_snapshots_and_unknown_figures(tmp_path):
    cfg = tiny(snapshots=3)
    res = sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True)
    snaps = RunDir(tmp_path / "r").snapshots()
    steps = [s for s, _ in snaps]
    assert steps[0] == 0 and steps[-1] == cfg.steps and len(steps) == 5
    last = snaps[-1][1]
    assert set(last) == set(range(len(res.runs))) and last[0]["u"].shape == (cfg.data.d,)
    from sgdlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown figure 'nope'"):
        sgdlab.run(tiny(extra_figures="['nope']"), tmp_path / "r2", progress=False, quiet=True)


def test_the_writers_metrics_are_what_reading_the_file_gives(tmp_path):
    """The figures at the end of a run use the arrays the writer holds (RunDir.remember_metrics)
    instead of parsing metrics.jsonl again: the same values, non-finite ones missing, until the
    file changes."""
    res = sgdlab.run(sgdlab.override(sgdlab.load_experiment("diag-net"), ["steps=300", "seeds=2",
                                                                          "arms.1.schedule.lr=5"]),
                     tmp_path / "r", progress=False, quiet=True)
    steps, read = RunDir(res.path).metrics()
    assert np.isnan(read["train_loss"]).any()  # a diverged run: values missing from some step on
    held = {k: np.where(np.isnan(v), np.inf, v) for k, v in res.metrics.items()}  # non-finite in memory
    rd = RunDir(res.path)
    rd.remember_metrics(res.steps, held)
    steps2, known = rd.metrics()
    np.testing.assert_array_equal(steps2, steps)
    assert list(known) == list(read)
    for k in read:
        np.testing.assert_array_equal(known[k], read[k])
    with open(res.path / "metrics.jsonl", "a") as f:  # the file changed: it is read again
        f.write(json.dumps({"step": 10**6, **{k: [1.0] * v.shape[1] for k, v in read.items()}}) + "\n")
    assert rd.metrics()[0][-1] == 10**6
