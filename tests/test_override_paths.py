"""``override`` rebuilds only the configs an assignment passes through; the result (or the error)
must be exactly that of rebuilding the whole tree from its plain-dict form, for every settable key
of every bundled experiment and values that pass and values that fail its checks."""

import itertools

import pytest

from sgdlab.core.config import _set_path, flat_items, from_dict, override, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.spec.catalog import list_experiments, load_experiment

DIAG = pytest.mark.study("diag_net")


def _rebuilt(cfg, key: str, value):
    data = to_dict(cfg)
    _set_path(data, key.split("."), value, key)
    return from_dict(type(cfg), data)


def _outcome(fn):
    try:
        return "ok", to_dict(fn())
    except ConfigError:
        return "error", None


def _values(v):
    if isinstance(v, bool):
        return [not v]
    if isinstance(v, int):
        return [v, v + 1, 0, -1, 3.5]
    if isinstance(v, float):
        return [v * 2, 0.0, -1.0, float("inf"), "text"]
    if isinstance(v, str):
        return [v, "zz_no_such", ""]
    if isinstance(v, tuple):
        return [list(v), []]
    return []


@pytest.mark.parametrize("name", list_experiments())
def test_override_equals_a_whole_rebuild_for_every_key(name):
    cfg = load_experiment(name)
    checked = 0
    for key, _, value in flat_items(cfg):
        if key.endswith(".kind") or key == "imports":
            continue  # kind switches and imports take the whole rebuild by design
        for v in _values(value):
            fast = _outcome(lambda key=key, v=v: override(cfg, [f"{key}={_toml(v)}"]))
            slow = _outcome(lambda key=key, v=v: _rebuilt(cfg, key, v))
            assert fast == slow, (name, key, v)
            checked += 1
    assert checked > 10


@DIAG
def test_two_assignments_that_only_pass_together(tmp_path):
    """An intermediate state may fail a check the final one passes: the result must not depend on it."""
    cfg = load_experiment("diag-net")
    pairs = [("steps", 50), ("eval.points", 3)]
    for order in itertools.permutations(pairs):
        got = override(cfg, [f"{k}={v}" for k, v in order])
        assert got.steps == 50 and got.eval.points == 3


def _toml(v):
    from sgdlab.core.config import toml_value

    return toml_value(v)


@DIAG
@pytest.mark.parametrize("axes", [
    [("arms.0.schedule.lr", [0.1, 0.2, 0.3]), ("arms.1.optimizer.batch_size", [1, 2])],
    [("first_seed", [0, 5]), ("arms.0.schedule.lr", [0.1, 0.2]), ("steps", [60, 80])],
    [("steps", [50, 70]), ("data.n", [20, 30])],
    [("arms.0.name", ["a {lr}", "b"]), ("arms.0.schedule.lr", [0.1, 0.2])],
    [("arms.0.optimizer.kind", ["sgd", "gd"]), ("arms.0.name", ["x", "y"]), ("first_seed", [0, 3])],
])
def test_a_grid_built_from_shared_parts_equals_one_override_per_point(axes, monkeypatch):
    from sgdlab.workflows import grid

    base = load_experiment("diag-net")
    shared, single = grid.point_configs(base, axes), grid.each_point(base, axes)
    assert [(v, to_dict(c)) for v, c, _ in shared] == [(v, to_dict(c)) for v, c, _ in single]
    points, jobs = grid.plan(base, axes)
    monkeypatch.setattr(grid, "point_configs", grid.each_point)  # the plan of one override per point
    ref_points, ref_jobs = grid.plan(base, axes)
    assert points == ref_points
    assert [(j.id, to_dict(j.config)) for j in jobs] == [(j.id, to_dict(j.config)) for j in ref_jobs]


@DIAG
def test_a_grid_point_that_fails_is_worded_as_one_override_would():
    from sgdlab.workflows.grid import plan

    base = load_experiment("diag-net")
    for axes in ([("arms.0.schedule.lr", [0.1, -1.0])], [("steps", [50, 0])],
                 [("arms.0.optimizer.batch_size", [1, "x"]), ("steps", [50, 60])]):
        bad = [v for _, vals in axes for v in vals][-1] if axes[0][0] != "arms.0.optimizer.batch_size" else "x"
        key = next(k for k, vals in axes if bad in vals)
        with pytest.raises(ConfigError) as e:
            plan(base, axes)
        with pytest.raises(ConfigError) as ref:
            override(base, [f"{key}={_toml(bad)}"])
        assert str(e.value) == str(ref.value)
