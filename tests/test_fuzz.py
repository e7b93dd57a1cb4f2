"""Property-based fuzzing of configs and command lines: every input ends in a valid run or in one
clear error line (exit code 2), never in a traceback; and nothing is accepted silently: every
``--set`` of an accepted command is found, with its value, in the resolved config.

The default suite runs a few hundred cases (most as ``--dry-run``: config validation and engine
construction, where bad input is caught; some as real runs); the slow suite many more.
"""

import math
import tomllib

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sgdlab
from sgdlab.core.config import flat_fields, to_dict
from sgdlab.frontends.cli import main
from sgdlab.spec.experiment import ExperimentConfig

pytestmark = pytest.mark.study("diag_net", "eos")

# Small problems, so that every accepted config trains in well under a second.
BASE = ["--set", "data.n=20", "--set", "data.d=30", "--set", "data.r=3", "--set", "data.n_test=50",
        "--set", "eval.grid='linear'", "--set", "eval.points=5", "--no-progress"]
CAP = ["--set", "steps=200", "--set", "seeds=2"]  # appended last: a fuzzed size never makes a case slow

ARM_KEYS = ["name", "seeds", "schedule.kind", "schedule.lr", "schedule.milestones", "schedule.factors",
            "schedule.until", "optimizer.kind", "optimizer.batch_size", "optimizer.replacement",
            "optimizer.momentum", "optimizer.weight_decay", "optimizer.sigma", "optimizer.delta"]
KEYS = ([name for name, _, _ in flat_fields(ExperimentConfig) if name not in {"steps", "seeds", "checkpoint_seconds"}]
        + [f"arms.{i}.{k}" for i in (0, 1, 2, 3, 4, 7) for k in ARM_KEYS]
        + ["data.kind", "data.n", "data.d", "data.r", "data.noise", "data.generator", "model.kind",
           "model.init_scale", "nosuch", "arms.nosuch", "data.nosuch", "metrics.nosuch", "eval.grid.x", ""])
KINDS = ["constant", "piecewise", "cosine", "sgd", "gd", "label_noise_sgd", "sde", "diagonal_net", "relu_mlp",
         "sparse_regression", "chebyshev", "warp"]

numbers = st.one_of(st.integers(-10, 300), st.floats(-1e3, 1e3, allow_nan=False),
                    st.sampled_from([0, -1, 1e-300, 1e300, math.inf, -math.inf, math.nan]))


def _toml(v) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return repr(v)


junk = st.one_of(
    numbers.map(_toml),
    st.sampled_from(["true", "false", "[]", "[0.1]", "[0.1, 0.5]", "[1, 2, 3]", '"x"', "''", "{}",
                     '{kind="constant", lr=0.1}', '{kind="warp"}', "[[1]]", "1e-3", "0x10", "=", "["]),
    st.sampled_from(KINDS).map(lambda k: f"'{k}'"),
    st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=8),
)
# Plausible values per key (most cases get past the first check and exercise the deeper ones).
small_floats = st.one_of(st.floats(0, 2).map(_toml), st.sampled_from(["0.1", "0.27", "1e-3", "0.0", "-0.1"]))
small_ints = st.integers(-2, 40).map(str)
PLAUSIBLE = {
    ("lr", "noise", "momentum", "weight_decay", "sigma", "delta", "until", "init_scale", "l0",
     "l0_robust", "sparsity_tau", "rank_rtol", "tol", "rse_tol", "ema"): small_floats,
    ("divergence_factor",): st.sampled_from(["2.0", "1e6", "1.0", "0.5"]),
    ("batch_size", "n", "d", "r", "points", "head", "snapshots", "first_seed", "every", "k",
     "subset", "n_test", "max_batches", "seed"): small_ints,
    ("replacement", "fused", "nesterov"): st.sampled_from(["true", "false"]),
    ("kind",): st.sampled_from(KINDS).map(lambda k: f"'{k}'"),
    ("milestones",): st.sampled_from(["[0.1]", "[0.5, 0.2]", "[]", "[1.5]"]),
    ("factors",): st.sampled_from(["[2.0]", "[2.0, 3.0]", "[]", "[0]"]),
    ("seeds",): st.sampled_from(["[0, 1]", "[]", "[-1]", "[3]"]),
    ("figure", "names"): st.sampled_from(['["train_loss"]', '["l0", "test_loss"]', '["nosuch"]', "[]"]),
    ("grid",): st.sampled_from(["'log'", "'linear'", "'authors'", "'exp'"]),
    ("dtype",): st.sampled_from(["'float32'", "'float64'", "'float16'"]),
    ("device",): st.sampled_from(["'cpu'", "'cuda'", "'tpu'"]),
    ("name", "description"): st.sampled_from(["'x'", "''", "'a {schedule.lr}'", "'{nosuch}'", "'{'"]),
}


def value_for(key: str):
    last = key.rsplit(".", 1)[-1]
    for names, strat in PLAUSIBLE.items():
        if last in names:
            return st.one_of(strat, strat, strat, junk)
    return junk


