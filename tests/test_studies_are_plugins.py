"""The bundled studies are plugins: the framework neither imports nor needs them.

import-linter's contracts (pyproject.toml) keep every import pointing down the layers, with the
studies on top and independent of each other; these tests check the other half: with a study's
folder removed the framework still works, and a study's kinds arrive through the plugin door.
"""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sgdlab

ROOT = Path(__file__).resolve().parents[1]
STUDIES = ("diag_net", "relu_nets", "related", "eos", "deep_nets", "mnist1d")


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    p = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout[-3000:]


def test_each_study_registers_through_the_public_door():
    from importlib import metadata

    from sgdlab.core.plugins import ENTRY_POINT_GROUP

    eps = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in STUDIES:
        assert eps.get(name) == f"sgdlab.studies.{name}", f"{name} is not an sgdlab.plugins entry point"
    names = sgdlab.list_experiments()
    assert {"diag-net", "relu-1d", "linear2-large-step", "eos-chebyshev", "deep-demo-digits"} <= set(names)


def _copy_without(tmp: Path, removed: tuple[str, ...]) -> Path:
    dst = tmp / "src"
    shutil.copytree(ROOT / "sgdlab", dst / "sgdlab", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    for name in removed:
        shutil.rmtree(dst / "sgdlab" / "studies" / name)
    return dst


SMOKE = textwrap.dedent('''
    import warnings, sys
    warnings.simplefilter("ignore")
    import sgdlab
    assert sgdlab.__file__.startswith(sys.argv[1]), sgdlab.__file__
    names = sgdlab.list_experiments()
    assert "diag-net" not in names and "relu-1d" in names, names
    # a user's own experiment (their data and model, registered in Python) trains end to end
    import numpy as np, torch
    @sgdlab.register_data("smoke_blobs")
    def blobs(n: int = 64, d: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 2 * n)
        x = rng.standard_normal((2 * n, d)) + 1.5 * y[:, None]
        return {"x": x[:n], "y": y[:n], "x_test": x[n:], "y_test": y[n:]}
    @sgdlab.register_model("smoke_mlp")
    def mlp(hidden: int = 16, *, num_classes: int, input_shape):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[0], hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, num_classes))
    from sgdlab.core.config import from_dict
    cfg = from_dict(sgdlab.ExperimentConfig, {
        "name": "smoke", "data": {"kind": "smoke_blobs"}, "model": {"kind": "smoke_mlp"},
        "arms": [{"name": "sgd", "optimizer": {"kind": "sgd", "batch_size": 16},
                  "schedule": {"kind": "constant", "lr": 0.1}}],
        "steps": 40, "seeds": 2, "eval": {"grid": "linear", "points": 3}, "dtype": "float32"})
    res = sgdlab.run(cfg, out=sys.argv[2], progress=False, quiet=True)
    assert res.metrics["train_loss"].shape == (3, 2), res.metrics["train_loss"].shape
    print("ok")
''')


def test_the_framework_works_with_a_study_folder_removed(tmp_path):
    """Without the diag-net study's folder (its entry point left behind, as after deleting the folder
    in a checkout): no import fails, the other studies' experiments are listed, a user's own experiment
    trains."""
    src = _copy_without(tmp_path, ("diag_net",))
    env = {**os.environ, "PYTHONPATH": str(src)}
    p = subprocess.run([sys.executable, "-c", SMOKE, str(src), str(tmp_path / "run")], env=env, capture_output=True,
                       text=True, check=False, cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]


@pytest.mark.slow
def test_the_framework_tests_pass_with_every_study_removed(tmp_path):
    """The framework's own tests (those marked with no study) pass in a copy without sgdlab/studies/*."""
    src = _copy_without(tmp_path, STUDIES)
    for folder in ("tests", "benchmarks", "examples", "docs"):  # what the tests read besides the package
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", src / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests",
                        "--deselect", "tests/test_studies_are_plugins.py"],
                       env=env, capture_output=True, text=True, check=False, cwd=src)
    assert p.returncode == 0, p.stdout[-4000:]
