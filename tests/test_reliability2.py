"""Reliability, second round: the user's own kinds and files get the guarantees of the bundled
ones (exit codes, one validation for every user file, owned names, nothing half-written, bounded
work). Run directories as data (input hashes on resume, trust): tests/test_run_dirs_are_data.py."""

import json
import textwrap

import numpy as np
import pytest
from reliability_helpers import TINY, TINY_CLI, cli, one_error, xy_arrays

import sgdlab
from sgdlab.core.exit_codes import FAILED_WORK

pytestmark = pytest.mark.study("diag_net")


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
    from sgdlab.core.errors import ConfigError

    def train_loss(model, params, data):
        return params["u"].sum(1) * 0

    with pytest.raises(ConfigError, match=r"metric 'train_loss' registered twice: .*test_reliability2.*"
                                          r"belongs to sgdlab \(built-in metric\)"):
        sgdlab.register_metric("train_loss")(train_loss)
    with pytest.raises(ConfigError, match=r"dataset 'sparse_regression' registered twice: .*test_reliability2.*"
                                          r"belongs to sgdlab \(built-in, sgdlab.data.synthetic\)"):
        sgdlab.register_data("sparse_regression")(lambda n=1: {})


def test_a_user_metric_named_like_a_model_metric_is_refused_before_training(tmp_path):
    from sgdlab.core.errors import ConfigError
    from sgdlab.metrics.probes import PROBES
    from sgdlab.metrics.registry import METRIC_SPECS

    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), TINY + ["metrics.names=['l1']"])
    described = METRIC_SPECS.get("l1")
    METRIC_SPECS.remove("l1")  # a name only the model knows (as for a model that describes no spec)
    try:
        sgdlab.register_metric("l1")(lambda model, params, data: params["u"].sum(1))
        with pytest.raises(ConfigError, match="model 'diagonal_net' computes a built-in metric of that name"):
            sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True)
        assert not (tmp_path / "r").exists()
    finally:
        METRIC_SPECS.remove("l1")
        PROBES._items.pop("l1", None)
        METRIC_SPECS.add_spec(described)


def test_two_plugins_choosing_one_name_are_refused_naming_both_files(tmp_path):
    for stem in ("r2_plug_a", "r2_plug_b"):
        (tmp_path / f"{stem}.py").write_text(textwrap.dedent('''
            import sgdlab

            @sgdlab.register_metric("r2_shared")
            def m(model, params, data):
                return params["u"].sum(1)
        '''))
    from sgdlab.core.plugins import import_modules

    import_modules([str(tmp_path / "r2_plug_a.py")])
    with pytest.raises(Exception, match=r"r2_shared.*r2_plug_b\.py.*belongs to r2_plug_a \(.*r2_plug_a\.py\)"):
        import_modules([str(tmp_path / "r2_plug_b.py")])


# ----------------------------------------------------------------------------- 2. one validation for every user file

RUN_ARRAYS = ["--steps", "50", "--seeds", "2", "--set", "eval.points=3", "--no-progress",
              "--set", "arms=[{name='a', schedule={kind='constant', lr=0.01}}]"]


def arrays_run(tmp_path, path, *more):
    return cli("run", "diag-net", "--set", f"data={{kind='arrays', path='{path}'}}", *RUN_ARRAYS, *more,
               "--out", tmp_path / "out")


@pytest.fixture
def xy():
    return xy_arrays()


@pytest.mark.parametrize("case, needles", [
    ("y2", ["'y' has shape (20, 2)", "diagonal_net needs real scalar targets"]),
    ("support_len", ["extra 'support' has shape (2,); expected (5,)"]),
    ("support_float", ["extra 'support' must be booleans"]),
    ("huge", ["'x' has 100 values of magnitude > 1e+100", "rescale"]),
    ("complex", ["'x' has complex dtype"]),
])
def test_array_files_are_checked_against_the_model_in_one_line(tmp_path, xy, case, needles):
    x, y = xy
    arrays = {"y2": {"x": x, "y": np.stack([y, y], 1)}, "support_len": {"x": x, "y": y, "support": np.array([1, 0])},
              "support_float": {"x": x, "y": y, "support": np.full(5, 0.5)}, "huge": {"x": x * 1e200, "y": y},
              "complex": {"x": x + 1j, "y": y}}[case]
    np.savez(tmp_path / "d.npz", **arrays)
    one_error(arrays_run(tmp_path, tmp_path / "d.npz"), "d.npz", *needles)
    one_error(arrays_run(tmp_path, tmp_path / "d.npz", "--dry-run"), "d.npz", *needles)  # the same at --dry-run
    assert not (tmp_path / "out").exists()


