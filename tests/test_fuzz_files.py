"""Property-based fuzzing of the files a user hands to sgdlab: array (data) files, exact-init files
and sweep files, with bad shapes, dtypes, NaN/inf, empty and huge values. Every file ends in a
run (or a plan) or in exit 2 with one ``error:`` line naming the file; never a traceback, and
never exit 0 for a file that breaks the rules (an independent oracle says which files are valid).

The default suite runs a few examples per property; the slow suite many more (and real runs).
"""

import itertools
import tomllib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sgdlab.core.limits import MAX_AXIS_VALUES, MAX_GRID_POINTS
from sgdlab.data.checks import MAX_ABS
from sgdlab.frontends.cli import main

pytestmark = pytest.mark.study("diag_net")

FEW = settings(max_examples=12, deadline=None, derandomize=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MANY = settings(FEW, max_examples=300)

ARM = "arms=[{name='a', schedule={kind='constant', lr=0.01}}]"
RUN = ["--steps", "30", "--seeds", "2", "--set", "eval.grid='linear'", "--set", "eval.points=3", "--set", ARM,
       "--no-progress"]
SEEDS, D = 2, 3  # of the init-file runs


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


def outcome(r, path, valid: bool) -> None:
    """Valid: exit 0. Invalid: exit 2, one `error:` line naming the file. Never a traceback."""
    assert "Traceback" not in r.output, r.output
    if valid:
        assert r.exit_code == 0, r.output
        return
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (r.exit_code, r.output, r.exception)
    assert len(lines) == 1 and lines[0].startswith("error: ") and path.name in lines[0], r.stderr


def _special(a: np.ndarray, special, dtype: str) -> np.ndarray:
    """NaN / inf / a huge value in the first entry of a float array (others have no such values)."""
    if special is None or a.size == 0 or np.dtype(dtype).kind != "f":
        return a
    a = a.copy()
    with np.errstate(over="ignore"):  # 1e200 in float32 is inf: still a bad value
        a.flat[0] = {"nan": np.nan, "inf": -np.inf, "huge": 1e200}[special]
    return a


def _bad_values(a: np.ndarray) -> bool:
    if a.dtype.kind != "f" or a.size == 0:
        return False
    return not np.isfinite(a).all() or bool((np.abs(a.astype(np.float64)) > MAX_ABS).any())


def _save(path, arrays: dict, fmt: str):
    if fmt == "pt" and all(a.dtype.kind in "biufc" for a in arrays.values()):
        path = path.with_suffix(".pt")
        torch.save({k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()}, path)
    else:
        path = path.with_suffix(".npz")
        np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------- array (data) files

@st.composite
def array_files(draw):
    """(arrays, valid for the diagonal net)."""
    n = draw(st.sampled_from([0, 1, 4, 9]))
    d = draw(st.integers(1, 4))
    x_shape = draw(st.sampled_from(["nd", "nd", "n", "nchw", "nd1"]))
    x_dtype = draw(st.sampled_from(["float64", "float64", "float32", "int64", "bool", "complex128", "U1"]))
    special = draw(st.sampled_from([None, None, "nan", "inf", "huge"]))
    y_kind = draw(st.sampled_from(["n", "n", "n2", "n+1", "missing"]))
    y_dtype = draw(st.sampled_from(["float64", "float64", "int64"]))
    support = draw(st.sampled_from([None, None, "bool", "01", "len", "float"]))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    shape = {"nd": (n, d), "n": (n,), "nchw": (n, 1, 2, 2), "nd1": (n, d, 1)}[x_shape]
    x = rng.standard_normal(shape)
    x = x.astype(str).astype("U1") if x_dtype == "U1" else _special(x.astype(x_dtype), special, x_dtype)
    arrays = {"x": x}
    if y_kind != "missing":
        y = rng.standard_normal({"n": (n,), "n2": (n, 2), "n+1": (n + 1,)}[y_kind])
        arrays["y"] = np.abs(y * 3).astype(y_dtype)
    if support is not None:
        arrays["support"] = {"bool": np.arange(d) < 1, "01": (np.arange(d) < 1).astype(np.int64),
                             "len": np.ones(d + 1, bool), "float": np.full(d, 0.5)}[support]
    valid = (y_kind == "n" and y_dtype == "float64" and x_shape == "nd" and n >= 1 and x_dtype not in ("complex128", "U1")
             and not _bad_values(x) and support in (None, "bool", "01"))
    return arrays, valid, draw(st.sampled_from(["npz", "pt"]))


def _array_case(case, tmp_path_factory, real: bool):
    arrays, valid, fmt = case
    path = _save(tmp_path_factory.mktemp("fz") / "data", arrays, fmt)
    out = path.parent / "run"
    r = invoke(["run", "diag-net", "--set", f"data={{kind='arrays', path='{path}'}}", *RUN,
                *(["--out", out] if real else ["--dry-run"])])
    outcome(r, path, valid)
    assert (out / "summary.json").exists() == (real and valid)  # a refused file leaves nothing behind


@FEW
@given(case=array_files())
def test_fuzzed_array_files_run_or_give_one_line_naming_the_file(case, tmp_path_factory):
    _array_case(case, tmp_path_factory, real=False)


@pytest.mark.slow
@MANY
@given(case=array_files(), real=st.booleans())
def test_fuzzed_array_files_many(case, real, tmp_path_factory):
    _array_case(case, tmp_path_factory, real)


# ----------------------------------------------------------------------------- exact-init files

@st.composite
def init_files(draw):
    """(entries, valid) for a diagonal net of d = D features and an arm of SEEDS seeds."""
    entries, valid = {}, True
    for name in ("u", "v"):
        if draw(st.integers(0, 9)) == 0:  # missing
            valid = False
            continue
        kind = draw(st.sampled_from(["d", "d", "seeds", "d+1", "scalar", "seeds+1", "empty"]))
        shape = {"d": (D,), "seeds": (SEEDS, D), "d+1": (D + 1,), "scalar": (), "seeds+1": (SEEDS + 1, D),
                 "empty": (0,)}[kind]
        dtype = draw(st.sampled_from(["float64", "float64", "float32", "int64", "bool", "complex128", "U1"]))
        special = draw(st.sampled_from([None, None, "nan", "inf", "huge"]))
        a = np.full(shape, 0.1)
        a = a.astype(str).astype("U1") if dtype == "U1" else _special(a.astype(dtype), special, dtype)
        entries[name] = a
        valid &= kind in ("d", "seeds") and dtype not in ("complex128", "U1") and not _bad_values(a)
    if draw(st.integers(0, 9)) == 0:
        entries["w"] = np.zeros(D)  # a parameter the model does not have
        valid = False
    return entries, valid, draw(st.sampled_from(["npz", "pt"]))


def _init_case(case, tmp_path_factory, real: bool):
    entries, valid, fmt = case
    root = tmp_path_factory.mktemp("fz")
    x = np.random.default_rng(0).standard_normal((10, D))
    np.savez(root / "data.npz", x=x, y=x[:, 0])
    path = _save(root / "init", entries, fmt)
    out = root / "run"
    r = invoke(["run", "diag-net", "--set", f"data={{kind='arrays', path='{root / 'data.npz'}'}}", *RUN,
                "--set", f"arms.0.init={{file='{path}'}}", *(["--out", out] if real else ["--dry-run"])])
    outcome(r, path, valid)
    assert (out / "summary.json").exists() == (real and valid)


@FEW
@given(case=init_files())
def test_fuzzed_init_files_run_or_give_one_line_naming_the_file(case, tmp_path_factory):
    _init_case(case, tmp_path_factory, real=False)


@pytest.mark.slow
@MANY
@given(case=init_files(), real=st.booleans())
def test_fuzzed_init_files_many(case, real, tmp_path_factory):
    _init_case(case, tmp_path_factory, real)


# ----------------------------------------------------------------------------- sweep files

AXIS_KEYS = ["arms.1.schedule.lr", "arms.0.optimizer.batch_size", "data.n", "seeds", "nosuch.key"]
AXIS_VALUES = st.one_of(
    st.lists(st.sampled_from([1, 2, 20, 0, -1, 0.3, 0.5, 1e300, "x", True]), min_size=0, max_size=3),
    st.sampled_from([20, "linspace(0.1, 0.3, 2)", "logspace(0.1, 1, 3)", "logspace(-1, 1, 2)",
                     f"linspace(0.1, 0.3, {MAX_AXIS_VALUES + 1})", "uniform(0.1, 0.3, 2, 1)", "bogus(1, 2)",
                     "linspace(0.1, nan, 2)", "1, 2"]),
)


@st.composite
def sweep_files(draw):
    lines = []
    exp = draw(st.sampled_from(["diag-net", "diag-net", "diag-net", None, "no-such-experiment"]))
    if exp is not None:
        lines.append(f'experiment = "{exp}"')
    seeds = draw(st.sampled_from([None, None, 1, 2, 0, -1, "'two'"]))
    if seeds is not None:
        lines.append(f"seeds = {seeds}")
    sets = draw(st.lists(st.sampled_from(["steps=20", "data.n=20", "data.d=30", "steps=-1", "nosuch=1", "eval.points=3"]),
                         max_size=3))
    lines.append("set = [" + ", ".join(f'"{s}"' for s in sets + ["steps=20", "data.n=20"][: 2 - min(len(sets), 2)]) + "]")
    if draw(st.integers(0, 9)) == 0:
        lines.append("colour = 'blue'")  # an unknown key
    lines.append("[grid]")
    for k in draw(st.lists(st.sampled_from(AXIS_KEYS), min_size=0, max_size=2, unique=True)):
        v = draw(AXIS_VALUES)
        lines.append(f'"{k}" = {v!r}'.replace("True", "true") if not isinstance(v, str) else f'"{k}" = "{v}"')
    return "\n".join(lines) + "\n"


def _expected_points(text: str) -> int:
    """The number of grid points of a sweep file, computed without sgdlab."""
    from sgdlab.workflows.sweep import (
        parse_values,  # the grid syntax itself is tested in test_sweep.py
    )

    sizes = [len(parse_values(v)) if isinstance(v, str) else len(v) for v in tomllib.loads(text)["grid"].values()]
    return int(np.prod(sizes)) if sizes else 0


@FEW
@given(text=sweep_files())
def test_fuzzed_sweep_files_plan_or_give_one_line_naming_the_file(text, tmp_path_factory):
    _sweep_case(text, tmp_path_factory)


@pytest.mark.slow
@MANY
@given(text=sweep_files())
def test_fuzzed_sweep_files_many(text, tmp_path_factory):
    _sweep_case(text, tmp_path_factory)


def _sweep_case(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fz") / "sweep.toml"
    path.write_text(text)
    r = invoke(["sweep", "--file", path, "--dry-run"])
    outcome(r, path, r.exit_code == 0)
    if r.exit_code == 0:  # accepted: the plan has every point of the grid, no more, no fewer
        n = _expected_points(text)
        assert 1 <= n <= MAX_GRID_POINTS and f"{n} points in" in r.output, (text, r.output)
        assert not list(itertools.islice(path.parent.glob("sweeps*"), 1))  # a dry run writes nothing
