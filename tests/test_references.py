"""Published numbers beside sgdlab's (``[[references]]``) and an experiment's own sweep grid
(``sweep_grid``): checked at load, matched on the recorded config, shown by run, summary and sweep."""

import textwrap

import pytest
from click.testing import CliRunner

from sgdlab.core.errors import ConfigError
from sgdlab.frontends.cli import main
from sgdlab.spec.catalog import load_experiment
from sgdlab.spec.references import matching

TOML = textwrap.dedent("""
    name = "refs"
    steps = 10
    seeds = 2
    sweep_grid = ["data.n=32,48"]

    [data]
    kind = "sparse_regression"
    n = 32
    d = 4
    r = 2
    n_test = 16

    [model]
    kind = "relu_mlp"
    hidden = [4]

    [eval]
    grid = "linear"
    points = 2

    [[arms]]
    optimizer = { kind = "sgd", batch_size = 8 }
    schedule = { kind = "constant", lr = 0.01 }

    [[references]]
    metric = "train_loss"
    value = 0.125
    where = ["data.n=32"]
    source = "a paper, table 1"

    [[references]]
    metric = "test_loss"
    value = 7.5
    where = ["data.n=48", "model.hidden=[4]"]
""")


@pytest.fixture
def exp(tmp_path):
    p = tmp_path / "refs.toml"
    p.write_text(TOML)
    return p


def test_references_match_the_recorded_config_as_plain_data(exp):
    from sgdlab.core.config import to_dict

    table = to_dict(load_experiment(exp))
    assert matching(table) == {"train_loss": {"value": 0.125, "source": "a paper, table 1"}}
    table["data"]["n"] = 48
    assert matching(table) == {"test_loss": {"value": 7.5, "source": ""}}
    table["data"]["n"] = 40
    assert matching(table) == {}
    table["references"] = [{"metric": 3}, "junk", {"metric": "x", "value": "nan?"}]  # hand-edited: nothing, no error
    assert matching(table) == {}


@pytest.mark.parametrize("bad, message", [
    ('metric = "no_such_metric"\nvalue = 1.0', "no_such_metric"),
    ('metric = "train_loss"\nvalue = 1.0\nwhere = ["just text"]', "key.path=value"),
    ('metric = "train_loss"\nvalue = nan', "finite"),
])
def test_a_bad_reference_is_refused_at_load_naming_it(tmp_path, bad, message):
    p = tmp_path / "bad.toml"
    p.write_text(TOML + f"\n[[references]]\n{bad}\n")
    with pytest.raises(ConfigError, match=message):
        load_experiment(p)


def test_a_bad_sweep_grid_item_is_refused_at_load(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(TOML.replace('sweep_grid = ["data.n=32,48"]', 'sweep_grid = ["n_train"]'))
    with pytest.raises(ConfigError, match="sweep_grid"):
        load_experiment(p)


def test_run_and_summary_print_the_published_number_beside_the_measured_one(exp, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(exp), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    head = next(line for line in r.output.splitlines() if line.startswith("arm "))
    assert "train_loss (published)" in head and "test_loss (published)" not in head
    row = next(line for line in r.output.splitlines() if line.startswith("sgd") or "0/2" in line)
    assert "0.125" in row
    s = CliRunner().invoke(main, ["summary", str(out)])
    assert s.exit_code == 0 and "train_loss (published)" in s.output and "0.125" in s.output


def test_sweep_without_grid_runs_the_experiments_own_grid_with_its_references(exp, tmp_path):
    out = tmp_path / "sw"
    r = CliRunner().invoke(main, ["sweep", str(exp), "--out", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(line for line in lines if line.startswith("source"))
    assert "train_loss (published)" in head and "test_loss (published)" in head
    rows = [line for line in lines if line.startswith("sw ")]
    assert len(rows) == 2
    assert "0.125" in rows[0] and "7.5" not in rows[0]
    assert "7.5" in rows[1] and "0.125" not in rows[1]


def test_sweep_of_an_experiment_without_a_grid_asks_for_one(tmp_path):
    p = tmp_path / "nogrid.toml"
    p.write_text(TOML.replace('sweep_grid = ["data.n=32,48"]\n', ""))
    r = CliRunner().invoke(main, ["sweep", str(p), "--dry-run"])
    assert r.exit_code == 2 and "--grid" in r.output and "Traceback" not in r.output


def test_a_where_key_the_config_lacks_matches_nothing_and_a_kind_switch_still_loads(exp):
    from sgdlab.core.config import override, to_dict

    cfg = load_experiment(exp)
    switched = override(cfg, ["data.kind=digits"])  # data.n is gone: the references no longer apply
    assert matching(to_dict(switched)) == {}


def test_every_bundled_reference_names_keys_of_its_own_experiment():
    from sgdlab.core.config import flat_items
    from sgdlab.spec.catalog import list_experiments

    for name in list_experiments():
        cfg = load_experiment(name)
        keys = {k for k, _, _ in flat_items(cfg)}
        for ref in cfg.references:
            assert all(w.partition("=")[0].strip() in keys for w in ref.where), (name, ref)