def test_array_file_without_support_runs_the_diagonal_net_and_0_1_support_is_bool(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "d.npz", x=x, y=y)
    r = arrays_run(tmp_path, tmp_path / "d.npz")
    assert r.exit_code == 0, r.output
    np.savez(tmp_path / "s.npz", x=x, y=y, support=np.array([1, 0, 0, 0, 0]))
    r = cli("run", "diag-net", "--set", f"data={{kind='arrays', path='{tmp_path / 's.npz'}'}}", *RUN_ARRAYS,
            "--set", "metrics.names=['train_loss', 'support_mass']", "--set", "figure=['train_loss']",
            "--out", tmp_path / "s")
    assert r.exit_code == 0, r.output
    assert "support_mass" in sgdlab.load_run(tmp_path / "s").metrics


def test_a_data_function_returning_2_column_targets_for_the_diagonal_net_is_one_line(tmp_path):
    (tmp_path / "r2_fn.py").write_text(textwrap.dedent('''
        import numpy as np

        def make(n=20):
            x = np.ones((n, 5))
            return {"x": x, "y": np.zeros((n, 2))}
    '''))
    r = cli("run", "diag-net", "--set", f"data={{kind='function', function='{tmp_path / 'r2_fn.py'}:make'}}",
            *RUN_ARRAYS, "--out", tmp_path / "out")
    one_error(r, "data.function", "r2_fn.py:make", "'y' has shape (20, 2)")


@pytest.mark.parametrize("case, needles", [
    ("nan", ["'u' has 5 NaN/inf values"]),
    ("inf", ["'u' has 1 NaN/inf values"]),
    ("complex", ["'u' has complex dtype"]),
    ("huge", ["magnitude > 1e+100"]),
    ("strings", ["non-numeric dtype"]),
])
def test_exact_init_files_follow_the_same_rules_at_run_and_dry_run(tmp_path, xy, case, needles):
    x, y = xy
    np.savez(tmp_path / "d.npz", x=x, y=y)
    u = {"nan": np.full(5, np.nan), "inf": np.r_[np.ones(4), np.inf], "complex": np.ones(5) + 1j,
         "huge": np.full(5, 1e200), "strings": np.array(["a"] * 5)}[case]
    np.savez(tmp_path / "init.npz", u=u, v=np.zeros(5))
    init = ["--set", f"arms.0.init={{file='{tmp_path / 'init.npz'}'}}"]
    for extra in ([], ["--dry-run"]):
        one_error(arrays_run(tmp_path, tmp_path / "d.npz", *init, *extra), "arms.0.init", "init.npz", *needles)
    assert not (tmp_path / "out").exists()


def test_init_from_a_run_with_fewer_seeds_is_refused_not_reused(tmp_path):
    src = sgdlab.override(sgdlab.load_experiment("diag-net"), TINY + ["seeds=1"])
    sgdlab.run(src, tmp_path / "src", progress=False, quiet=True)
    arm = src.arms[0].label
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"),
                          TINY + [f"arms.0.init={{run='{tmp_path / 'src'}', arm='{arm}'}}"])
    from sgdlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"has no run of arm .* with seed 1; its seeds: \[0\]"):
        sgdlab.run(cfg, None, progress=False, quiet=True)


