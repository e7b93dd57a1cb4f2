"""Runs spread over processes (sgdlab.workflows.shards): the run directory of N worker processes is
byte-identical to one process's (timings aside), kills of a worker resume to the same bytes, and a
pool sweep merged into one job spreads it over every worker."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from shard_helpers import BLAS_PROBLEM, DIAG, diag, relu

import sgdlab
from sgdlab.engine.train import Engine
from sgdlab.store.runs import RunDir
from sgdlab.workflows import cores
from sgdlab.workflows.shards import AHEAD_STEPS, WorkerError, split
from sgdlab.workflows.sweep import Sweep

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "deep_nets")

FILES = ("metrics.jsonl", "runs.json", "config.toml")


@pytest.fixture
def like_one_process(monkeypatch):
    """Torch-path runs spread whatever the BLAS, and how to compare them with one process: the
    same bytes where the BLAS probe passes; elsewhere the same numbers to rounding (a run's last
    bits differ there; a run in the wrong place, or a wrong state, would be off by far more), so
    the sharding itself is tested on every machine."""
    monkeypatch.setattr(cores, "blas_batch_invariance", lambda: None)
    return same_bytes if BLAS_PROBLEM is None else close_runs


def close_runs(a, b, rtol: float = 1e-6) -> None:
    """Run directories ``a`` and ``b`` hold the same runs' metrics to ``rtol`` (NaN where NaN)."""
    (sa, ma), (sb, mb) = RunDir(a).metrics(), RunDir(b).metrics()
    assert np.array_equal(sa, sb) and sorted(ma) == sorted(mb)
    for k in ma:
        np.testing.assert_allclose(mb[k], ma[k], rtol=rtol, atol=1e-12, equal_nan=True, err_msg=k)


def same_bytes(a, b) -> None:
    """Everything a user reads from a run directory is equal, timings aside."""
    for f in FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    sa.pop("wall_seconds"), sb.pop("wall_seconds")
    assert sa == sb
    figs = json.loads((a / "meta.json").read_text())["figures"]
    assert figs and figs == json.loads((b / "meta.json").read_text())["figures"]
    for f in figs:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    sa, sb = RunDir(a).saved_params(), RunDir(b).saved_params()
    assert sorted(sa) == sorted(sb)
    for t in sa:
        for r in sa[t]:
            for k in sa[t][r]:
                assert sa[t][r][k].equal(sb[t][r][k])


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("one")
    sgdlab.run(diag(), root / "diag", progress=False, quiet=True, workers=1)
    sgdlab.run(relu(), root / "relu", progress=False, quiet=True, workers=1)
    return root


@pytest.mark.parametrize("workers", [2, 3])
def test_sharded_run_directory_is_byte_identical(single, tmp_path, workers, like_one_process):
    res = sgdlab.run(diag(), tmp_path / "diag", progress=False, quiet=True, workers=workers)
    meta = RunDir(res.path).meta()
    assert meta["workers"] == workers and len(set(meta["worker_pids"])) == workers
    assert meta["worker_pids"][0] == os.getpid()
    assert any(r["diverged_at"] is not None for r in res.summary["runs"])  # freezing is exercised
    same_bytes(single / "diag", tmp_path / "diag")
    sgdlab.run(relu(), tmp_path / "relu", progress=False, quiet=True, workers=workers)
    assert RunDir(tmp_path / "relu").meta()["workers"] == workers
    like_one_process(single / "relu", tmp_path / "relu")


def test_runs_moved_between_processes_at_every_step_give_the_same_bytes(single, tmp_path, monkeypatch):
    """Measured re-cuts (shards.REBALANCE_SECONDS) at every step, with costs that change each time
    so the runs really move: the directory is still that of one process."""
    from sgdlab.workflows import shards

    rng = np.random.default_rng(0)
    monkeypatch.setattr(shards, "REBALANCE_SECONDS", 0.0)
    monkeypatch.setattr(shards, "AHEAD_STEPS", 2)  # a re-cut waits for the steps sent ahead
    monkeypatch.setattr(shards, "measured_costs", lambda eng, *measured: (
        {r: float(rng.uniform(0.1, 10)) for r in range(eng.n_runs)}, 0.0))
    res = sgdlab.run(diag(), tmp_path / "diag", progress=False, quiet=True, workers=3)
    assert RunDir(res.path).meta()["rebalanced"] >= 4
    same_bytes(single / "diag", tmp_path / "diag")


