"""``override`` rebuilds only the configs an assignment passes through; the result (or the error)
must be exactly that of rebuilding the whole tree from its plain-dict form, for every settable key
of every bundled experiment and values that pass and values that fail its checks."""

import itertools

import pytest

from sgdlab.core.config import _set_path, flat_items, from_dict, override, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.spec.catalog import list_experiments, load_experiment


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
            fast = _outcome(lambda: override(cfg, [f"{key}={_toml(v)}"]))
            slow = _outcome(lambda: _rebuilt(cfg, key, v))
            assert fast == slow, (name, key, v)
            checked += 1
    assert checked > 10


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