@pytest.mark.parametrize("grid, needles", [
    ('"data.n" = []', ["grid key 'data.n' must be a non-empty list"]),
    ('"data.n" = 20', ["grid key 'data.n' must be a non-empty list", "got 20"]),
])
def test_sweep_file_grid_axes_are_checked_at_dry_run_and_run(tmp_path, grid, needles):
    f = tmp_path / "sw.toml"
    f.write_text(f'experiment = "diag-net"\n[grid]\n{grid}\n')
    one_error(cli("sweep", "--file", f, "--dry-run"), "sw.toml", *needles)
    one_error(cli("sweep", "--file", f, "--out", tmp_path / "sw"), "sw.toml", *needles)
    assert not (tmp_path / "sw").exists()


def test_an_error_from_outside_sgdlabs_checks_is_not_a_bare_library_text():
    from sgdlab.frontends.cli_common import error_line

    line = error_line(ValueError("array must not contain infs or NaNs"))
    assert line.startswith("ValueError: array must not contain infs or NaNs") and "--debug" in line


# ----------------------------------------------------------------------------- 5. nothing half-written

def _metric_module(tmp_path, stem, body):
    (tmp_path / f"{stem}.py").write_text(textwrap.dedent(f'''
        import sgdlab

        CALLS = [0]

        @sgdlab.register_metric("{stem}")
        def metric(model, params, data):
            CALLS[0] += 1
        ''') + textwrap.indent(textwrap.dedent(body), "    "))
    return tmp_path / f"{stem}.py"


def _metric_run(tmp_path, module, stem, *more):
    return cli("run", "diag-net", "--import", module, *TINY_CLI, "--set", f"metrics.names=['train_loss', '{stem}']",
               "--set", "figure=['train_loss']", "--no-progress", "--out", tmp_path / "run", *more)


def test_a_user_metric_failing_at_the_first_evaluation_leaves_nothing_and_names_its_line(tmp_path):
    mod = _metric_module(tmp_path, "r2_keyerr", 'return params["no_such_parameter"].sum(1)')
    line = one_error(_metric_run(tmp_path, mod, "r2_keyerr"), "metric 'r2_keyerr'", "KeyError",
                     f"{mod}:9")
    assert "Traceback" not in line and not (tmp_path / "run").exists()
    r = cli("--debug", "run", "diag-net", "--import", mod, *TINY_CLI, "--set", "metrics.names=['r2_keyerr']",
            "--set", "figure=['train_loss']", "--no-progress", "--out", tmp_path / "run")
    assert isinstance(r.exception, sgdlab.core.errors.ConfigError)  # --debug: the exception, its cause chained
    assert isinstance(r.exception.__cause__, KeyError) and not (tmp_path / "run").exists()
    # over an existing run with --overwrite: the old run is put back untouched
    good = sgdlab.run(sgdlab.override(sgdlab.load_experiment("diag-net"), TINY), tmp_path / "run",
                      progress=False, quiet=True)
    before = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    one_error(_metric_run(tmp_path, mod, "r2_keyerr", "--overwrite"), "KeyError")
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == before and good.path.exists()
    assert not list(tmp_path.glob(".run.overwritten-*"))


def test_a_user_metric_failing_later_leaves_a_run_marked_failed(tmp_path):
    mod = _metric_module(tmp_path, "r2_later", '''
        if CALLS[0] > 2:
            raise RuntimeError("boom")
        return params["u"].sum(1)''')
    one_error(_metric_run(tmp_path, mod, "r2_later"), "metric 'r2_later'", "RuntimeError: boom", f"{mod}:")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert "RuntimeError: boom" in meta["failed"]


def test_a_plugin_calling_sys_exit_at_import_is_reported(tmp_path):
    (tmp_path / "r2_exits.py").write_text("import sys\nsys.exit(3)\n")
    r = cli("run", "diag-net", "--import", tmp_path / "r2_exits.py", *TINY_CLI, "--dry-run")
    one_error(r, "r2_exits.py", "called sys.exit(3)", f"{tmp_path / 'r2_exits.py'}:2")


