"""Runs spread over processes (sgdlab.workflows.shards): the run directory of N worker processes is
byte-identical to one process's (timings aside), kills of a worker resume to the same bytes, and a
pool sweep merged into one job spreads it over every worker."""

import collections
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

import sgdlab
from sgdlab.engine.train import Engine
from sgdlab.store.runs import RunDir
from sgdlab.workflows import cores
from sgdlab.workflows.cores import blas_batch_invariance, choose, physical_cores
from sgdlab.workflows.executors import shares
from sgdlab.workflows.shard_pieces import Measured, measured_costs
from sgdlab.workflows.shards import AHEAD_STEPS, WorkerError, split
from sgdlab.workflows.sweep import Sweep

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "deep_nets")

# Small diag-net: 4 SGD arms x 3 seeds + GD, a diverging arm (lr 0.4 on this data), checkpoints at
# every evaluation; and a ReLU teacher-student net on the torch path.
DIAG = ["steps=1500", "seeds=3", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'",
        "eval.points=12", "checkpoint_seconds=1e-9", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4",
        "arms.3.schedule.lr=0.8", "snapshots=2"]
RELU = ["steps=300", "seeds=3", "eval.points=8", "checkpoint_seconds=1e-9"]
FILES = ("metrics.jsonl", "runs.json", "config.toml")
# Experiments off the diagonal net's kernels (torch paths, a user's metric) are spread over
# processes only where torch's BLAS gives a run the same bits whatever runs share its products.
BLAS_PROBLEM = blas_batch_invariance()


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


def diag(*extra):
    return sgdlab.override(sgdlab.load_experiment("diag-net"), DIAG + list(extra))


def relu(*extra):
    return sgdlab.override(sgdlab.load_experiment("relu-teacher-student"), RELU + list(extra))


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
    from sgdlab.workflows.cores import usable_cpus

    eng = Engine(diag())  # 4 SGD arms x 3 seeds in one group, GD alone: at most 6 + 1 pieces
    par = _parallelism(eng, 1000, quiet=False)
    said = capsys.readouterr().err
    assert par.workers == len(split(eng, 1000)) == 7 and f"{eng.n_runs} runs over 7 process(es)" in said
    assert "7 pieces: no process holds a single run of a group" in said
    assert ("take turns on them" in said) == (7 > len(usable_cpus()))


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


def test_split_covers_every_run_spreads_the_arms_and_is_capped():
    for cfg in (diag(), sgdlab.override(sgdlab.load_experiment("label-noise-diag-net"), ["seeds=3"])):
        eng = Engine(cfg)
        for n in (1, 2, 3, 5, 40):
            parts = split(eng, n)
            assert 1 <= len(parts) <= min(n, eng.n_runs) and all(len(p) for p in parts)
            np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(eng.n_runs))
            for g in eng.all_groups:  # a piece holds all of a group, none, or at least 2 of its runs
                for p in parts:
                    assert len(set(p) & set(g.runs)) in {0, len(g.runs)} | set(range(2, len(g.runs) + 1))
    eng = Engine(diag())
    assert len(split(eng, 5)) == 5
    # weights: a batch-1 run 1 + 7/7 = 2, the full-batch GD run (n = 20) 1 + 26/7 = 4.7; half of
    # the 28.7 is 14.35: 7 runs, then 5 SGD runs and GD
    parts = split(eng, 2)
    assert [len(p) for p in parts] == [7, 6]
    # the 4 SGD arms' runs (one group, arm after arm) taken in bit-reversed order: each piece holds every arm,
    # within one run of an equal share
    eng = Engine(diag("seeds=8"))
    arm = {r.index: r.arm for r in eng.runs}
    sgd = eng.all_groups[0].runs
    for p in split(eng, 2):
        share = collections.Counter(arm[int(r)] for r in p if int(r) in sgd)
        assert set(share) == {arm[r] for r in sgd} and max(share.values()) - min(share.values()) <= 1