def test_torch_path_runs_moved_at_every_step_give_the_same_bytes(single, tmp_path, monkeypatch, like_one_process):
    """As above on the torch path (a ReLU net); runs whose evaluation keeps state never move."""
    from sgdlab.workflows import shards

    rng = np.random.default_rng(0)
    monkeypatch.setattr(shards, "REBALANCE_SECONDS", 0.0)
    monkeypatch.setattr(shards, "AHEAD_STEPS", 2)
    monkeypatch.setattr(shards, "measured_costs", lambda eng, *measured: (
        {r: float(rng.uniform(0.1, 10)) for r in range(eng.n_runs)}, 0.0))
    res = sgdlab.run(relu(), tmp_path / "relu", progress=False, quiet=True, workers=2)
    assert RunDir(res.path).meta()["rebalanced"] >= 2
    like_one_process(single / "relu", tmp_path / "relu")
    # curvature tracking keeps warm starts per run in its process: those runs never move
    res = sgdlab.run(relu("metrics.curvature.every=2"), tmp_path / "curv", progress=False, quiet=True, workers=2)
    assert RunDir(res.path).meta()["rebalanced"] == 0


def test_the_comparison_can_fail(single, tmp_path):
    # negative control: other seeds give other bytes, and other numbers beyond rounding
    sgdlab.run(diag("first_seed=5"), tmp_path / "diag", progress=False, quiet=True, workers=2)
    with pytest.raises(AssertionError):
        same_bytes(single / "diag", tmp_path / "diag")
    sgdlab.run(relu("first_seed=5"), tmp_path / "relu", progress=False, quiet=True, workers=1)
    with pytest.raises(AssertionError):
        close_runs(single / "relu", tmp_path / "relu")


def test_in_memory_sharded_run_returns_the_same_result(like_one_process):
    a = sgdlab.run(relu(), progress=False, quiet=True, workers=1)
    b = sgdlab.run(relu(), progress=False, quiet=True, workers=3)
    tol = {"rtol": 0, "atol": 0} if BLAS_PROBLEM is None else {"rtol": 1e-6, "atol": 1e-12}  # see like_one_process
    for k in a.metrics:
        np.testing.assert_allclose(a.metrics[k], b.metrics[k], equal_nan=True, **tol)
    for k, v in a.params().items():
        np.testing.assert_allclose(v.numpy(), b.params()[k].numpy(), **tol)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_a_killed_worker_resumes_to_the_same_bytes(single, tmp_path, monkeypatch, start):
    from sgdlab.workflows import shards

    monkeypatch.setattr(shards, "START_METHOD", start)
    out = tmp_path / "diag"
    steps = Engine(diag()).eval_steps
    kill_at = int(steps[6])  # the worker dies (SIGKILL) when asked to advance to the 7th evaluation
    with pytest.raises(WorkerError, match="killed by signal 9"):
        sgdlab.run(diag(), out, progress=False, quiet=True, workers=2, _kill_worker_at=kill_at)
    rd = RunDir(out)
    assert rd.has_checkpoint() and not rd.complete() and not (out / ".lock").exists()
    # the worker is sent the 7th step (and dies) up to AHEAD_STEPS evaluations before the caller
    # gets there: the last checkpoint is of one of the steps before
    assert int(steps[max(0, 5 - AHEAD_STEPS)]) <= rd.load_checkpoint()["state"]["step"] <= int(steps[5])
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    sgdlab.resume(out, progress=False, quiet=True, workers=2)
    same_bytes(single / "diag", out)
    sgdlab.resume(copy, progress=False, quiet=True, workers=1)  # any worker count resumes it
    same_bytes(single / "diag", copy)