assignments = st.lists(st.sampled_from(KEYS).flatmap(lambda k: st.tuples(st.just(k), value_for(k))),
                       min_size=1, max_size=3)
FLAG_VALUES = {"--steps": ["0", "-3", "50", "x"], "--seeds": ["0", "1", "2", "x"], "--first-seed": ["-1", "3"],
               "--dtype": ["float16", "float32", "float64"], "--snapshots": ["0", "2", "-1"],
               "--divergence-factor": ["0.5", "1e9", "nan"], "--device": ["cuda", "cpu", "meta"]}
flags = st.lists(st.sampled_from(sorted(FLAG_VALUES)).flatmap(
    lambda f: st.tuples(st.just(f), st.sampled_from(FLAG_VALUES[f]))), max_size=2)


def _value(text: str):
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _lookup(tree, key: str):
    node = tree
    for k in key.split("."):
        if isinstance(node, list) and k.isdigit() and int(k) < len(node):
            node = node[int(k)]
        elif isinstance(node, dict) and k in node:
            node = node[k]
        else:
            return KeyError
    return node


def _same(got, want) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    if isinstance(want, dict):
        return isinstance(got, dict) and all(_same(got.get(k), v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(_same(a, b) for a, b in zip(got, want))
    return got == want


def check(result, sets, cfg_path=None):
    """Exit 0 or a clean exit 2 with one error line; and an accepted --set is in the config."""
    out = result.output
    assert "Traceback" not in out, out
    if result.exit_code != 0:
        assert result.exit_code == 2, (result.exit_code, out, result.exception)
        assert isinstance(result.exception, SystemExit), repr(result.exception)
        assert sum(line.lower().startswith("error") for line in out.splitlines()) == 1, out
        return False
    if cfg_path is not None:
        tree = to_dict(sgdlab.load_experiment(cfg_path))
        last = {}
        for key, text in sets:
            last[key] = _value(text.strip())
        for key, want in last.items():
            got = _lookup(tree, key)
            assert got is not KeyError, f"--set {key}=... was accepted but is not in the resolved config"
            # a string the config converts (a kind name into its table, a number) is checked by
            # the config's own validation; a string it keeps must be kept verbatim
            assert _same(got, want) or (isinstance(want, str) and not isinstance(got, str)), (key, got, want)
    return True


def _run_args(sets, typed, real, out):
    args = ["run", "diag-net", *BASE]
    for k, v in sets:
        args += ["--set", f"{k}={v}"]
    for f, v in typed:
        args += [f, v]
    args += CAP
    return args + (["--out", str(out)] if real else ["--dry-run"])


def _fuzz_run(sets, typed, real, tmp_path_factory):
    out = tmp_path_factory.mktemp("fz") / "r"
    r = CliRunner().invoke(main, _run_args(sets, typed, real, out))
    check(r, sets, out / "config.toml" if real and r.exit_code == 0 else None)


FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FAST
@given(sets=assignments, typed=flags)
def test_fuzzed_overrides_give_a_config_or_one_clear_error(sets, typed, tmp_path_factory):
    _fuzz_run(sets, typed, False, tmp_path_factory)


@settings(FAST, max_examples=25)
@given(sets=assignments, typed=flags)
def test_fuzzed_overrides_that_are_accepted_train_and_are_recorded(sets, typed, tmp_path_factory):
    _fuzz_run(sets, typed, True, tmp_path_factory)


commands = st.one_of(
    st.tuples(st.just("show"), st.sampled_from(["diag-net", "nosuch", "eos-chebyshev", "./missing.toml"])),
    st.tuples(st.just("plot"), st.sampled_from(["/nonexistent", ".", "/proc", "/dev/null"])),
    st.tuples(st.just("summary"), st.sampled_from(["/nonexistent", ".", "/dev/null"])),
    st.tuples(st.just("sweep"), st.just("diag-net"), st.just("--dry-run"), st.just("--grid"),
              st.one_of(st.text(max_size=12), st.sampled_from(["steps=1,2", "x", "a.b=linspace(1,2)",
                                                                "arms.0.schedule.lr=logspace(0,1,3)",
                                                                "seeds=", "=1,2", "steps=linspace(1,2,-1)"]))),
    st.tuples(st.just("compare"), st.sampled_from(["/nonexistent", "/dev/null"])),
)


@settings(FAST, max_examples=80)
@given(cmd=commands)
def test_fuzzed_commands_give_output_or_one_clear_error(cmd, tmp_path_factory):
    r = CliRunner().invoke(main, list(cmd))
    check(r, [])


@pytest.mark.slow
@settings(FAST, max_examples=1500)
@given(sets=assignments, typed=flags)
def test_fuzzed_overrides_many(sets, typed, tmp_path_factory):
    _fuzz_run(sets, typed, False, tmp_path_factory)


@pytest.mark.slow
@settings(FAST, max_examples=200)
@given(sets=assignments, typed=flags)
def test_fuzzed_real_runs_many(sets, typed, tmp_path_factory):
    _fuzz_run(sets, typed, True, tmp_path_factory)