def test_split_follows_measured_costs_and_the_callers_own_work():
    eng = Engine(diag())
    even = split(eng, 2, {r: 1.0 for r in range(eng.n_runs)})
    assert [len(p) for p in even] == [6, 7]
    # the calling process's writing counts for piece 0: of 13 + 3, it keeps 8 - 3 runs
    assert [len(p) for p in split(eng, 2, {r: 1.0 for r in range(eng.n_runs)}, extra=3.0)] == [5, 8]
    # piece 0's runs measured twice as costly: it keeps fewer of them
    nothing = [np.zeros((2, len(eng.all_groups)))] * 2
    costs, extra = measured_costs(eng, even, Measured(10, 2, [2.0 * len(even[0]), 1.0 * len(even[1])], nothing),
                                  100, 20)
    assert extra == 0 and len(split(eng, 2, costs)[0]) < 6
    # per group: a group's advancing time per step and evaluating time per evaluation are its
    # runs', projected over the steps and evaluations left; the rest of a piece's time (per
    # evaluation) is shared by all its runs; the caller's writing per evaluation is its extra
    sgd, gd = eng.all_groups
    mine = [r for r in sgd.runs if r in set(even[1])]
    measured = Measured(steps=10, evals=2, seconds=[6.0, 4.0 + 0.7], extra=0.5,
                        group_seconds=[np.array([[4.0, 0.0], [2.0, 0.0]]), np.array([[2.0, 0.6], [1.0, 0.4]])])
    costs, extra = measured_costs(eng, even, measured, 100, 20)
    rest = 0.7 / 2 * 20 / len(even[1])
    assert costs[gd.runs[0]] == pytest.approx(0.6 / 10 * 100 + 0.4 / 2 * 20 + rest)
    assert costs[mine[0]] == pytest.approx((2.0 / 10 * 100 + 1.0 / 2 * 20) / len(mine) + rest)
    assert costs[int(even[0][0])] == pytest.approx((4.0 / 10 * 100 + 2.0 / 2 * 20) / len(even[0]))
    assert extra == pytest.approx(0.5 / 2 * 20)


def test_default_workers_and_thread_rule():
    cfg = diag()
    par = choose(cfg, 13, None, threads=4, invariant=True)
    assert par.workers == min(physical_cores(), 13) and par.threads == 1  # toy path: threads stay off
    assert choose(cfg, 2, 8, invariant=True).workers == 2  # capped by the runs
    # runs not known to be batch-invariant: spread only where the BLAS probe passes
    assert (choose(cfg, 2, 8).workers == 2) == (blas_batch_invariance() is None)
    deep = sgdlab.override(sgdlab.load_experiment("deep-demo-digits"), [])
    assert choose(deep, 10, None, threads=4) == choose(deep, 10, None, threads=4)
    assert choose(deep, 10, None, threads=4).workers == 1 and choose(deep, 10, None, threads=4).threads == 4
    assert shares(4, 1) == [4] and shares(4, 3) == [2, 1, 1] and shares(2, 5) == [1, 1]


