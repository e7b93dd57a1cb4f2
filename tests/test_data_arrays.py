"""Data without code: the `arrays` kind (.npz / .pt files) and the `function` kind
(module:function), their validation errors, and a run of the engine on them."""

import sys

import numpy as np
import pytest
import torch

from sgdlab.core.config import dump_toml, from_dict, load_toml
from sgdlab.core.errors import ConfigError, DataError
from sgdlab.data.arrays import ArrayFile, dataset_from_arrays
from sgdlab.data.base import DataConfig, Dataset
from sgdlab.data.function import FunctionData
from sgdlab.engine.train import train
from sgdlab.models.mlp import MLPConfig
from sgdlab.optim.config import GD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _regression(n=12, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return x, x @ np.arange(1.0, d + 1)


# ----------------------------------------------------------------------------- arrays kind
def test_npz_and_pt_give_the_same_float64_dataset(workdir):
    x, y = _regression()
    np.savez("task.npz", x=x, y=y, x_test=x[:4], y_test=y[:4], support=np.array([True, False, True]))
    torch.save({"x": torch.as_tensor(x), "y": torch.as_tensor(y), "x_test": torch.as_tensor(x[:4]),
                "y_test": torch.as_tensor(y[:4]), "support": torch.tensor([True, False, True])}, "task.pt")
    a, b = ArrayFile("task.npz").build(), ArrayFile("task.pt").build()
    for ds in (a, b):
        assert ds.x_train.dtype == ds.y_train.dtype == torch.float64
        assert ds.x_train.shape == (12, 3) and ds.x_test.shape == (4, 3)
        assert torch.equal(ds.x_train, torch.as_tensor(x)) and torch.equal(ds.y_test, torch.as_tensor(y[:4]))
        assert ds.extras["support"].dtype == torch.bool and ds.extras["support"].tolist() == [True, False, True]
    assert torch.equal(a.y_train, b.y_train)


def test_path_is_recorded_as_given_and_read_from_the_current_directory(workdir):
    (workdir / "sub").mkdir()
    x, y = _regression()
    np.savez("sub/t.npz", x=x, y=y)
    cfg = from_dict(DataConfig, {"kind": "arrays", "path": "sub/t.npz"})
    assert "path = \"sub/t.npz\"" in dump_toml(cfg)
    assert cfg.build().n == 12


def test_missing_test_split_means_train_or_a_seeded_split(workdir):
    x, y = _regression(n=20)
    np.savez("t.npz", x=x, y=y)
    same = ArrayFile("t.npz").build()
    assert torch.equal(same.x_test, same.x_train) and torch.equal(same.y_test, same.y_train)
    split = ArrayFile("t.npz", test_fraction=0.25, split_seed=3).build()
    perm = np.random.default_rng(3).permutation(20)
    assert torch.equal(split.x_test, torch.as_tensor(x[perm[:5]]))
    assert torch.equal(split.x_train, torch.as_tensor(x[perm[5:]]))
    assert torch.equal(ArrayFile("t.npz", test_fraction=0.25, split_seed=3).build().y_train, split.y_train)


def test_integer_labels_are_classes_and_uint8_images_stay_uint8(workdir):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    np.savez("img.npz", x=imgs, y=np.array([0, 1, 2, 0, 1, 2], dtype=np.int32))
    ds = ArrayFile("img.npz").build()
    assert ds.x_train.dtype == torch.uint8 and ds.y_train.dtype == torch.int64
    assert int(ds.extras["num_classes"]) == 3
    np.savez("k.npz", x=np.ones((3, 2)), y=np.array([0, 1, 0]), num_classes=np.array(5))
    assert int(ArrayFile("k.npz").build().extras["num_classes"]) == 5


BAD_FILES = {
    "nan in x": ({"x": np.array([[1.0], [np.nan]]), "y": np.zeros(2)}, "'x' has 1 NaN/inf"),
    "inf in y": ({"x": np.ones((2, 1)), "y": np.array([0.0, np.inf])}, "'y' has 1 NaN/inf"),
    "strings": ({"x": np.array([["a"], ["b"]]), "y": np.zeros(2)}, "non-numeric dtype"),
    "complex": ({"x": np.ones((2, 1)) * 1j, "y": np.zeros(2)}, "complex dtype"),
    "length": ({"x": np.ones((3, 2)), "y": np.zeros(2)}, "'x' has 3 examples but 'y' has 2"),
    "rank of x": ({"x": np.ones(3), "y": np.zeros(3)}, r"x\[:, None\]"),
    "rank of y": ({"x": np.ones((3, 1)), "y": np.zeros((3, 1, 1))}, "'y' must be"),
    "missing key": ({"X": np.ones((3, 1)), "y": np.zeros(3)}, "no array 'x'; found: X, y"),
    "half a test split": ({"x": np.ones((3, 1)), "y": np.zeros(3), "x_test": np.ones((2, 1))},
                          "'x_test' without 'y_test'"),
    "test shape": ({"x": np.ones((3, 2)), "y": np.zeros(3), "x_test": np.ones((2, 3)), "y_test": np.zeros(2)},
                   "'x_test' examples"),
    "test labels": ({"x": np.ones((3, 2)), "y": np.zeros(3), "x_test": np.ones((2, 2)), "y_test": np.zeros(3)},
                    "'y_test' has shape"),
    "labels vs targets": ({"x": np.ones((3, 2)), "y": np.zeros(3), "x_test": np.ones((2, 2)),
                           "y_test": np.zeros(2, dtype=int)}, "both class labels"),
    "negative label": ({"x": np.ones((2, 1)), "y": np.array([0, -1])}, "must be >= 0"),
    "empty": ({"x": np.ones((0, 2)), "y": np.zeros(0)}, "no examples"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_arrays_give_one_line_data_errors(workdir, case):
    arrays, match = BAD_FILES[case]
    np.savez("bad.npz", **arrays)
    with pytest.raises(DataError, match=match) as e:
        ArrayFile("bad.npz").build()
    assert "\n" not in str(e.value) and "'bad.npz'" in str(e.value)


def test_unreadable_files(workdir):
    with pytest.raises(DataError, match="does not exist"):
        ArrayFile("nope.npz").build()
    with pytest.raises(DataError, match="allowed: .npz, .pt, .pth"):
        ArrayFile("data.csv").build()
    (workdir / "garbage.npz").write_bytes(b"not a zip archive")
    with pytest.raises(DataError, match="not a .npz archive"):
        ArrayFile("garbage.npz").build()
    x, y = _regression()
    np.savez("t.npz", x=x, y=y)
    (workdir / "trunc.npz").write_bytes((workdir / "t.npz").read_bytes()[:300])
    with pytest.raises(DataError, match="cannot read array file 'trunc.npz'"):
        ArrayFile("trunc.npz").build()
    (workdir / "garbage.pt").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DataError, match="cannot read array file 'garbage.pt'"):
        ArrayFile("garbage.pt").build()
    torch.save([torch.ones(2)], "list.pt")
    with pytest.raises(DataError, match="expected a dict of arrays"):
        ArrayFile("list.pt").build()
    np.savez("objects.npz", x=np.array([object(), object()], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match="cannot read array file 'objects.npz'"):
        ArrayFile("objects.npz").build()
    with pytest.raises(ConfigError, match="path"):
        from_dict(DataConfig, {"kind": "arrays"})
    with pytest.raises(ConfigError, match="test_fraction"):
        ArrayFile("t.npz", test_fraction=1.0)
    np.savez("own.npz", x=x, y=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="own test split"):
        ArrayFile("own.npz", test_fraction=0.5).build()


class _RunsCode:
    def __reduce__(self):
        return (sys.exit, ("a data file ran code",))


def test_a_pt_file_never_runs_code(workdir):
    torch.save({"x": _RunsCode(), "y": torch.zeros(2)}, "evil.pt")
    with pytest.raises(DataError, match="weights_only=True"):
        ArrayFile("evil.pt").build()


def test_engine_runs_on_an_array_file_from_toml(workdir):
    x, y = _regression(n=16, d=2)
    np.savez("task.npz", x=x, y=y)
    (workdir / "exp.toml").write_text(
        'steps = 50\nseeds = 2\n[data]\nkind = "arrays"\npath = "task.npz"\ntest_fraction = 0.25\n'
        '[model]\nkind = "relu_mlp"\nhidden = [8]\ninit_scales = [0.5, 0.5]\n'
        '[eval]\ngrid = "linear"\npoints = 3\n[[arms]]\nname = "gd"\noptimizer = {kind = "gd"}\n'
        'schedule = {kind = "constant", lr = 0.05}\n')
    cfg = load_toml(ExperimentConfig, workdir / "exp.toml")
    _, _, m = train(cfg)
    assert np.all(m["train_loss"][-1] < m["train_loss"][0])


# ----------------------------------------------------------------------------- function kind
TASKS = '''
import numpy as np
import torch
from sgdlab.data.base import Dataset

CALLS = []

def make(n=10, d=2, seed=0):
    CALLS.append(n)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    return {"x": x, "y": x.sum(1), "beta_star": np.ones(d)}

def as_dataset(n=4):
    x = torch.ones(n, 2, dtype=torch.float64)
    return Dataset(x, torch.zeros(n, dtype=torch.float64), x, torch.zeros(n, dtype=torch.float64))

def broken(n=3):
    return {"x": np.ones((n, 2)), "y": np.zeros(n + 1)}

def fails(n=3):
    raise RuntimeError("the user's bug")

def not_a_dict():
    return [1, 2, 3]

CONSTANT = 3
'''


@pytest.fixture
def tasks_file(workdir):
    (workdir / "kinds_tasks.py").write_text(TASKS)
    yield "./kinds_tasks.py"
    sys.modules.pop("kinds_tasks", None)


def test_function_from_a_file_with_kwargs(tasks_file):
    cfg = from_dict(DataConfig, {"kind": "function", "function": f"{tasks_file}:make", "kwargs": {"n": 7, "seed": 1}})
    ds = cfg.build()
    assert ds.x_train.shape == (7, 2) and torch.equal(ds.x_test, ds.x_train)
    assert torch.equal(ds.extras["beta_star"], torch.ones(2, dtype=torch.float64))
    x = np.random.default_rng(1).standard_normal((7, 2))
    assert torch.equal(ds.y_train, torch.as_tensor(x.sum(1)))
    assert 'kwargs = { n = 7, seed = 1 }' in dump_toml(cfg) or "[kwargs]" in dump_toml(cfg)
    # The file is imported once per process: a second build reuses the module.
    FunctionData(f"{tasks_file}:make").build()
    assert sys.modules["kinds_tasks"].CALLS == [7, 10]


def test_function_by_module_name_and_returning_a_dataset(tasks_file, monkeypatch):
    monkeypatch.syspath_prepend(".")
    ds = FunctionData("kinds_tasks:as_dataset", {"n": 5}).build()
    assert ds.n == 5 and ds.y_train.dtype == torch.float64
    split = FunctionData("kinds_tasks:make", {"n": 20}, test_fraction=0.5).build()
    assert split.n == 10 and split.x_test.shape == (10, 2)


@pytest.mark.parametrize("target, kwargs, err, match", [
    ("no_such_module_xyz:make", None, ConfigError, "data.function: no module named 'no_such_module_xyz'"),
    ("./missing_file.py:make", None, ConfigError, "data.function: module file './missing_file.py' does not exist"),
    ("{tasks}:nope", None, ConfigError, "has no attribute 'nope'; callables there: .*make"),
    ("{tasks}:CONSTANT", None, DataError, "is a int, not a function"),
    ("{tasks}:make", {"m": 1}, DataError, "does not match its signature"),
    ("{tasks}:fails", None, DataError, r"raised RuntimeError: the user's bug at /\S*kinds_tasks.py:\d+"),
    ("{tasks}:not_a_dict", None, DataError, "returned a list"),
    ("{tasks}:broken", None, DataError, "'x' has 3 examples but 'y' has 4"),
])
def test_function_errors_name_the_key_and_the_module(tasks_file, target, kwargs, err, match):
    with pytest.raises(err, match=match) as e:
        FunctionData(target.format(tasks=tasks_file), kwargs).build()
    assert "\n" not in str(e.value)


def test_function_import_errors(workdir):
    (workdir / "kinds_syntax.py").write_text("def f(:\n")
    with pytest.raises(ConfigError, match="data.function: importing module file './kinds_syntax.py' failed: Syntax"):
        FunctionData("./kinds_syntax.py:f").build()
    (workdir / "kinds_imports.py").write_text("import not_installed_pkg_xyz\n")
    with pytest.raises(ConfigError, match="No module named 'not_installed_pkg_xyz'"):
        FunctionData("./kinds_imports.py:f").build()
    assert "kinds_syntax" not in sys.modules and "kinds_imports" not in sys.modules
    for bad in ("make", "mod:", ":make", "mod:not-a-name"):
        with pytest.raises(ConfigError, match="expected 'module:function'"):
            FunctionData(bad)
    with pytest.raises(ConfigError, match="kwargs must be a table"):
        from_dict(DataConfig, {"kind": "function", "function": "m:f", "kwargs": [1, 2]})


def test_dataset_from_arrays_accepts_torch_and_lists():
    ds = dataset_from_arrays({"x": [[1.0], [2.0]], "y": torch.tensor([0, 1])}, "inline")
    assert ds.x_train.dtype == torch.float64 and ds.y_train.dtype == torch.int64
    assert isinstance(ds, Dataset) and int(ds.extras["num_classes"]) == 2


def test_engine_runs_on_a_function_dataset(tasks_file):
    cfg = ExperimentConfig(data=FunctionData(f"{tasks_file}:make", {"n": 16}),
                           model=MLPConfig(hidden=(4,), init_scales=(0.5, 0.5)),
                           arms=(ArmConfig("gd", GD(), Constant(0.05)),), steps=20, seeds=1,
                           eval=EvalConfig("linear", 2))
    _, _, m = train(cfg)
    assert m["train_loss"].shape == (2, 1) and np.isfinite(m["train_loss"]).all()