def test_the_run_says_why_it_uses_fewer_or_more_processes_than_cores(capsys):
    from sgdlab.workflows.api import _parallelism
    from sgdlab.workflows.cores import available_cpus

    eng = Engine(diag())  # 4 SGD arms x 3 seeds in one group, GD alone: at most 6 + 1 pieces
    par = _parallelism(eng, 1000, quiet=False)
    said = capsys.readouterr().err
    assert par.workers == len(split(eng, 1000)) == 7 and f"{eng.n_runs} runs over 7 process(es)" in said
    assert "7 pieces: no process holds a single run of a group" in said
    assert ("take turns on them" in said) == (7 > available_cpus())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process names: Linux prctl")
def test_workers_are_named_for_top_and_pgrep():
    from sgdlab.workflows.shards import spread

    eng = Engine(diag())
    with spread(eng, eng.initial_state(), 3) as (sh, _):
        names = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in sh.pids[1:]]
    assert names == ["sgdlab-shard-1", "sgdlab-shard-2"]


def test_a_dead_worker_is_named_whichever_end_of_its_pipe_notices():
    from sgdlab.workflows.shards import WorkerDied, spread

    eng = Engine(diag())
    with pytest.raises(WorkerDied, match="killed by signal 9 at step 7"), \
            spread(eng, eng.initial_state(), 2) as (sh, _):
        os.kill(sh.pids[1], signal.SIGKILL)
        sh.procs[0].join()
        sh._send_to(7)  # sending to it breaks the pipe before any reply is awaited


def test_interrupted_sharded_run_resumes_with_other_worker_counts(single, tmp_path):
    out = tmp_path / "relu"
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(relu(), out, progress=False, quiet=True, workers=3, _stop_after=100)
    sgdlab.resume(out, progress=False, quiet=True, workers=2)
    same_bytes(single / "relu", out)


def test_pool_sweep_spreads_its_one_job_over_every_worker(tmp_path, capsys):
    axes = [("arms.1.schedule.lr", [0.3, 0.5])]
    base = diag("snapshots=0")
    a = Sweep.create(tmp_path / "a", base, axes)
    a.execute("inprocess", workers=1, progress=False)
    b = Sweep.create(tmp_path / "b", base, axes)
    b.execute("pool", workers=2)
    said = capsys.readouterr()
    assert "job 0 (1/1): done, its runs over 2 processes" in said.out + said.err
    (job,) = b.index()["jobs"]
    meta = RunDir(tmp_path / "b" / job["dir"]).meta()
    assert meta["workers"] == 2 and len(set(meta["worker_pids"])) == 2 and os.getpid() not in meta["worker_pids"]
    assert "workers" not in RunDir(tmp_path / "a" / job["dir"]).meta()  # in-process on one: one process
    for f in ("metrics.jsonl", "runs.json"):
        assert (tmp_path / "a" / job["dir"] / f).read_bytes() == (tmp_path / "b" / job["dir"] / f).read_bytes()
    from sgdlab.workflows.compare import rows_of

    def table(d):  # the across-seed rows, less the column naming the directory
        return [{k: v for k, v in r.items() if k != "source"} for r in rows_of(d)]

    assert table(tmp_path / "a") == table(tmp_path / "b")


# --------------------------------------------------------------------------- a real process, killed

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"}
CLI = [sys.executable, "-m", "sgdlab"]


def _cli_run(cfg_sets, out, workers, **kw):
    args = CLI + ["run", "diag-net", "--out", str(out), "--no-progress", "--workers", str(workers)]
    for s in cfg_sets:
        args += ["--set", s]
    return subprocess.Popen(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["worker", "caller"])