def test_a_run_sizes_the_blas_pools_numpy_loaded_and_gives_them_back():
    """numpy sized its OpenBLAS pool when sgdlab imported it, before the command set
    OMP_NUM_THREADS: a run's thread setting reaches it too, and the caller's comes back after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from sgdlab.workflows.cores import torch_threads

    def blas():
        return {d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):  # as on a 2-core machine with nothing set
        before = blas()
        assert before and set(before.values()) == {2}
        with torch_threads(1):
            assert set(blas().values()) == {1}
        assert blas() == before


def test_pool_sweep_spreads_its_one_job_over_every_worker(tmp_path, capsys):
    axes = [("arms.1.schedule.lr", [0.3, 0.5])]
    base = diag("snapshots=0")
    a = Sweep.create(tmp_path / "a", base, axes)
    a.execute("inprocess", progress=False)
    b = Sweep.create(tmp_path / "b", base, axes)
    b.execute("pool", workers=2)
    said = capsys.readouterr()
    assert "job 0 (1/1): done, its runs over 2 processes" in said.out + said.err
    (job,) = b.index()["jobs"]
    meta = RunDir(tmp_path / "b" / job["dir"]).meta()
    assert meta["workers"] == 2 and len(set(meta["worker_pids"])) == 2 and os.getpid() not in meta["worker_pids"]
    assert "workers" not in RunDir(tmp_path / "a" / job["dir"]).meta()  # in-process: one process, as before
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


@pytest.mark.parametrize("name", ["label-noise-diag-net", "sde-teacher-student", "linear2-large-step", "relu-1d"])
def test_every_run_is_independent_of_the_runs_batched_with_it(name):
    """Each run alone (a restricted engine per run) gives the bits of the whole batch, on the torch
    paths too (label noise, SDE, ReLU, linear): nothing in a step or a metric mixes runs, and MKL's
    results do not depend on where a run's row sits in memory (MKL_CBWR=AUTO,STRICT). Where the
    BLAS probe fails (a run's last bits depend on its batch), the same numbers to rounding."""
    from sgdlab.workflows.shards import slice_state

    cfg = sgdlab.override(sgdlab.load_experiment(name), ["steps=60", "seeds=2", "eval.points=4"])
    full = Engine(cfg)
    state = full.initial_state()
    alone = [full.restricted([r]) for r in range(full.n_runs)]
    states = [slice_state(full, e.members, state) for e in alone]
    for t in full.eval_steps:
        full.advance_to(state, int(t))
        m = full.evaluate(state)
        for r, (e, s) in enumerate(zip(alone, states)):
            e.advance_to(s, int(t))
            mine = e.evaluate(s)
            assert set(mine) == set(m)
            for k in m:
                if BLAS_PROBLEM is None:
                    np.testing.assert_array_equal(mine[k][r], m[k][r], err_msg=f"{k} of run {r} at step {t}")
                else:
                    np.testing.assert_allclose(mine[k][r], m[k][r], rtol=1e-6, atol=1e-12,
                                               err_msg=f"{k} of run {r} at step {t}")


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


def test_a_blas_whose_products_depend_on_the_batch_keeps_torch_path_runs_in_one_process(tmp_path, monkeypatch):
    """The probe finds a BLAS that gives a run other last bits when fewer runs share its product
    (as MKL does on some AVX-512 CPUs), and such a run stays in one process, saying why; the
    diagonal net's kernels do not go through such products and are still spread."""
    import torch

    real = torch.matmul

    def by_batch(a, b):  # a product one ulp off when an odd number of rows share it
        out = real(a, b)
        return torch.nextafter(out, torch.full_like(out, torch.inf)) if out.shape[-2] % 2 else out

    monkeypatch.setattr(torch, "matmul", by_batch)
    monkeypatch.setattr(cores, "blas_batch_invariance", cores.blas_batch_invariance.__wrapped__)
    problem = cores.blas_batch_invariance()
    assert problem is not None and "runs alone differ from the same runs among" in problem
    par = choose(relu(), 12, 2)
    assert par.workers == 1 and problem in par.reason
    assert choose(diag(), 13, 2, invariant=True).workers == 2


def test_which_experiments_are_batch_invariant_whatever_the_blas():
    """Only the diagonal net on its kernels with its own metrics: a torch-path step (momentum,
    label noise), curvature, a user's metric or float32 leave it to the BLAS probe."""
    assert Engine(diag()).batch_invariant
    assert Engine(diag("arms.0.optimizer.kind='sde'", "arms.0.optimizer.delta=0.1")).batch_invariant  # its kernel too
    for extra in (["arms.0.optimizer.momentum=0.9"], ["metrics.curvature.every=2", "metrics.names=['sharpness']"],
                  ["dtype='float32'"], ["fused=false"]):
        assert not Engine(diag(*extra)).batch_invariant, extra
    assert not Engine(relu()).batch_invariant
    name = "test_shards_user_metric"
    sgdlab.register_metric(name)(lambda model, params, data: params["u"].sum(1))
    try:
        assert not Engine(diag(f"metrics.names=['train_loss','{name}']")).batch_invariant
    finally:
        from sgdlab.metrics.probes import PROBES
        from sgdlab.metrics.registry import METRIC_SPECS

        METRIC_SPECS.remove(name)
        PROBES._items.pop(name, None)
