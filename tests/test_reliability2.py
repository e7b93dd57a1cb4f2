"""Reliability, second round: the user's own kinds and files get the guarantees of the bundled
ones (exit codes, one validation for every user file, owned names, input hashes on resume,
nothing half-written, trust for foreign run directories, bounded work)."""

import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import sgdlab
from sgdlab.cli import main
from sgdlab.exit_codes import BAD_INPUT, FAILED_WORK

TINY = ["steps=300", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'",
        "eval.points=4", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4", "arms.3.schedule.lr=0.4"]
TINY_CLI = [a for kv in TINY for a in ("--set", kv)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error(r, *needles):
    """Exit 2 with exactly one `error:` line (no traceback) holding every needle."""
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == BAD_INPUT, r.output
    assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in lines[0], r.output
    return lines[0]


# ----------------------------------------------------------------------------- 1. exit codes

def test_a_sweep_with_a_failed_job_exits_3_and_lists_it(tmp_path):
    r = cli("sweep", "diag-net", *TINY_CLI, "--set", "arms.0.optimizer.batch_size=4", "--grid", "data.n=20,3",
            "--out", tmp_path / "sw")
    assert r.exit_code == FAILED_WORK, r.output
    assert "1 of 2 job(s) of the sweep" in r.output and "job 1" in r.output and "data.n=3" in r.output
    assert "batch_size 4 exceeds the 3 training examples" in r.output
    # compare over it says so too; over a clean run it exits 0
    r = cli("compare", tmp_path / "sw")
    assert r.exit_code == FAILED_WORK and "failed" in r.output, r.output
    ok = cli("sweep", "diag-net", *TINY_CLI, "--grid", "data.n=20", "--out", tmp_path / "ok")
    assert ok.exit_code == 0, ok.output
    assert cli("compare", tmp_path / "ok").exit_code == 0


def test_a_window_that_finds_nothing_exits_3(tmp_path):
    # step sizes far above the stabilization window: every run diverges, no window
    r = cli("window", "diag-net", *TINY_CLI, "--lo", "50", "--hi", "100", "--points", "2", "--bisect", "0",
            "--out", tmp_path / "w")
    assert r.exit_code == FAILED_WORK and "no seed stabilizes" in r.output, r.output
    assert (tmp_path / "w" / "window.json").exists()  # the result is written all the same


# ----------------------------------------------------------------------------- 3. names are owned

def test_a_user_metric_named_like_a_builtin_is_refused_naming_both():
    from sgdlab.errors import ConfigError

    def train_loss(model, params, data):
        return params["u"].sum(1) * 0

    with pytest.raises(ConfigError, match=r"metric 'train_loss' registered twice: .*test_reliability2.*"
                                          r"belongs to sgdlab \(built-in metric\)"):
        sgdlab.register_metric("train_loss")(train_loss)
    with pytest.raises(ConfigError, match=r"dataset 'sparse_regression' registered twice: .*test_reliability2.*"
                                          r"belongs to sgdlab \(built-in, sgdlab.data.synthetic\)"):
        sgdlab.register_data("sparse_regression")(lambda n=1: {})


def test_a_user_metric_named_like_a_model_metric_is_refused_before_training(tmp_path):
    from sgdlab.errors import ConfigError
    from sgdlab.metrics.custom import METRICS

    METRICS.reserved.pop("l1")  # a name only the engine knows (as for a model this list misses)
    try:
        sgdlab.register_metric("l1")(lambda model, params, data: params["u"].sum(1))
        cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), TINY + ["metrics.names=['l1']"])
        with pytest.raises(ConfigError, match="model 'diagonal_net' computes a built-in metric of that name"):
            sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True)
        assert not (tmp_path / "r").exists()
    finally:
        METRICS._items.pop("l1", None)
        METRICS.reserved["l1"] = "sgdlab (built-in metric)"


def test_two_plugins_choosing_one_name_are_refused_naming_both_files(tmp_path):
    for stem in ("r2_plug_a", "r2_plug_b"):
        (tmp_path / f"{stem}.py").write_text(textwrap.dedent('''
            import sgdlab

            @sgdlab.register_metric("r2_shared")
            def m(model, params, data):
                return params["u"].sum(1)
        '''))
    from sgdlab.plugins import import_modules

    import_modules([str(tmp_path / "r2_plug_a.py")])
    with pytest.raises(Exception, match=r"r2_shared.*r2_plug_b\.py.*belongs to r2_plug_a \(.*r2_plug_a\.py\)"):
        import_modules([str(tmp_path / "r2_plug_b.py")])
