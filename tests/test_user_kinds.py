"""A user's own kinds (sgdlab.register_*, config `imports`, --import, sgdlab.plugins entry points)
work like bundled ones: CLI, resume, sweep workers, plot, summary; failures are one clear line."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import sgdlab
from sgdlab.core.errors import ConfigError
from sgdlab.frontends.cli import main
from sgdlab.store.runs import RunDir

pytestmark = pytest.mark.study("diag_net")

MODULE = '''
import numpy as np
import torch
import sgdlab



@sgdlab.register_data("{prefix}_blobs")
def blobs(n: int = 60, d: int = 4, gap: float = 1.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 2 * n)
    x = rng.standard_normal((2 * n, d)) + gap * y[:, None]
    return {{"x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}}


@sgdlab.register_model("{prefix}_mlp")
def mlp(width: int = 8, *, num_classes: int, input_shape):
    return torch.nn.Sequential(torch.nn.Linear(input_shape[0], width), torch.nn.ReLU(),
                               torch.nn.Linear(width, num_classes))


@sgdlab.register_metric("{prefix}_sq")
def sq(model, params, data):
    return sum((v.flatten(1) ** 2).sum(1) for k, v in params.items() if not k.startswith("buffer:"))


@sgdlab.register_schedule("{prefix}_halving")
def halving(t, total_steps, lr: float = 0.1, every: float = 0.5):
    return lr * 0.5 ** np.floor(t / (every * total_steps))


@sgdlab.register_figure("{prefix}_fig")
def fig(rd):
    out = rd.figures / "{prefix}_fig.txt"
    out.write_text("drawn")
    return [out]
'''

TOML = '''
name = "{prefix}"
imports = ["{spec}"]
steps = 60
seeds = 2
figure = ["train_loss", "{prefix}_sq"]
extra_figures = ["{prefix}_fig"]
data = {{kind = "{prefix}_blobs", n = 40}}
model = {{kind = "{prefix}_mlp", width = 6, eval_train = 40, sparsity_examples = 40}}
[metrics]
names = ["train_loss", "test_error", "block1_sparsity", "{prefix}_sq"]
[eval]
grid = "linear"
points = 4
[[arms]]
name = "SGD eta={{schedule.lr}}"
optimizer = {{kind = "sgd", batch_size = 8}}
schedule = {{kind = "{prefix}_halving", lr = 0.2}}
'''


def make_project(tmp_path, prefix, spec_of=None, module=None):
    """A folder with a user module (one of every kind) and a config importing it; module names
    differ per test: one process imports each file once, by its name."""
    module = module or f"{prefix}_tasks"
    spec_of = spec_of or (lambda p: f"./{module}.py")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / f"{module}.py").write_text(MODULE.format(prefix=prefix))
    (proj / "exp.toml").write_text(TOML.format(prefix=prefix, spec=spec_of(proj)))
    return proj


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_user_kinds_run_resume_plot_summary_from_the_cli(tmp_path, monkeypatch):
    proj = make_project(tmp_path, "uk1")
    monkeypatch.chdir(tmp_path)  # the imports are found relative to the config file, not the cwd
    r = cli("run", proj / "exp.toml", "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 0, r.output
    rd = RunDir(tmp_path / "r")
    assert rd.config().imports == (str(proj / "uk1_tasks.py"),)  # recorded by absolute path
    _, m = rd.metrics()
    assert m["uk1_sq"].shape == (4, 2) and np.all(m["uk1_sq"] > 0) and "block1_sparsity" in m
    assert (tmp_path / "r" / "figures" / "uk1_fig.txt").exists() and rd.complete()
    for args in (["run", "--resume", tmp_path / "r"], ["plot", tmp_path / "r"], ["summary", tmp_path / "r"],
                 ["show", proj / "exp.toml", "--keys"]):
        r = cli(*args)
        assert r.exit_code == 0, (args, r.output)
    assert "data.gap" in cli("show", proj / "exp.toml", "--keys").output  # the function's keys are config keys


def test_a_user_kind_in_a_fresh_process_resumes_and_sweeps_on_a_pool(tmp_path):
    proj = make_project(tmp_path, "uk2", module="uk2_tasks", spec_of=lambda p: "uk2_tasks")  # by module name
    cut = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sgdlab
        cfg = sgdlab.load_experiment({str(proj / 'exp.toml')!r})
        try:
            sgdlab.run(cfg, {str(tmp_path / 'r')!r}, progress=False, quiet=True, _stop_after=20)
        except KeyboardInterrupt:
            pass
        """)], capture_output=True, text=True, check=False)
    assert cut.returncode == 0, cut.stderr
    # a new process that never imported the module resumes the run: the config re-imports it
    res = subprocess.run([sys.executable, "-m", "sgdlab", "run", "--resume", str(tmp_path / "r"), "--no-progress"],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert RunDir(tmp_path / "r").complete()
    sw = subprocess.run([sys.executable, "-m", "sgdlab", "sweep", str(proj / "exp.toml"), "--grid",
                         "model.width=4,6", "--executor", "pool", "--workers", "2", "--out", str(tmp_path / "s")],
                        capture_output=True, text=True, check=False)
    assert sw.returncode == 0, sw.stderr
    assert '"status": "done"' in (tmp_path / "s" / "index.json").read_text()
    assert '"status": "failed"' not in (tmp_path / "s" / "index.json").read_text()


def test_import_option_and_failing_imports_are_one_clear_error(tmp_path, monkeypatch):
    proj = make_project(tmp_path, "uk3")
    (proj / "exp.toml").write_text((proj / "exp.toml").read_text().replace('imports = ["./uk3_tasks.py"]', ""))
    r = cli("run", proj / "exp.toml", "--dry-run")
    assert r.exit_code == 2 and "unknown dataset 'uk3_blobs'" in r.output  # not imported: a clear error
    r = cli("run", proj / "exp.toml", "--import", proj / "uk3_tasks.py", "--out", tmp_path / "r", "--no-progress")
    assert r.exit_code == 0, r.output
    assert RunDir(tmp_path / "r").config().imports == (str(proj / "uk3_tasks.py"),)
    (proj / "broken.py").write_text("import numpy\nraise RuntimeError('boom')\n")
    cases = [
        (["--import", "no_such_module_xyz"], "--import: no module named 'no_such_module_xyz'"),
        (["--import", proj / "missing.py"], "does not exist"),
        (["--import", proj / "broken.py"], f"RuntimeError: boom at {proj / 'broken.py'}:2"),
        (["--set", "imports=['./nope.py']"], "imports[0]: module file"),
    ]
    for extra, needle in cases:
        r = cli("run", "diag-net", *extra, "--dry-run")
        assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output, (extra, r.output)


def test_registration_errors(tmp_path):
    from sgdlab.frontends.register import register_data, register_model

    with pytest.raises(ConfigError, match="has no default"):
        @register_data("uk4_bad")
        def bad(n):
            return {}
    with pytest.raises(ConfigError, match="must subclass"):
        register_model("uk4_cls")(dict)
    with pytest.raises(ValueError, match="registered twice"):
        register_data("sparse_regression")(lambda n=1: {})  # a bundled name


def test_an_installed_plugin_entry_point_is_loaded(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "uk5plugin").mkdir(parents=True)
    (site / "uk5plugin" / "__init__.py").write_text(MODULE.format(prefix="uk5"))
    dist = site / "uk5plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: uk5plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[sgdlab.plugins]\nuk5 = uk5plugin\n")
    monkeypatch.syspath_prepend(str(site))
    from sgdlab.core import plugins

    monkeypatch.setattr(plugins, "_loaded_entry_points", False)
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), ["data={kind='uk5_blobs', n=30}"])  # no imports
    assert cfg.data.kind == "uk5_blobs"
    (site / "uk5plugin" / "__init__.py").write_text("import uk6_gpu_library_missing\n")
    (dist / "entry_points.txt").write_text("[sgdlab.plugins]\nuk6 = uk5plugin\n")
    sys.modules.pop("uk5plugin", None)
    monkeypatch.setattr(plugins, "_loaded_entry_points", False)
    with pytest.raises(ConfigError, match="plugin 'uk6' .* failed to load: .*uk6_gpu_library_missing"):
        plugins.load_entry_points()
    # a plugin whose module is gone (uninstalled, or a study's folder removed) is skipped with a warning
    (dist / "entry_points.txt").write_text("[sgdlab.plugins]\nuk7 = uk7plugin_missing\n")
    monkeypatch.setattr(plugins, "_loaded_entry_points", False)
    with pytest.warns(UserWarning, match="plugin 'uk7': module 'uk7plugin_missing' is not installed"):
        plugins.load_entry_points()


def test_a_registered_function_returning_a_dataset_keeps_its_augment():
    """A Dataset returned by a registered data function is validated like arrays and keeps its
    batch transform (as data kind "function" does)."""
    import torch

    from sgdlab.core.config import from_dict
    from sgdlab.data.base import DataConfig, Dataset
    from sgdlab.frontends.register import register_data

    def flip(x, gen):
        return -x

    @register_data("uk5_with_augment")
    def with_augment(n: int = 6):
        x = torch.arange(2.0 * n, dtype=torch.float64).reshape(n, 2)
        return Dataset(x, x.sum(1), x, x.sum(1), {}, flip)

    ds = from_dict(DataConfig, {"kind": "uk5_with_augment", "n": 4}).build()
    assert ds.augment is flip and ds.x_train.shape == (4, 2)
