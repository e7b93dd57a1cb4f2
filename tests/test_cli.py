"""The command line: derived flags, overrides, errors that say what is allowed."""

import json

import pytest
from click.testing import CliRunner

from sgdlab.frontends.cli import main

pytestmark = pytest.mark.study("diag_net")

TINY = ["--steps", "2000", "--seeds", "2", "--set", "data.n=20", "--set", "data.d=30", "--set", "data.r=3",
        "--set", "data.n_test=100", "--set", "eval.grid='log'", "--set", "eval.points=20", "--no-progress"]


def test_run_plot_summary(tmp_path):
    r = CliRunner().invoke(main, ["run", "diag-net", "--out", str(tmp_path / "r")] + TINY)
    assert r.exit_code == 0, r.output
    assert "diverged" in r.output and "SGD eta=0.25" in r.output  # the printed table
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["steps"] == 2000 and len(s["runs"]) == 9
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "r"), "-m", "train_loss", "-m", "l1"])
    assert r.exit_code == 0 and "diag-net-train_loss-l1.png" in r.output  # chosen panels: their own file
    r = CliRunner().invoke(main, ["summary", str(tmp_path / "r")])
    assert r.exit_code == 0 and "GD eta=1.0" in r.output
    r = CliRunner().invoke(main, ["run", "--resume", str(tmp_path / "r"), "--no-progress"])
    assert r.exit_code == 0


def test_list_show_keys_dry_run():
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0 and "diag-net" in r.output and "diag-net-n40" in r.output
    r = CliRunner().invoke(main, ["show", "diag-net", "--set", "seeds=3"])
    assert r.exit_code == 0 and "seeds = 3" in r.output and 'kind = "piecewise"' in r.output
    r = CliRunner().invoke(main, ["show", "diag-net", "--keys"])
    assert r.exit_code == 0 and "eval.grid" in r.output and "divergence_factor" in r.output
    r = CliRunner().invoke(main, ["run", "diag-net", "--dry-run", "--seeds", "3"])
    assert r.exit_code == 0 and "13 runs in 2 batched group(s)" in r.output


def test_bad_input_exits_2_with_a_clear_message(tmp_path):
    cases = [
        (["run", "diag-nett"], "unknown experiment 'diag-nett'; allowed: "),
        (["run", "diag-net", "--set", "arms.0.schedule.lr=-1"], "step size must be a positive number"),
        (["run", "diag-net", "--set", "model.kind='mlp'"], "unknown model 'mlp'; allowed: deep_net, diagonal_net"),
        (["run", "diag-net", "--set", "arms.0.schedule.kind='warp'"], "allowed: constant, cosine"),
        (["run", "--resume", str(tmp_path / "missing")], "does not exist"),
        (["summary", str(tmp_path)], "is missing"),
    ]
    for args, needle in cases:
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output, (args, r.output)
    r = CliRunner().invoke(main, ["run", "diag-net", "--dtype", "float16"])
    assert r.exit_code == 2 and "float32" in r.output  # typed flag derived from the Literal


def test_an_unknown_executor_is_one_error_listing_the_registered_ones(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "diag-net", "-g", "seeds=1,2", "--executor", "condor",
                                  "--out", str(tmp_path / "s")])
    assert r.exit_code == 2 and "condor" in r.output and "inprocess" in r.output and "slurm" in r.output
    assert not (tmp_path / "s").exists()


def test_sweep_says_how_it_uses_the_workers():
    grid = ["sweep", "diag-net", "--grid", "arms.0.schedule.lr=0.1,0.2", "--seeds", "2", "--dry-run"]
    r = CliRunner().invoke(main, grid + ["--executor", "pool", "--workers", "3"])
    assert r.exit_code == 0 and "pool of 3 process(es): 1 job(s) at a time, each job's runs spread over up to 3 processes" in r.output
    r = CliRunner().invoke(main, grid + ["--ray", "--workers", "4"])  # a Ray task is given CPUs the same way
    assert r.exit_code == 0 and "local Ray cluster of 4 CPU(s): 1 job(s) at a time, each job's task given up to 4 CPUs" in r.output
    r = CliRunner().invoke(main, grid + ["--address", "10.0.0.1:6379"])  # the cluster's CPUs: known when it starts
    assert r.exit_code == 0 and "Ray cluster at 10.0.0.1:6379: its CPUs are shared out among the 1 job(s)" in r.output
    r = CliRunner().invoke(main, grid + ["--address", "10.0.0.1:6379", "--workers", "3"])
    assert "warning: --workers sets the CPUs of a local Ray cluster" in r.output
    r = CliRunner().invoke(main, grid + ["--workers", "3"])  # in process: each job spread as sgdlab run spreads it
    assert r.exit_code == 0 and "in process: 1 job at a time, each job's runs spread over up to 3 process(es), as " \
        "`sgdlab run --workers 3`" in r.output and "warning" not in r.output
    r = CliRunner().invoke(main, grid)  # the default: the machine's cores, said with the reason
    from sgdlab.workflows.cores import machine_workers
    n, why = machine_workers()
    assert r.exit_code == 0 and "warning" not in r.output
    assert f"each job's runs spread over up to {n} process(es) ({why}), as `sgdlab run` chooses" in r.output
    r = CliRunner().invoke(main, grid + ["--executor", "pool"])
    assert f"pool of {n} process(es) ({why}): 1 job(s) at a time" in r.output
    r = CliRunner().invoke(main, grid + ["--executor", "slurm", "--workers", "3"])
    assert "warning: --workers is for the in-process, pool and ray executors; slurm tasks take --cpus" in r.output


@pytest.mark.parametrize("opt", [["--threads", "2"], ["--debug"]])
def test_a_group_option_after_the_command_says_where_it_goes(opt):
    r = CliRunner().invoke(main, ["run", "diag-net", *opt, "--dry-run"])
    assert r.exit_code == 2 and f"{opt[0]} is an option of sgdlab itself, given before the command: sgdlab {opt[0]}" in r.output
    assert "Did you mean" not in r.output
