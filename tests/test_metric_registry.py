"""One metric vocabulary: a registered metric in the engine and the Monitor, a Monitor probe in the
engine, one name per quantity (old names mapped with a deprecation message, old run directories
still read), the nested metrics config (old flat keys mapped), labels and log scales from the
registry."""

import json
import math
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import sgdlab
from sgdlab.core.config import dump_toml, from_dict, load_toml_table, override, to_dict
from sgdlab.core.errors import ConfigError, SgdlabDeprecationWarning
from sgdlab.engine.train import Engine, train
from sgdlab.frontends.cli import main
from sgdlab.metrics.config import MetricsConfig
from sgdlab.metrics.probes import PROBES
from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.plots.panels import plot_panels
from sgdlab.spec.catalog import load_experiment
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.store.runs import RunDir
from sgdlab.store.summary import format_table
from sgdlab.workflows.monitor import Monitor

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "eos", "deep_nets")

DT = torch.float64
NAME = "test_registry_weight_sq"


@pytest.fixture
def weight_sq():
    """A user metric, registered for this test only: sum of squares of the trainable weights."""

    @sgdlab.register_metric(NAME, label="Σθ²", log_scale=True)
    def fn(model, params, data):
        return sum((v.flatten(1) ** 2).sum(1) for k, v in params.items() if k in model.trainable(params))

    yield fn
    METRIC_SPECS.remove(NAME)
    PROBES._items.pop(NAME, None)


def _mlp_cfg(**kw) -> ExperimentConfig:
    return from_dict(ExperimentConfig, {
        "name": "reg", "steps": 20, "seeds": 2,
        "data": {"kind": "chebyshev", "k": 3, "n": 12},
        "model": {"kind": "relu_mlp", "hidden": [6], "biases": [True, False], "loss": "half_mse",
                  "init": "gaussian", "init_scales": [1.0, 0.5], "bias_init": "torch_uniform"},
        "arms": [{"name": "GD", "optimizer": {"kind": "gd"}, "schedule": {"kind": "constant", "lr": 0.05}}],
        "eval": {"grid": "linear", "points": 3}, **kw})


