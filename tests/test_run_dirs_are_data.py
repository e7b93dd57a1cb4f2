"""A run directory is data: ``--resume`` proves it continues the same experiment (content hashes
of its input files and of runs.json), and a run directory from someone else is read (plot,
summary, export, load_run) without running its recorded modules unless trusted."""

import json
import textwrap

import numpy as np
import pytest
from reliability_helpers import TINY, cli, one_error, xy_arrays

import sgdlab
from sgdlab.core.exit_codes import BAD_INPUT

pytestmark = pytest.mark.study("diag_net")


@pytest.fixture
def xy():
    return xy_arrays()


# ----------------------------------------------------------------------------- 4. resume proves the same experiment

def _killed_arrays_run(tmp_path, xy, *more):
    x, y = xy
    np.savez(tmp_path / "d.npz", x=x, y=y)
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), [
        f"data={{kind='arrays', path='{tmp_path / 'd.npz'}'}}", "steps=400", "seeds=2", "eval.grid='linear'",
        "eval.points=8", "checkpoint_seconds=1e-9", "arms=[{name='a', schedule={kind='constant', lr=0.01}}]",
        *more])
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(cfg, tmp_path / "run", progress=False, quiet=True, _stop_after=100)
    return cfg


def test_resume_refuses_a_changed_data_file_unless_accepted(tmp_path, xy):
    cfg = _killed_arrays_run(tmp_path, xy)
    x, y = xy
    np.savez(tmp_path / "d.npz", x=x, y=-y)  # another dataset behind the same path
    one_error(cli("run", "--resume", tmp_path / "run", "--no-progress"), "data.path", "d.npz",
              "changed since the run started", "--accept-changed-inputs")
    r = cli("run", "--resume", tmp_path / "run", "--no-progress", "--accept-changed-inputs")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert any("data.path" in c for c in meta["inputs_accepted"])
    assert meta["inputs"]["data.path"]["sha256"] == sgdlab.store.inputs.digest(tmp_path / "d.npz")
    assert cfg.data.path.endswith("d.npz")


def test_resume_refuses_a_hand_edited_runs_json_and_an_edited_init_file(tmp_path, xy):
    np.savez(tmp_path / "init.npz", u=np.full(5, 0.1), v=np.zeros(5))
    _killed_arrays_run(tmp_path, xy, f"arms.0.init={{file='{tmp_path / 'init.npz'}'}}")
    runs = tmp_path / "run" / "runs.json"
    runs.write_text(runs.read_text().replace('"seed": 1', '"seed": 7'))
    np.savez(tmp_path / "init.npz", u=np.full(5, 0.2), v=np.zeros(5))
    line = one_error(cli("run", "--resume", tmp_path / "run", "--no-progress"), "runs.json was edited",
                     "arms.0.init.file")
    assert "init.npz" in line
    assert cli("run", "--resume", tmp_path / "run", "--no-progress", "--accept-changed-inputs").exit_code == 0
    assert '"seed": 1' in runs.read_text()  # rewritten from the config


def test_a_run_directory_without_recorded_hashes_still_resumes(tmp_path, xy):
    _killed_arrays_run(tmp_path, xy)
    meta_path = tmp_path / "run" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["inputs"], meta["runs_sha256"]  # as written by an older sgdlab
    meta_path.write_text(json.dumps(meta))
    r = cli("run", "--resume", tmp_path / "run", "--no-progress")
    assert r.exit_code == 0, r.output


def test_resume_refuses_an_edited_module(tmp_path):
    (tmp_path / "r2_mod.py").write_text(textwrap.dedent('''
        import sgdlab

        @sgdlab.register_metric("r2_mod_sq")
        def sq(model, params, data):
            return (params["u"] ** 2).sum(1)
    '''))
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"),
                          [f"imports=['{tmp_path / 'r2_mod.py'}']", *TINY, "checkpoint_seconds=1e-9",
                           "metrics.names=['train_loss', 'r2_mod_sq']", "figure=['train_loss']"])
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(cfg, tmp_path / "run", progress=False, quiet=True, _stop_after=100)
    (tmp_path / "r2_mod.py").write_text((tmp_path / "r2_mod.py").read_text() + "\n# edited\n")
    one_error(cli("run", "--resume", tmp_path / "run", "--no-progress"), "imports[0]", "r2_mod.py", "changed")


# ----------------------------------------------------------------------------- 6. trust for foreign run directories

FOREIGN_MODULE = '''
import numpy as np
import sgdlab
from pathlib import Path

with open(Path(__file__).with_name("imported.log"), "a") as f:  # every import leaves a line
    f.write("x\\n")


@sgdlab.register_data("r2f_data")
def data(n: int = 20, d: int = 5):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    return {"x": x, "y": x[:, 0]}


@sgdlab.register_figure("r2f_fig")
def fig(rd):
    out = rd.figures / "r2f_fig.txt"
    out.write_text("drawn")
    return [out]
'''