def test_cli_sharded_run_killed_after_a_checkpoint_resumes_byte_identical(tmp_path, victim):
    sets = [s for s in DIAG if not s.startswith("steps")] + ["steps=400001", "eval.points=60"]
    ref = _cli_run(sets, tmp_path / "ref", 1)
    assert ref.wait(600) == 0, ref.stderr.read()[-2000:]
    out = tmp_path / "run"
    for _ in range(5):  # a kill that lands after the run finished tests nothing: start again
        shutil.rmtree(out, ignore_errors=True)
        p = _cli_run(sets, out, 2)
        while p.poll() is None and not (out / "checkpoint.pt").exists():  # the observable event
            time.sleep(0.01)
        pids = None
        while p.poll() is None and pids is None:
            pids = RunDir(out).meta().get("worker_pids") if (out / "meta.json").exists() else None
        if p.poll() is not None:
            continue
        os.kill(pids[1] if victim == "worker" else p.pid, signal.SIGKILL)
        p.wait(60)
        if not RunDir(out).complete():
            break
    else:
        pytest.fail("no kill landed before the run finished")
    if victim == "worker":  # one line: what died and how to go on; not bad input (exit 3)
        err = p.stderr.read()
        assert p.returncode == 3 and "worker process" in err and f"sgdlab run --resume {out}" in err, err
        assert "interrupted" not in err and "Traceback" not in err, err
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the caller's death takes its worker with it
        try:
            os.kill(pids[1], 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a worker outlived its caller")
    r = subprocess.run(CLI + ["run", "--resume", str(out), "--no-progress", "--workers", "2"], env=ENV,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    same_bytes(tmp_path / "ref", out)


def test_a_users_module_model_shards_byte_identical(tmp_path, monkeypatch, like_one_process):
    """The deep-net path (a registered nn.Module, vmap over runs; a one-run batch would take the
    plain step instead, so no piece holds one run of a larger group) gives the same bytes, with
    workers forked and spawned."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "your-own-experiment.md").read_text()
    for body in re.findall(r"```\w+\n(# (?:tasks\.py|exp\.toml)\n.*?)```", page, re.DOTALL):
        (tmp_path / body.split("\n", 1)[0][2:]).write_text(body)
    cfg = sgdlab.override(sgdlab.load_experiment(str(tmp_path / "exp.toml")),
                          ["steps=120", "seeds=3", "eval.points=4", "checkpoint_seconds=1e-9"])
    sgdlab.run(cfg, tmp_path / "one", progress=False, quiet=True, workers=1)
    for w in (2, 3):
        sgdlab.run(cfg, tmp_path / f"w{w}", progress=False, quiet=True, workers=w)
        assert RunDir(tmp_path / f"w{w}").meta()["workers"] > 1
        like_one_process(tmp_path / "one", tmp_path / f"w{w}")
    # spawned workers (macOS, Windows) import the experiment's module themselves, from elsewhere
    from sgdlab.workflows import shards

    monkeypatch.setattr(shards, "START_METHOD", "spawn")
    monkeypatch.chdir(tmp_path.parent)
    sgdlab.run(cfg, tmp_path / "spawned", progress=False, quiet=True, workers=2)
    assert RunDir(tmp_path / "spawned").meta()["workers"] == 2
    like_one_process(tmp_path / "one", tmp_path / "spawned")


def test_spawned_workers_give_the_same_bytes(single, tmp_path, monkeypatch):
    """Where workers cannot be forked (macOS, Windows) they are spawned and rebuild the engine from
    the config: same bytes (a user's module model: test_a_users_module_model_shards_byte_identical)."""
    from sgdlab.workflows import shards

    monkeypatch.setattr(shards, "START_METHOD", "spawn")
    res = sgdlab.run(diag(), tmp_path / "diag", progress=False, quiet=True, workers=2)
    assert RunDir(res.path).meta()["workers"] == 2
    same_bytes(single / "diag", tmp_path / "diag")


def test_a_spawned_worker_missing_a_metric_of_the_caller_says_so(tmp_path, monkeypatch, like_one_process):
    """A metric registered only in the calling process (e.g. inside a script's `__main__` guard)
    is unknown to a spawned worker: the run stops with an error saying what to do, instead of
    logging NaN for that worker's runs, and leaves no directory behind (it held no result)."""
    from sgdlab.metrics.probes import PROBES
    from sgdlab.metrics.registry import METRIC_SPECS
    from sgdlab.workflows import shards

    name = "test_shards_caller_only"
    sgdlab.register_metric(name)(lambda model, params, data: params["u"].sum(1))
    try:
        monkeypatch.setattr(shards, "START_METHOD", "spawn")
        cfg = diag(f"metrics.names=['train_loss','{name}']", "figure=['train_loss']")
        with pytest.raises(WorkerError, match=f"could not rebuild.*unknown metric {name!r}.*__main__"):
            sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True, workers=2)
        assert not (tmp_path / "r").exists()
    finally:
        METRIC_SPECS.remove(name)
        PROBES._items.pop(name, None)


