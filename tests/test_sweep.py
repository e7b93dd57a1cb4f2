"""Sweeps: planning, equality with one-by-one runs, failures, resume, executors, window finder."""

import json
import os

import numpy as np
import pytest

import sgdlab
from sgdlab.store.runs import RunDir
from sgdlab.workflows.compare import export, format_rows, rows_of
from sgdlab.workflows.sweep import Sweep, parse_axis, parse_values, plan, run_job

pytestmark = pytest.mark.study("diag_net")


def base():
    cfg = sgdlab.load_experiment("diag-net")
    return sgdlab.override(cfg, ["steps=1500", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100",
                                 "eval.grid='linear'", "eval.points=6", "arms.1.schedule.lr=0.4",
                                 "arms.2.schedule.lr=0.4", "arms.3.schedule.lr=0.4"])


def test_grid_syntax():
    assert parse_values("0.1,0.2, 0.3") == [0.1, 0.2, 0.3]
    assert parse_values("[0.1, 0.3], [0.5]") == [[0.1, 0.3], [0.5]]
    np.testing.assert_allclose(parse_values("logspace(0.1, 10, 3)"), [0.1, 1.0, 10.0])
    np.testing.assert_allclose(parse_values("linspace(0, 1, 3)"), [0, 0.5, 1])
    r = parse_values("loguniform(0.1, 1, 5, 3)")
    assert len(r) == 5 and all(0.1 <= x <= 1 for x in r) and r == sorted(r)
    assert r == parse_values("loguniform(0.1, 1, 5, 3)")  # seeded: reproducible
    assert parse_axis("data.kind=sparse_regression") == ("data.kind", ["sparse_regression"])
    with pytest.raises(sgdlab.core.errors.ConfigError, match="logspace"):
        parse_values("logspace(0, 1)")


def test_planner_batches_compatible_points_and_splits_the_rest():
    points, jobs = plan(base(), [("arms.1.schedule.lr", [0.3, 0.4, 0.5]), ("arms.0.optimizer.batch_size", [1, 2])])
    assert len(points) == 6 and len(jobs) == 1  # step sizes and batch sizes batch together
    # arms 2-4 are identical at every point: run once, shared
    assert len(jobs[0].config.arms) == 3 * 1 + 2 * 1 + 3  # arm1 x3 lrs, arm0 x2 batch sizes, 3 shared
    points, jobs = plan(base(), [("arms.1.schedule.lr", [0.3, 0.4]), ("data.n", [20, 25])])
    assert len(jobs) == 2 and {p.job for p in points} == {0, 1}
    points, jobs = plan(base(), [("steps", [100, 200])])
    assert len(jobs) == 2


def test_sweep_equals_runs_one_by_one_and_exports(tmp_path):
    axes = [("arms.1.schedule.lr", [0.3, 0.5])]
    sw = Sweep.create(tmp_path / "sw", base(), axes)
    sw.execute(progress=False)
    rows = rows_of(tmp_path / "sw")
    assert len(rows) == 2 * 5
    for p in sw.points():
        alone = sgdlab.run(sgdlab.override(base(), [f"arms.1.schedule.lr={p.values['arms.1.schedule.lr']}"]),
                           progress=False, quiet=True)
        job = RunDir(tmp_path / "sw" / sw.index()["jobs"][p.job]["dir"]).summary()
        # p.arms maps the base labels, in arm order, to the job's arms; the lone run labels its arms
        # from its own (overridden) config
        for (arm, merged), own in zip(p.arms.items(), alone.config.arms):
            got = sorted((r["seed"], r["final"]["test_loss"]) for r in job["runs"] if r["arm"] == merged)
            want = sorted((r["seed"], r["final"]["test_loss"]) for r in alone.summary["runs"] if r["arm"] == own.label)
            assert [s for s, _ in got] == [s for s, _ in want]
            np.testing.assert_allclose([v for _, v in got], [v for _, v in want], rtol=1e-10)
    text = format_rows(rows)
    assert "arms.1.schedule.lr" in text and "diverged" in text
    out = export(rows, tmp_path / "rows.csv")
    assert out.read_text().count("\n") == len(rows) + 1
    from sgdlab.plots.sweep import plot_sweep

    assert {p.name for p in plot_sweep(tmp_path / "sw")} >= {"final_vs_value.png", "over_training.png"}


