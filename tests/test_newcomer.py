"""A newcomer's path without detours: every kind listed, the `--keys` advice true on every bundled
config, curvature names that say how to log them, the end-of-run table showing what was asked,
config paths relative to the config file, sweep plots that never replace the default figures, and
the 2/eta_t line that follows the schedule."""

import json
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

import sgdlab
from sgdlab.data.base import DataConfig
from sgdlab.frontends.cli import main
from sgdlab.frontends.kinds import FAMILIES, describe, format_kinds
from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.models.base import ModelConfig
from sgdlab.spec import catalog
from sgdlab.store.summary import format_table, table_columns

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "eos", "deep_nets")

TINY = ["--steps", "300", "--seeds", "2", "--no-progress", "--set", "eval.grid='linear'", "--set", "eval.points=11"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ----------------------------------------------------------------------------- sgdlab kinds

def test_kinds_lists_every_family_with_keys_types_defaults_and_a_description():
    r = cli("kinds")
    assert r.exit_code == 0, r.output
    for family in FAMILIES:
        assert f"\n{family}:" in "\n" + r.output, family
    lines = r.output.splitlines()
    sgd = lines.index(next(ln for ln in lines if ln.startswith("  sgd  -- ")))
    assert "SGD on the mini-batch mean loss" in lines[sgd]
    keys = {ln.split()[0]: ln.split()[1:] for ln in lines[sgd + 1: sgd + 9]}
    assert keys["batch_size"] == ["1", "int"] and keys["momentum"] == ["0.0", "float"]
    for name in ("sparse_regression", "chebyshev", "diagonal_net", "relu_mlp", "piecewise", "cosine",
                 "sharpness", "batch_sharpness", "sharpness_edge", "pool", "slurm"):
        assert f"  {name}  --" in r.output, name
    # every kind of every config family, none without a description
    kinds = describe()
    for base, family in ((DataConfig, "data"), (ModelConfig, "model")):
        assert {k.name for k in kinds if k.family == family} == set(base.registry.names()) - {"external"}
    assert all(k.description for k in kinds if k.family != "metric" or "{" not in k.name), \
        [k.name for k in kinds if not k.description]


def test_kinds_executors_are_the_sweeps():
    from sgdlab.workflows.sweep import EXECUTORS

    assert [k.name for k in describe("executor")] == EXECUTORS.names()
    assert {"inprocess", "pool", "ray", "slurm"} <= set(EXECUTORS.names())


def test_kinds_lists_the_users_own_kinds_after_import(tmp_path):
    (tmp_path / "newcomer_kinds.py").write_text(textwrap.dedent('''
        import sgdlab

        @sgdlab.register_data("newcomer_blobs")
        def blobs(n: int = 50, spread: float = 0.5):
            """Two Gaussian blobs."""
            import numpy as np
            x = np.random.default_rng(0).standard_normal((n, 2)) * spread
            return {"x": x, "y": (x[:, 0] > 0).astype("int64")}

        @sgdlab.register_metric("newcomer_norm")
        def norm(model, params, data):
            """Euclidean norm of the parameters."""
            return sum((v.flatten(1) ** 2).sum(1) for v in params.values()).sqrt()
    '''))
    r = cli("kinds", "data", "--import", tmp_path / "newcomer_kinds.py")
    assert r.exit_code == 0, r.output
    assert "  newcomer_blobs  -- Two Gaussian blobs." in r.output
    assert any(ln.split() == ["spread", "0.5", "float"] for ln in r.output.splitlines())
    r = cli("kinds", "metric")
    assert "  newcomer_norm  -- Euclidean norm of the parameters." in r.output


def test_kinds_metric_for_an_experiment_lists_what_it_logs():
    r = cli("kinds", "metric", "--for", "diag-net")
    assert r.exit_code == 0, r.output
    assert "  l0  -- logged by this experiment" in r.output and "  jacobian_rank  --" in r.output
    assert cli("kinds", "nosuch").exit_code == 2


def test_format_kinds_is_one_line_per_kind_and_key():
    text = format_kinds(describe("schedule"))
    assert text.startswith("schedule:\n  constant  -- ")
    assert all(len(ln) < 200 for ln in text.splitlines())


# ----------------------------------------------------------------------------- the --keys advice

NEEDS_A_FILE = {"arrays": "path", "function": "function"}  # kinds whose key has no usable default


@pytest.mark.parametrize("experiment", catalog.list_experiments())
def test_the_keys_advice_works_on_every_bundled_config(experiment):
    r = cli("show", experiment, "--keys")
    advice = next(ln for ln in r.output.splitlines() if "--set data.kind=" in ln)
    assert "sgdlab show NAME --set data.kind=... --keys" in advice
    for family, base in (("data", DataConfig), ("model", ModelConfig)):
        for kind in base.registry.names():
            if kind == "external":
                continue
            r = cli("show", experiment, "--set", f"{family}.kind={kind}", "--keys")
            if kind in NEEDS_A_FILE:
                assert r.exit_code == 2 and NEEDS_A_FILE[kind] in r.output, (experiment, kind, r.output)
                continue
            assert r.exit_code == 0, (experiment, family, kind, r.output)
            assert f'{family}.kind' in r.output and f'"{kind}"' in r.output


def test_a_kind_switch_starts_from_the_new_kinds_defaults_whatever_the_order():
    cfg = catalog.load_experiment("diag-net")
    for sets in (["data.kind=chebyshev", "data.n=12"], ["data.n=12", "data.kind=chebyshev"]):
        got = catalog.override(cfg, sets).data
        assert got.kind == "chebyshev" and got.n == 12 and got.k == 4
    assert catalog.override(cfg, ["data.kind=sparse_regression"]).data == cfg.data  # same kind: kept
    opt = catalog.override(cfg, ["arms.0.optimizer.kind=gd"]).arms[0].optimizer
    assert opt.kind == "gd"


# ----------------------------------------------------------------------------- curvature names

def test_a_curvature_name_in_metrics_names_is_measured_or_names_its_key(tmp_path):
    small = ["--set", "data.n=20", "--set", "data.d=10", "--set", "data.r=2"]
    # sharpness without curvature tracking: the engine measures it with the Monitor's probe
    r = cli("run", "diag-net", "--out", tmp_path / "a", "--set", 'metrics.names=["train_loss", "sharpness"]',
            "--set", 'figure=["train_loss", "sharpness"]', *small, *TINY)
    assert r.exit_code == 0, r.output
    assert "sharpness (median [IQR])" in r.output
    r = cli("run", "diag-net", "--out", tmp_path / "b", "--set", 'metrics.names=["train_loss", "nosuch"]', *TINY)
    assert r.exit_code == 2 and "metrics.curvature.every" in r.output  # the allowed-names error mentions it
    r = cli("run", "diag-net", "--out", tmp_path / "c", "--set", 'metrics.names=["train_loss", "gni"]',
            "--set", "metrics.curvature.every=5", *TINY)
    assert r.exit_code == 2 and "metrics.batch.quantities" in r.output
    r = cli("run", "diag-net", "--out", tmp_path / "e", "--set", 'metrics.names=["train_loss", "gni"]', *TINY)
    assert r.exit_code == 2 and "metrics.batch.quantities" in r.output and "metrics.curvature.every" in r.output
    assert not any((tmp_path / d).exists() for d in "bce")
    r = cli("run", "diag-net", "--out", tmp_path / "d", "--set", 'metrics.names=["train_loss", "sharpness"]',
            "--set", "metrics.curvature.every=5", *small, "--set", 'figure=["train_loss", "sharpness"]', *TINY)
    assert r.exit_code == 0, r.output
    assert "sharpness (median [IQR])" in r.output


# ----------------------------------------------------------------------------- the end-of-run table

def test_the_end_of_run_table_shows_the_requested_metrics_for_every_model_family(tmp_path):
    r = cli("run", "linear2-exact-init", "--out", tmp_path / "lin", "--set",
            'metrics.names=["train_loss", "a1", "b1", "sharpness", "norm_sq", "imbalance"]', *TINY)
    assert r.exit_code == 0, r.output
    for m in ("a1", "b1", "sharpness", "norm_sq", "imbalance"):
        assert f"{m} (median [IQR])" in r.output, m
    r = cli("run", "relu-teacher-student", "--out", tmp_path / "relu", "--set",
            'metrics.names=["train_loss", "test_loss", "block1_sparsity", "block1_active", '
            '"jacobian_rank"]', *TINY)
    assert r.exit_code == 0, r.output
    for m in ("block1_sparsity", "block1_active", "jacobian_rank"):
        assert f"{m} (median [IQR])" in r.output, m
    assert "block1_active (median [IQR])" in cli("summary", tmp_path / "relu").output
    # classifiers: test_error is shown when asked for, and among the defaults
    cfg = sgdlab.override(catalog.load_experiment("deep-demo-digits"), ['metrics.names=["train_loss", "test_error"]'])
    assert table_columns(cfg)[:2] == ("train_loss", "test_error")
    summary = {"experiment": "x", "n_runs": 1, "steps": 1, "wall_seconds": 0.0, "arms": {"a": {
        "n_diverged": 0, "n_runs": 1, "final": {"train_loss": {"median": 0.1, "q25": 0.1, "q75": 0.1},
                                                "test_error": {"median": 0.2, "q25": 0.2, "q75": 0.2}}}}}
    assert "test_error (median [IQR])" in format_table(summary, table_columns(cfg))
    assert "test_error (median [IQR])" in format_table(summary)


# ----------------------------------------------------------------------------- relative paths

def test_relative_paths_are_read_relative_to_the_config_and_recorded_absolute(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 4))
    np.savez(project / "data" / "task.npz", x=x, y=x @ np.array([1.0, -1.0, 0.5, 0.0]))
    (project / "exp.toml").write_text(textwrap.dedent('''
        name = "paths"
        steps = 40
        seeds = 1
        [data]
        kind = "arrays"
        path = "data/task.npz"
        [model]
        kind = "linear"
        [eval]
        grid = "linear"
        points = 5
        [[arms]]
        name = "gd"
        optimizer = { kind = "gd" }
        schedule = { kind = "constant", lr = 0.1 }
    '''))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli("run", project / "exp.toml", "--out", "runs/a", "--no-progress").exit_code == 0
    recorded = (elsewhere / "runs/a/config.toml").read_text()
    assert f'path = "{project / "data" / "task.npz"}"' in recorded
    # the recorded config runs from any directory, and an init from the first run, given relative
    # to the config file that names it
    (project / "second.toml").write_text((project / "exp.toml").read_text().replace(
        'schedule = { kind = "constant", lr = 0.1 }',
        'schedule = { kind = "constant", lr = 0.1 }\ninit = { run = "../elsewhere/runs/a" }'))
    monkeypatch.chdir(tmp_path)
    r = cli("run", elsewhere / "runs/a/config.toml", "--out", "again", "--no-progress")
    assert r.exit_code == 0, r.output
    r = cli("run", project / "second.toml", "--out", "second", "--no-progress")
    assert r.exit_code == 0, r.output
    assert f'run = "{elsewhere / "runs" / "a"}"' in (tmp_path / "second/config.toml").read_text()
    a, b = sgdlab.load_run(elsewhere / "runs/a"), sgdlab.load_run(tmp_path / "again")
    np.testing.assert_array_equal(a.metrics["train_loss"], b.metrics["train_loss"])


