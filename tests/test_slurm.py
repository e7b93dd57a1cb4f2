"""The SLURM executor, run through submitit's local backend (subprocesses on this machine, the
same submission, pickling, result files and polling as on a cluster; no SLURM needed)."""

import json

import pytest
from click.testing import CliRunner

import sgdlab
from sgdlab.core.errors import ConfigError
from sgdlab.frontends.cli import main
from sgdlab.workflows.slurm import (
    SLURM_DIR,
    SlurmOptions,
    _parameters,
    resolve_options,
    still_active,
)
from sgdlab.workflows.sweep import Sweep

pytestmark = pytest.mark.study("diag_net")

submitit = pytest.importorskip("submitit")

LOCAL = SlurmOptions(cluster="local", time=10, poll=0.2)


def base():
    cfg = sgdlab.load_experiment("diag-net")
    return sgdlab.override(cfg, ["steps=600", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100",
                                 "eval.grid='linear'", "eval.points=4"])


def sweep_state(path):
    """Per job: status, error, and [(arm, seed, final test loss)] when done."""
    out = []
    for j in json.loads((path / "index.json").read_text())["jobs"]:
        runs = None
        if j["status"] == "done":
            s = json.loads((path / j["dir"] / "summary.json").read_text())
            runs = sorted((r["arm"], r["seed"], r["final"]["test_loss"]) for r in s["runs"])
        out.append((j["status"], j.get("error", ""), runs))
    return out


def test_slurm_executor_collects_the_same_sweep_as_in_process_and_resumes(tmp_path):
    """One array of two tasks; one job fails (n=3 < batch 4) and is recorded, the other
    finishes; the sweep directory ends as the in-process executor leaves it. A resume submits
    only the unfinished job, with the options saved at the first submission."""
    cfg = sgdlab.override(base(), ["arms.0.optimizer.batch_size=4"])
    axes = [("data.n", [20, 3])]
    a = Sweep.create(tmp_path / "a", cfg, axes)
    a.execute("inprocess", progress=False)
    b = Sweep.create(tmp_path / "b", cfg, axes)
    res = b.execute("slurm", progress=False, slurm=LOCAL)
    assert {k: r["status"] for k, r in res.items()} == {0: "done", 1: "failed"}
    state = sweep_state(tmp_path / "b")
    assert state == sweep_state(tmp_path / "a")
    assert "batch_size 4 exceeds the 3 training examples" in state[1][1]
    submitted = json.loads((tmp_path / "b" / SLURM_DIR / "submitted.json").read_text())
    assert set(submitted) == {"0", "1"}
    res = Sweep(tmp_path / "b").execute("slurm", progress=False)  # options read back from slurm/options.json
    assert set(res) == {1}
    again = json.loads((tmp_path / "b" / SLURM_DIR / "submitted.json").read_text())
    assert again["0"] == submitted["0"] and again["1"] != submitted["1"]
    assert sweep_state(tmp_path / "b") == state


def test_cli_sweep_on_slurm_reads_the_sweep_file_table(tmp_path):
    spec = tmp_path / "sweep.toml"
    sets = ", ".join(f'"{s}"' for s in ["steps=400", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100",
                                        "eval.grid='linear'", "eval.points=3"])
    spec.write_text(f'experiment = "diag-net"\nseeds = 2\nset = [{sets}]\n[grid]\n"arms.1.schedule.lr" = [0.3, 0.4]\n'
                    '[slurm]\ncluster = "local"\ntime = 10\npoll = 0.2\n')
    r = CliRunner().invoke(main, ["sweep", "--file", str(spec), "--executor", "slurm", "--cpus", "1",
                                  "--out", str(tmp_path / "sw")])
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "sw" / "index.json").read_text())
    assert [j["status"] for j in index["jobs"]] == ["done"]  # step sizes batch into one job
    saved = json.loads((tmp_path / "sw" / SLURM_DIR / "options.json").read_text())
    assert saved["cluster"] == "local" and saved["cpus"] == 1 and saved["time"] == 10


def test_options_precedence_resources_and_errors(tmp_path):
    (tmp_path / SLURM_DIR).mkdir()
    (tmp_path / SLURM_DIR / "options.json").write_text(json.dumps({"partition": "old", "cpus": 4, "time": 30}))
    o = resolve_options(tmp_path, {"cpus": 8, "gpus": None}, {"partition": "gpu", "mem": 32})
    assert (o.partition, o.cpus, o.time, o.mem, o.gpus) == ("gpu", 8, 30, 32.0, -1)
    cuda = [{"config": {"device": "cuda"}}, {"config": {"device": "cpu"}}]
    p = _parameters(SlurmOptions(partition="gpu", account="lab", parallelism=4), cuda, "sw")
    assert p["gpus_per_node"] == 1 and p["slurm_partition"] == "gpu" and p["slurm_array_parallelism"] == 4
    assert p["slurm_additional_parameters"] == {"account": "lab"} and "mem_gb" not in p
    assert _parameters(SlurmOptions(), [{"config": {"device": "cpu"}}], "sw")["gpus_per_node"] == 0
    with pytest.raises(ConfigError, match="unknown key for SlurmOptions 'partitions'; allowed:"):
        resolve_options(tmp_path, table={"partitions": "gpu"})
    with pytest.raises(ConfigError, match="slurm.cluster: unknown 'pbs'; allowed: slurm, local, debug"):
        SlurmOptions(cluster="pbs")


def test_only_tasks_slurm_still_runs_are_waited_for(tmp_path):
    class Job:  # what submitit.SlurmJob exposes: state (from sacct) and the result file's path
        def __init__(self, state, result=False):
            self.state = state
            self.paths = type("P", (), {"result_pickle": tmp_path / ("r" if result else "none")})()

    (tmp_path / "r").write_text("")
    assert still_active(Job("RUNNING")) and still_active(Job("PENDING")) and still_active(Job("REQUEUED"))
    assert not still_active(Job("FAILED")) and not still_active(Job("CANCELLED by 123"))
    assert not still_active(Job("COMPLETED")) and not still_active(Job("RUNNING", result=True))