def test_failing_and_diverging_jobs_are_recorded_and_others_finish(tmp_path):
    cfg = sgdlab.override(base(), ["arms.0.optimizer.batch_size=4", "arms.1.schedule.lr=50.0"])
    sw = Sweep.create(tmp_path / "sw", cfg, [("data.n", [20, 3])])  # n=3 < batch 4: that job fails
    res = sw.execute(progress=False)
    index = sw.index()
    status = {j["id"]: j["status"] for j in index["jobs"]}
    assert sorted(status.values()) == ["done", "failed"]
    failed = next(j for j in index["jobs"] if j["status"] == "failed")
    assert "batch_size 4 exceeds the 3 training examples" in failed["error"]
    done = next(j for j in index["jobs"] if j["status"] == "done")
    s = RunDir(tmp_path / "sw" / done["dir"]).summary()
    wild = next(a for a in s["arms"] if a.startswith("SGD eta=50.0 /4.8"))  # the label follows the override
    assert s["arms"][wild]["n_diverged"] == 2  # eta=50 diverges on every seed, recorded
    assert len(res) == 2
    rows = rows_of(tmp_path / "sw")
    assert any(r.get("status") == "failed" for r in rows)


def test_killed_sweep_resumes_only_unfinished_jobs(tmp_path):
    sw = Sweep.create(tmp_path / "sw", base(), [("steps", [800, 1200, 1600])])
    jobs = sw.index()["jobs"]
    # job 0 finished, job 1 was killed half-way (checkpoint, no summary), job 2 never started
    run_job(jobs[0]["config"], str(tmp_path / "sw" / jobs[0]["dir"]))
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(sgdlab.core.config.from_dict(sgdlab.ExperimentConfig, jobs[1]["config"]),
                   tmp_path / "sw" / jobs[1]["dir"], progress=False, quiet=True, _stop_after=500)
    done0 = (tmp_path / "sw" / jobs[0]["dir"] / "summary.json").stat().st_mtime_ns
    assert [j["dir"] for j in sw.pending()] == [jobs[1]["dir"], jobs[2]["dir"]]
    results = sw.execute(progress=False)
    assert set(results) == {1, 2}  # only the unfinished jobs ran
    assert (tmp_path / "sw" / jobs[0]["dir"] / "summary.json").stat().st_mtime_ns == done0
    # the resumed job equals an uninterrupted run
    full = sgdlab.run(sgdlab.core.config.from_dict(sgdlab.ExperimentConfig, jobs[1]["config"]), progress=False, quiet=True)
    got = sgdlab.load_run(tmp_path / "sw" / jobs[1]["dir"])
    np.testing.assert_array_equal(got.metrics["test_loss"], full.metrics["test_loss"])


def _finals(path):
    """{(point values, arm): median final test loss} of a sweep directory."""
    return {(tuple(sorted((k, str(v)) for k, v in r.items() if k.startswith("arms.") or k == "steps")), r["arm"]):
            r["test_loss_median"] for r in rows_of(path)}


def test_process_pool_executor_matches_in_process(tmp_path):
    axes = [("arms.1.schedule.lr", [0.3, 0.5]), ("steps", [900, 1100])]
    a = Sweep.create(tmp_path / "a", base(), axes)
    a.execute("inprocess", progress=False)
    b = Sweep.create(tmp_path / "b", base(), axes)
    b.execute("pool", workers=2, progress=False)
    assert _finals(tmp_path / "a") == _finals(tmp_path / "b")


def test_an_in_process_sweep_spreads_each_job_as_sgdlab_run_does(tmp_path, monkeypatch):
    """By default each job's runs go over the machine's cores (here said to be 2), as `sgdlab run`
    spreads them; the bytes are those of one process."""
    from sgdlab.workflows import cores

    monkeypatch.setattr(cores, "machine_workers", lambda: (2, "2 physical core(s) usable"))
    axes = [("arms.1.schedule.lr", [0.3, 0.5])]
    a = Sweep.create(tmp_path / "a", base(), axes)
    a.execute("inprocess", workers=1, progress=False)
    b = Sweep.create(tmp_path / "b", base(), axes)
    b.execute(progress=False)
    (job,) = json.loads((tmp_path / "b" / "index.json").read_text())["jobs"]
    assert job["status"] == "done" and RunDir(tmp_path / "b" / job["dir"]).meta()["workers"] == 2
    assert "workers" not in RunDir(tmp_path / "a" / job["dir"]).meta()
    for f in ("metrics.jsonl", "runs.json", "summary.json"):
        got, want = ((tmp_path / d / job["dir"] / f).read_text() for d in ("b", "a"))
        if f == "summary.json":  # the wall time aside
            got, want = ({k: v for k, v in json.loads(x).items() if k != "wall_seconds"} for x in (got, want))
        assert got == want