def test_a_registered_metric_is_logged_by_the_engine_and_the_monitor(tmp_path, weight_sq):
    # the engine: in metrics.jsonl, one value per run = the brute-force sum over the run's weights
    res = sgdlab.run(_mlp_cfg(metrics={"names": ["train_loss", NAME]}, figure=["train_loss", NAME]),
                     tmp_path / "engine", progress=False, quiet=True)
    rows = [json.loads(line) for line in (res.path / "metrics.jsonl").read_text().splitlines()]
    assert all(NAME in r for r in rows)
    eng = Engine(res.config)
    _, params = RunDir(res.path).final_params()
    for r, p in params.items():
        want = sum(float((v.double() ** 2).sum()) for k, v in p.items() if k in eng.model.trainable(p))
        assert rows[-1][NAME][r] == pytest.approx(want, rel=1e-12)

    # the Monitor: the same function on the user's module (R = 1), in its run directory's record
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1)).to(DT)
    x, y = torch.randn(16, 3, dtype=DT), torch.randn(16, 1, dtype=DT)
    before = [p.detach().clone() for p in model.parameters()]
    mon = Monitor(model, nn.functional.mse_loss, (x, y), metrics=[NAME], every=1, out=tmp_path / "monitor")
    m = mon.step()
    mon.close()
    want = sum(float((p.detach() ** 2).sum()) for p in model.parameters())
    assert m[NAME] == pytest.approx(want, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    rows = [json.loads(line) for line in (tmp_path / "monitor" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0][NAME] == [pytest.approx(want, rel=1e-12)]
    # label and log scale from its spec
    assert METRIC_SPECS.label(NAME) == "Σθ²" and METRIC_SPECS.log_scale(NAME)


def test_a_monitor_probe_is_logged_by_the_engine():
    """metrics.names = ["sharpness"] on a model that does not log it: the Monitor's probe on every run
    equals the dense Hessian of the least-squares loss, X^T X / n (float64)."""
    cfg = from_dict(ExperimentConfig, {
        "name": "lin", "steps": 10, "seeds": 2, "data": {"kind": "sparse_regression", "n": 20, "d": 6, "r": 2},
        "model": {"kind": "linear", "init_scale": 1.0}, "eval": {"grid": "linear", "points": 2},
        "arms": [{"name": "SGD", "optimizer": {"kind": "sgd", "batch_size": 4},
                  "schedule": {"kind": "constant", "lr": 0.01}}],
        "metrics": {"names": ["train_loss", "sharpness"], "curvature": {"tol": 1e-10}}})
    eng, _state, m = train(cfg)
    x = eng.data.x_train.double()
    top = float(torch.linalg.eigvalsh(x.T @ x / len(x))[-1])
    assert m["sharpness"].shape == (2, 2)
    np.testing.assert_allclose(m["sharpness"], top, rtol=1e-8)
    assert "hessian_eig2" in m and "dist_opt" not in m
    with pytest.raises(ConfigError, match="reads a torch optimizer"):
        Engine(override(cfg, ["metrics.names=['train_loss', 'threshold']"]))


def test_unknown_metric_names_list_the_registry():
    with pytest.raises(ConfigError, match=r"metrics.names: unknown metric 'nosuch'; allowed: .*block1_sparsity"):
        Engine(_mlp_cfg(metrics={"names": ["nosuch"]})).check_names()


def test_old_metric_names_in_configs_are_mapped_with_a_deprecation_message():
    with pytest.warns(SgdlabDeprecationWarning, match="'feature_sparsity_l1' -> 'block1_sparsity'"):
        cfg = _mlp_cfg(metrics={"names": ["train_loss", "feature_sparsity_l1", "positive_fraction_l1"]},
                       figure=["train_loss", "positive_fraction_l1"])
    assert cfg.metrics.names == ("train_loss", "block1_sparsity", "block1_active")
    assert cfg.figure == ("train_loss", "block1_active")
    Engine(cfg).check_names()


def test_old_flat_metrics_keys_load_with_a_deprecation_message(tmp_path):
    nested = load_experiment("eoss-small")
    flat = {k: v for k, v in to_dict(nested.metrics).items() if k == "names"}
    flat.update(curvature_every=1, curvature_k=2, batch_curvature=["batch_sharpness", "gni"], batch_rse_tol=0.02,
                batch_max_batches=300)
    with pytest.warns(SgdlabDeprecationWarning, match="curvature_every -> curvature.every"):
        old = from_dict(ExperimentConfig, {**to_dict(nested), "metrics": flat})
    assert old == nested
    with pytest.warns(SgdlabDeprecationWarning):
        set_flat = override(nested, ["metrics.curvature_every=7", "metrics.sparsity_tau=0.5"])
    assert set_flat.metrics.curvature.every == 7 and set_flat.metrics.thresholds.sparsity_tau == 0.5
    assert set_flat.metrics.batch == nested.metrics.batch
    with pytest.warns(SgdlabDeprecationWarning):
        flat_cfg = MetricsConfig(curvature_every=3)
    assert flat_cfg.curvature.every == 3
    with pytest.warns(SgdlabDeprecationWarning):
        assert flat_cfg.curvature_every == 3
    # the CLI: one warning line, the run resolved with the nested key
    toml = tmp_path / "old.toml"
    toml.write_text(dump_toml(load_experiment("eoss-small")).replace("[metrics.curvature]\nevery = 1",
                                                                     "[metrics.curvature]"))
    text = toml.read_text().replace("[metrics]\n", "[metrics]\ncurvature_every = 4\n")
    toml.write_text(text)
    out = CliRunner().invoke(main, ["show", str(toml)])
    assert out.exit_code == 0, out.output
    assert "warning: metrics: deprecated flat keys, use the nested ones: curvature_every -> curvature.every" in out.output
    assert "[metrics.curvature]\nevery = 4" in out.output


def test_a_run_directory_written_with_the_old_names_still_plots_and_summarizes(tmp_path):
    """metrics.jsonl / summary.json with feature_sparsity_l1 and a config.toml with flat metrics keys
    and old figure names, as an earlier release wrote them: read with the current names."""
    res = sgdlab.run(_mlp_cfg(figure=["train_loss", "block1_sparsity"]), tmp_path / "r", progress=False, quiet=True)
    rd = RunDir(res.path)
    old = {"block1_sparsity": "feature_sparsity_l1", "block1_active": "positive_fraction_l1",
           "block1_merged": "merged_l1", "block1_dead": "dead_l1"}
    rename = lambda d: {old.get(k, k): v for k, v in d.items()}
    lines = [json.dumps(rename(json.loads(line))) for line in (rd.path / "metrics.jsonl").read_text().splitlines()]
    (rd.path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    summary = json.loads((rd.path / "summary.json").read_text())
    for entry in [*summary["runs"], *summary["arms"].values()]:
        entry["final"] = rename(entry["final"])
    (rd.path / "summary.json").write_text(json.dumps(summary))
    table = load_toml_table(rd.path / "config.toml")
    table["figure"] = ["train_loss", "feature_sparsity_l1"]
    table["metrics"] = {"names": [], "curvature_every": 0, "curvature_k": 2, "sparsity_tau": 0.99,
                        "l0_threshold": 1e-50, "batch_curvature": []}
    import tomli_w

    (rd.path / "config.toml").write_text(tomli_w.dumps(table))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SgdlabDeprecationWarning)
        cfg = rd.config()
        _, m = rd.metrics()
        files = plot_panels(rd)
        s = rd.summary()
    assert cfg.figure == ("train_loss", "block1_sparsity") and cfg.metrics.thresholds.sparsity_tau == 0.99
    np.testing.assert_array_equal(m["block1_sparsity"], res.metrics["block1_sparsity"])
    assert "feature_sparsity_l1" not in m and files and files[0].exists()
    assert s["arms"]["GD"]["final"]["block1_sparsity"]["median"] is not None
    assert "train_loss (median [IQR])" in format_table(s)
    out = CliRunner().invoke(main, ["summary", str(rd.path)])
    assert out.exit_code == 0, out.output


def test_one_name_per_quantity_across_families():
    """relu_mlp hidden layer l, the image MLP's block l and the Monitor's layer share one family of
    names: <layer>_sparsity / <layer>_active."""
    eng = Engine(_mlp_cfg())
    names = set(eng.metric_names())
    assert {"block1_sparsity", "block1_active", "block1_merged", "block1_dead"} <= names
    assert not any(n.startswith(("feature_sparsity", "positive_fraction")) for n in names)
    for n in names:
        assert METRIC_SPECS.spec(n) is not None, n
    for n in ("block4_sparsity", "features.3_sparsity", "ema_block1_active", "hessian_eig3", "threshold"):
        assert METRIC_SPECS.spec(n) is not None, n
    assert METRIC_SPECS.label("hessian_eig3") == "λ3"
    assert METRIC_SPECS.label("feature_sparsity_l2") == "block2 feature sparsity"
    assert METRIC_SPECS.log_scale("ema_train_loss") and not METRIC_SPECS.log_scale("jacobian_rank")
    assert METRIC_SPECS.table_names()[:4] == ["train_loss", "test_loss", "test_error", "jacobian_rank"]
    assert math.isfinite(eng.cfg.metrics.thresholds.sparsity_tau)


@pytest.mark.parametrize("experiment", ["diag-net", "label-noise-diag-net-phases", "linear2-large-step", "replacement-quadratic",
                                        "support-identification-relu", "eoss-small", "relu-3layer", "deep-demo-digits"])
def test_every_metric_a_bundled_experiment_logs_has_a_spec(experiment):
    cfg = load_experiment(experiment)
    eng = Engine(override(cfg, ["seeds=1", "steps=4"]))
    missing = [n for n in eng.metric_names() if METRIC_SPECS.spec(n) is None]
    assert not missing, f"{experiment}: no MetricSpec for {missing} (add them to sgdlab/metrics/vocabulary.py)"


def test_resuming_a_run_written_with_the_old_names_gives_one_set_of_names(tmp_path):
    cfg = override(_mlp_cfg(steps=40), ["checkpoint_seconds=1e-9", "eval.points=9"])
    full = sgdlab.run(cfg, tmp_path / "a", progress=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(cfg, tmp_path / "b", progress=False, quiet=True, _stop_after=20)
    path = tmp_path / "b" / "metrics.jsonl"
    old = {"block1_sparsity": "feature_sparsity_l1", "block1_active": "positive_fraction_l1"}
    lines = [json.dumps({old.get(k, k): v for k, v in json.loads(line).items()})
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    res = sgdlab.resume(tmp_path / "b", progress=False, quiet=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == set(rows[0]) for r in rows) and "block1_sparsity" in rows[0]
    for k in full.metrics:
        np.testing.assert_array_equal(res.metrics[k], full.metrics[k])
