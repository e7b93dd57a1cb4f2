"""Configs: round trips, overrides and clear errors for bad input."""

import pytest

import sgdlab
from sgdlab.core.config import dump_toml, from_dict, load_toml, override, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.spec.experiment import ExperimentConfig

pytestmark = pytest.mark.study("diag_net", "relu_nets")


def test_every_bundled_experiment_loads_and_round_trips(tmp_path):
    names = sgdlab.list_experiments()
    assert {"diag-net", "diag-net-n40"} <= set(names)
    for name in names:
        cfg = sgdlab.load_experiment(name)
        p = tmp_path / f"{name}.toml"
        p.write_text(dump_toml(cfg))
        assert load_toml(ExperimentConfig, p) == cfg


def test_override_nested_and_indexed():
    cfg = sgdlab.load_experiment("diag-net")
    new = override(cfg, ["seeds=3", "arms.1.schedule.lr=0.27", "data.n=40", "eval.grid=log"])
    assert new.seeds == 3 and new.arms[1].schedule.lr == 0.27 and new.data.n == 40 and new.eval.grid == "log"
    assert cfg.seeds == 8  # frozen: the original is untouched


def test_override_can_switch_kind():
    cfg = sgdlab.load_experiment("diag-net")
    new = override(cfg, ["arms.0.schedule={kind='cosine', lr=0.1}"])
    assert new.arms[0].schedule.kind == "cosine"


@pytest.mark.parametrize("assignment,needle", [
    ("stepz=10", "unknown key for ExperimentConfig 'stepz'; allowed: arms, checkpoint_seconds"),
    ("steps=ten", "steps: expected an integer"),
    ("steps=-5", "steps must be >= 1"),
    ("seeds=1.5", "seeds: expected an integer"),
    ("arms.0.schedule.lr=-0.1", "step size must be a positive number"),
    ("arms.1.schedule.milestones=[1.2]", "decay point must be a fraction of the run in [0, 1]"),
    ("arms.0.schedule.kind='warp'", "unknown schedule 'warp'; allowed: constant, cosine"),
    ("model.kind='resnet'", "unknown model 'resnet'; allowed: deep_net, diagonal_net"),
    ("data.kind='cifar'", "unknown dataset 'cifar'; allowed:"),
    ("arms.0.optimizer.kind='lbfgs'", "unknown optimizer 'lbfgs'; allowed: "),  # adam exists (the MNIST-1D study's)
    ("arms.0.optimizer.batch_size=0", "batch_size must be >= 1"),
    ("eval.grid='cubic'", "allowed: authors, linear, log"),
    ("dtype='float16'", "allowed: float32, float64"),
    ("arms.7.name='x'", "not an index of a list of 5 items"),
    ("data.r=500", "r must be in [1, d=200]"),
    ("noequals", "must look like key.path=value"),
])
def test_bad_overrides_name_the_key_and_the_allowed_values(assignment, needle):
    cfg = sgdlab.load_experiment("diag-net")
    with pytest.raises(ConfigError) as e:
        override(cfg, [assignment])
    assert needle in str(e.value)


def test_duplicate_arm_names_rejected():
    d = to_dict(sgdlab.load_experiment("diag-net"))
    d["arms"][1]["name"] = "SGD eta=0.25"  # arm 0's resolved label ("SGD eta={schedule.lr}")
    with pytest.raises(ConfigError, match="unique"):
        from_dict(ExperimentConfig, d)


def test_unknown_experiment_lists_the_bundled_ones():
    with pytest.raises(ConfigError, match="unknown experiment 'diag-nett'; allowed: ") as e:
        sgdlab.load_experiment("diag-nett")
    assert " diag-net, " in str(e.value) and "relu-teacher-student" in str(e.value)


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(ExperimentConfig, tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(ExperimentConfig, bad)