def test_an_in_process_sweep_leaves_the_callers_torch_threads_as_they_were(tmp_path):
    """The jobs run in the caller's process: its torch threads (`sgdlab --threads 3`) are the same
    after the sweep (a job's own thread setting lasts only as long as the job)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        Sweep.create(tmp_path / "s", base(), [("arms.1.schedule.lr", [0.3])]).execute(workers=1, progress=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.ray
def test_ray_local_cluster_matches_in_process(tmp_path):
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    axes = [("arms.1.schedule.lr", [0.3, 0.5]), ("steps", [900, 1100])]
    a = Sweep.create(tmp_path / "a", base(), axes)
    a.execute("inprocess", workers=1, progress=False)
    b = Sweep.create(tmp_path / "b", base(), axes)
    b.execute("ray", workers=4, progress=False)  # starts and stops a local 4-CPU cluster
    assert _finals(tmp_path / "a") == _finals(tmp_path / "b")
    jobs = json.loads((tmp_path / "b" / "index.json").read_text())["jobs"]
    assert len(jobs) == 2 and all(j["status"] == "done" for j in jobs)
    for j in jobs:  # 2 jobs on 4 CPUs: each task holds 2 of them and spreads its runs over 2 processes
        assert RunDir(tmp_path / "b" / j["dir"]).meta()["workers"] == 2
        assert "workers" not in RunDir(tmp_path / "a" / j["dir"]).meta()
        for f in ("metrics.jsonl", "runs.json"):
            assert (tmp_path / "a" / j["dir"] / f).read_bytes() == (tmp_path / "b" / j["dir"] / f).read_bytes()


def test_ray_tasks_share_the_clusters_cpus_within_one_node():
    """16 CPUs on two 8-CPU nodes (a third node dead): one job's task asks for 8, not 16 (it
    could never be placed); three jobs 6, 5, 5; more jobs than CPUs 1 each."""
    from types import SimpleNamespace

    from sgdlab.workflows.executors import task_cpus

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0}}, {"Alive": True, "Resources": {"CPU": 8.0}},
             {"Alive": False, "Resources": {"CPU": 64.0}}]
    ray = SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0}, nodes=lambda: nodes)
    assert task_cpus(ray, 1) == [8] and task_cpus(ray, 3) == [6, 5, 5] and task_cpus(ray, 20) == [1] * 20
    empty = SimpleNamespace(cluster_resources=dict, nodes=list)  # no CPU resource known
    assert task_cpus(empty, 2) == [1, 1]


def test_existing_sweep_directory_is_not_overwritten(tmp_path):
    Sweep.create(tmp_path / "sw", base(), [("steps", [100])])
    with pytest.raises(sgdlab.core.errors.CheckpointError, match="already holds a sweep"):
        Sweep.create(tmp_path / "sw", base(), [("steps", [100])])


def test_window_finder_brackets_are_consistent():
    from sgdlab.workflows.window import (
        CONVERGED,
        DIVERGED,
        STABILIZED,
        _classify,
        find_window,
    )

    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), ["steps=20001", "seeds=3"])
    import dataclasses

    cfg = dataclasses.replace(cfg, arms=cfg.arms[:1])
    res = find_window(cfg, 0.2, 0.35, points=7, bisect=2)
    assert res.status.shape == (len(res.lrs), 3)
    found = np.isfinite(res.lower)
    assert found.any()
    small = dataclasses.replace(cfg, eval=sgdlab.spec.experiment.EvalConfig("linear", 40),
                                metrics=dataclasses.replace(cfg.metrics, names=("train_loss",)))
    for j, s in enumerate(res.seeds):
        if not found[j]:
            continue
        assert res.lower[j] <= res.upper[j]
        # the edges are stabilizing steps; every grid step below lower converged or the
        # boundary was bracketed from a converging one; above upper some step diverged
        got = _classify(small, {s: [float(res.lower[j]), float(res.upper[j])]}, 1e-3, 0.1)
        assert got[(float(res.lower[j]), s)][0] == STABILIZED
        assert got[(float(res.upper[j]), s)][0] == STABILIZED
        # below the window nothing diverged and something converged; above it something diverged
        below = res.status[res.lrs < res.lower[j], j]
        below = below[below >= 0]
        above = res.status[res.lrs > res.upper[j], j]
        above = above[above >= 0]
        if below.size:
            assert (below != DIVERGED).all() and (below == CONVERGED).any(), below
        if above.size:
            assert (above == DIVERGED).any(), above