# ----------------------------------------------------------------------------- sweep plots

def test_plot_of_a_chosen_sweep_metric_keeps_the_default_figures(tmp_path, monkeypatch):
    from sgdlab.plots import sweep as sweep_plots

    out = tmp_path / "sw"
    r = cli("sweep", "diag-net", "--grid", "arms.0.schedule.lr=0.1,0.2", "--out", out, "--steps", "300", "--seeds", "2",
            "--set", "data.n=20", "--set", "data.d=10", "--set", "data.r=2", "--set", "eval.grid='linear'",
            "--set", "eval.points=5")
    assert r.exit_code == 0, r.output
    figs = out / "figures"
    before = {p.name: p.read_bytes() for p in figs.iterdir()}
    assert {"final_vs_value.png", "over_training.png"} <= set(before)
    r = cli("plot", out, "-m", "l0")
    assert r.exit_code == 0, r.output
    assert {p.name for p in figs.iterdir()} - set(before) == {"final_vs_value-l0.png", "over_training-l0.png"}
    assert {p.name: p.read_bytes() for p in figs.iterdir() if p.name in before} == before
    # the default figure: train and test loss, then the experiment's own panels
    drawn = []
    monkeypatch.setattr(sweep_plots, "save_figure", lambda fig, path: drawn.append((path.name, fig)) or path)
    sweep_plots.plot_sweep(out)
    fig = dict(drawn)["final_vs_value.png"]
    titles = [ax.get_title() for ax in fig.axes]
    for m in ("train_loss", "test_loss", "jacobian_rank", "l0"):  # diag-net's figure panels
        assert any(METRIC_SPECS.label(m) in t for t in titles), (m, titles)