def test_an_import_error_names_the_users_file_and_line(tmp_path):
    (tmp_path / "r2_broken.py").write_text("x = 1\ny = {}['missing']\n")
    one_error(cli("show", "diag-net", "--import", tmp_path / "r2_broken.py"), "KeyError",
              f"{tmp_path / 'r2_broken.py'}:2")


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    import errno
    import os

    import sgdlab.store.files

    real = os.fsync

    def full(fd):
        if "checkpoint" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(sgdlab.store.files.os, "fsync", full)
    r = cli("run", "diag-net", *TINY_CLI, "--no-progress", "--out", tmp_path / "run")
    one_error(r, "No space left on device", str(tmp_path / "run" / "checkpoint.pt"))
    assert not list((tmp_path / "run").glob(".*.tmp*"))  # the temporary file went with it


@pytest.mark.parametrize("lo, hi", [(0.3, 0.1), (-0.1, 0.3)])
def test_window_with_bad_bounds_writes_nothing(tmp_path, lo, hi):
    one_error(cli("window", "diag-net", *TINY_CLI, "--lo", lo, "--hi", hi, "--out", tmp_path / "w"), "0 < lo < hi")
    assert not (tmp_path / "w").exists()


# ----------------------------------------------------------------------------- 7. bounded work

def test_a_huge_grid_axis_is_refused_before_any_value_is_computed(monkeypatch):
    import sgdlab.workflows.grid

    computed = []
    for fn in ("linspace", "geomspace"):
        real = getattr(np, fn)
        monkeypatch.setattr(sgdlab.workflows.grid.np, fn, lambda *a, _real=real, **k: computed.append(a) or _real(*a, **k))
    one_error(cli("sweep", "diag-net", "--grid", "arms.0.schedule.lr=linspace(0.1,0.3,3000000)", "--dry-run"),
              "3000000 values exceed the limit of 10000 per axis")
    one_error(cli("sweep", "diag-net", "--grid", "arms.0.schedule.lr=logspace(0.1,0.3,100000000000)", "--dry-run"),
              "exceed the limit")
    assert computed == []  # refused by the size check, nothing materialized


def test_a_grid_over_the_point_limit_is_refused_before_planning(monkeypatch):
    import sgdlab.workflows.grid

    planned = []
    monkeypatch.setattr(sgdlab.workflows.grid, "override", lambda cfg, sets: planned.append(sets) or cfg)
    r = cli("sweep", "diag-net", "--grid", "arms.0.schedule.lr=linspace(0.1,0.3,1000)",
            "--grid", "arms.1.schedule.lr=linspace(0.1,0.3,1000)", "--dry-run")
    one_error(r, "the grid has 1000000 points (1000 x 1000); the limit is 10000")
    assert planned == []  # no point was planned


@pytest.mark.parametrize("key, says", [
    ("steps=1e300", "steps must be >= 1 and at most 1e+12"),
    ("seeds=1e300", "at most 1e+06 runs"),  # refused before a single run is planned
    ("first_seed=1e300", "first_seed must be in [0, 2**63 - seeds]"),
    ("first_seed=9223372036854775807", "the last seed, first_seed + seeds - 1, below 2**63"),
    ("arms.0.seeds=[1e300]", "arm seeds must be in [0, 2**63 - 1]"),
    ("data.seed=1e12", "data: seed must be below 2**32 with generator = 'authors'"),
])
def test_steps_runs_and_seeds_beyond_what_a_run_can_hold_are_one_error(key, says):
    """Numbers past what the run tables hold (int64) are one error line naming the key, at once."""
    one_error(cli("run", "diag-net", "--set", key, "--dry-run"), says)


@pytest.mark.parametrize("key", ["eval.points=1000000000", "eval.head=1000000000", "snapshots=1000000000"])
def test_eval_grids_and_snapshots_are_bounded_at_config_time(monkeypatch, key):
    import sgdlab.spec.experiment

    monkeypatch.setattr(sgdlab.spec.experiment.np, "linspace", lambda *a, **k: pytest.fail("eval steps computed"))
    one_error(cli("run", "diag-net", "--set", key, "--dry-run"), key.split("=")[0], "100000")