READER = '''
import json, sys
from click.testing import CliRunner
import sgdlab
from sgdlab.frontends.cli import main

run = sys.argv[1]
out = {}
for name, args in [("plot", ["plot", run]), ("summary", ["summary", run]), ("compare", ["compare", run]),
                   ("export", ["export", run, "--to", "tensorboard"]), ("resume", ["run", "--resume", run]),
                   ("plot_trusted", ["plot", run, "--trust-imports"])]:
    r = CliRunner().invoke(main, args)
    out[name] = [r.exit_code, r.output]
try:
    sgdlab.load_run(sys.argv[2])
    out["load_run"] = "ok"
except sgdlab.core.errors.ConfigError as e:
    out["load_run"] = str(e)
print(json.dumps(out))
'''


def test_a_foreign_run_directory_is_read_without_running_its_code(tmp_path):
    import os
    import subprocess
    import sys

    mod = tmp_path / "r2f_mod.py"
    mod.write_text(FOREIGN_MODULE)
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), [
        f"imports=['{mod}']", "data={kind='r2f_data'}", "steps=40", "seeds=1", "eval.grid='linear'",
        "eval.points=3", "arms=[{name='a', schedule={kind='constant', lr=0.01}}]", "extra_figures=['r2f_fig']"])
    sgdlab.run(cfg, tmp_path / "run", progress=False, quiet=True)
    # the same run with only built-in kinds but the module still imported (for its figure)
    sgdlab.run(sgdlab.override(cfg, ["data={kind='sparse_regression', n=20, d=5, r=2, n_test=20}"]),
               tmp_path / "run2", progress=False, quiet=True)
    log = tmp_path / "imported.log"
    assert log.read_text().count("x") == 1
    # someone else, elsewhere: their own (empty) record of trusted modules
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "SGDLAB_STATE_DIR": str(tmp_path / "other-user"),
           "PYTHONPATH": os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)}
    p = subprocess.run([sys.executable, "-c", READER, str(tmp_path / "run"), str(tmp_path / "run2")], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert log.read_text().count("x") == 2, out  # only plot --trust-imports imported it
    for name in ("summary", "compare", "export"):
        assert out[name][0] == 0, (name, out[name])
    for name in ("plot", "resume"):
        assert out[name][0] == BAD_INPUT and "--trust-imports" in out[name][1] and "r2f_mod.py" in out[name][1], out
    assert "needs code it names" in out["plot"][1] and "resuming it would run code" in out["resume"][1]
    assert out["plot_trusted"][0] == 0, out["plot_trusted"]
    # run2 builds without the module: it loads; its figure cannot be drawn and says so
    assert out["load_run"] == "ok"
    p = subprocess.run([sys.executable, "-m", "sgdlab", "plot", str(tmp_path / "run2")], env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0 and "r2f_fig: not drawn" in p.stderr, p.stderr
    assert log.read_text().count("x") == 2


def test_your_own_run_directory_is_read_with_its_modules(tmp_path):
    mod = tmp_path / "r2o_mod.py"
    mod.write_text(FOREIGN_MODULE.replace("r2f_", "r2o_"))
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), [
        f"imports=['{mod}']", "data={kind='r2o_data'}", "steps=40", "seeds=1", "eval.grid='linear'",
        "eval.points=3", "arms=[{name='a', schedule={kind='constant', lr=0.01}}]"])
    sgdlab.run(cfg, tmp_path / "run", progress=False, quiet=True)
    assert sgdlab.load_run(tmp_path / "run").config.data.kind == "r2o_data"
    assert cli("plot", tmp_path / "run").exit_code == 0


def test_a_foreign_sweep_is_not_resumed_without_trust(tmp_path, monkeypatch):
    import sys

    from sgdlab.workflows.sweep import Sweep

    mod = tmp_path / "r2s_mod.py"
    mod.write_text("import sgdlab\n\n\n@sgdlab.register_metric('r2s_m')\ndef m(model, params, data):\n"
                   "    return params['u'].sum(1)\n")
    cfg = sgdlab.override(sgdlab.load_experiment("diag-net"), [f"imports=['{mod}']", *TINY])
    Sweep.create(tmp_path / "sw", cfg, [("data.n", [20])])
    # as on another machine: another user's record, the module not imported
    monkeypatch.setenv("SGDLAB_STATE_DIR", str(tmp_path / "other-user"))
    monkeypatch.delitem(sys.modules, "r2s_mod")
    one_error(cli("sweep", "--resume", tmp_path / "sw"), "running its jobs would run code", "r2s_mod.py",
              "--trust-imports")
    assert not (tmp_path / "sw" / "jobs").exists()
    r = cli("sweep", "--resume", tmp_path / "sw", "--trust-imports")
    assert r.exit_code == 0, r.output


def test_a_run_killed_after_writing_only_its_config_resumes(tmp_path):
    """Killed inside create() after config.toml, before meta.json: nothing recorded, nothing to check."""
    sgdlab.run(sgdlab.override(sgdlab.load_experiment("diag-net"), TINY), tmp_path / "full", progress=False,
               quiet=True)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "config.toml").write_bytes((tmp_path / "full" / "config.toml").read_bytes())
    r = cli("run", "--resume", tmp_path / "cut", "--no-progress")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cut" / "metrics.jsonl").read_bytes() == (tmp_path / "full" / "metrics.jsonl").read_bytes()