# ----------------------------------------------------------------------------- 2/eta_t

def test_the_sharpness_edge_threshold_follows_the_schedule(tmp_path, monkeypatch):
    from sgdlab.plots import curvature

    cfg = sgdlab.override(catalog.load_experiment("eos-chebyshev"), [
        "steps=200", "seeds=1", "eval.points=11", "model.hidden=[8]",
        ('arms=[{name = "decayed", optimizer = {kind = "gd"}, schedule = {kind = "piecewise", lr = 0.05, '
         'milestones = [0.5], factors = [4.0]}}]')])
    res = sgdlab.run(cfg, tmp_path / "r", progress=False, quiet=True)
    t, edge = curvature.threshold_curve(cfg.arms[0], cfg.steps, res.steps)
    eta = cfg.arms[0].step_size(cfg.steps)(t)
    np.testing.assert_allclose(edge, 2 / eta)
    assert edge[0] == pytest.approx(2 / 0.05) and edge[-1] == pytest.approx(2 / (0.05 / 4))
    drawn = []
    monkeypatch.setattr(curvature, "save_figure", lambda fig, path: drawn.append(fig) or path)
    from sgdlab.store.runs import RunDir

    curvature.sharpness_edge(RunDir(tmp_path / "r"))
    dashed = [ln for ln in drawn[0].axes[0].lines if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and set(np.round(dashed[0].get_ydata(), 6)) == {40.0, 160.0}


# ----------------------------------------------------------------------------- documented

def test_the_window_json_status_codes_are_documented():
    from pathlib import Path

    from sgdlab.workflows.window import STATUS_NAMES

    doc = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    for code, name in STATUS_NAMES.items():
        assert f"`{code}` {name}" in doc
    assert "`-1` not run" in doc
    json.dumps(STATUS_NAMES)
