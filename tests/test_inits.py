"""Exact initial points (arms.N.init from a file or a run directory, matched run by run) and
reading parameters back (RunResult.params / snapshots), with the errors for mismatches."""

import numpy as np
import pytest
import torch

import sgdlab
from sgdlab.core.errors import ConfigError
from sgdlab.store.runs import RunDir

pytestmark = pytest.mark.study("diag_net")

SETS = ["steps=2000", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'",
        "eval.points=10", "snapshots=2"]


def cfg(*more):
    return sgdlab.override(sgdlab.load_experiment("diag-net"), SETS + list(more))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("src") / "r"
    return sgdlab.run(cfg(), out, progress=False, quiet=True)


def test_params_at_saved_steps_from_disk_and_in_memory(source):
    assert source.saved_steps == [0, 667, 1333, 2000]
    p = source.params()
    assert p["u"].shape == (9, 30)  # every run, in run order
    mem = sgdlab.run(cfg(), None, progress=False, quiet=True)
    assert mem.saved_steps == source.saved_steps
    for t in source.saved_steps:
        assert torch.equal(mem.params(t)["v"], source.params(t)["v"])
    assert torch.equal(source.params(667, run=3)["u"], source.params(667)["u"][3])
    with pytest.raises(ConfigError, match="saved steps: \\[0, 667, 1333, 2000\\]"):
        source.params(5)
    # snapshots are written in parts (one file per checkpoint), not one synced file per step
    assert len(list((source.path / "snapshots").glob("*.pt"))) < len(source.saved_steps)


def test_init_from_a_run_continues_it_exactly(source, tmp_path):
    """Running 1333 steps from the source's step-667 parameters, with the schedule shifted, is the
    source's own continuation for a constant-step deterministic arm (GD), and starts from exactly
    the source's parameters for every (arm, seed)."""
    at = f"{{run='{source.path}', step=667}}"
    c = cfg(f"arms.0.init={at}", f"arms.4.init={at}", "steps=1333")
    res = sgdlab.run(c, None, progress=False, quiet=True)
    for arm in ("SGD eta=0.25", "GD eta=1.0"):
        got, want = res.params(0)["u"][res.arm(arm)], source.params(667)["u"][source.arm(arm)]
        assert torch.equal(got, want.expand_as(got))  # GD ran once in the source: it serves every seed
    gd_then = res.params(1333)["u"][res.arm("GD eta=1.0")]
    want = source.params(2000)["u"][source.arm("GD eta=1.0")].expand_as(gd_then)
    np.testing.assert_allclose(gd_then.numpy(), want.numpy(), rtol=1e-9, atol=1e-12)


def test_init_from_a_file_shared_or_per_seed(tmp_path):
    torch.save({"u": torch.full((30,), 0.7, dtype=torch.float64), "v": torch.full((30,), 0.7, dtype=torch.float64)},
               tmp_path / "shared.pt")
    np.savez(tmp_path / "per_seed.npz", u=np.stack([np.full(30, 0.3), np.full(30, 0.6)]),
             v=np.stack([np.full(30, 0.3), np.full(30, 0.6)]))
    res = sgdlab.run(cfg(f"arms.4.init={{file='{tmp_path / 'shared.pt'}'}}",
                         f"arms.0.init={{file='{tmp_path / 'per_seed.npz'}'}}"), None, progress=False, quiet=True)
    gd = res.arm("GD eta=1.0")
    assert len(gd) == 2  # an arm with an init runs every seed
    assert torch.all(res.params(0)["v"][gd] == 0.7)
    sgd = res.params(0)["u"][res.arm("SGD eta=0.25")]
    assert torch.all(sgd[0] == 0.3) and torch.all(sgd[1] == 0.6)


def test_init_mismatches_are_one_clear_error(source, tmp_path):
    torch.save({"u": torch.zeros(31), "v": torch.zeros(30)}, tmp_path / "bad.pt")
    torch.save({"u": torch.zeros(30)}, tmp_path / "partial.pt")
    cases = [
        (f"arms.0.init={{run='{source.path}', step=7}}", "saved steps: [0, 667, 1333, 2000]"),
        (f"arms.0.init={{run='{source.path}', arm='nope'}}", "has no arm 'nope'; its arms"),
        (f"arms.0.init={{file='{tmp_path / 'missing.pt'}'}}", "does not exist"),
        (f"arms.0.init={{file='{tmp_path / 'bad.pt'}'}}", "has shape (31,); expected (30,)"),
        (f"arms.0.init={{file='{tmp_path / 'partial.pt'}'}}", "lacks ['v']"),
        ("arms.0.init={file='x.pt', run='y'}", "exactly one of"),
    ]
    for bad, needle in cases:
        with pytest.raises(ConfigError) as e:
            sgdlab.run(cfg(bad), tmp_path / "never", progress=False, quiet=True)
        assert needle in str(e.value), (bad, str(e.value))
    with pytest.raises(ConfigError, match="no run of arm 'SGD eta=0.25' with seed 2; its seeds: \\[0, 1\\]"):
        sgdlab.run(cfg("seeds=3", f"arms.0.init={{run='{source.path}'}}"), None, progress=False, quiet=True)
    assert not (tmp_path / "never").exists()  # refused before the run directory was made


def test_a_resumed_run_with_an_init_equals_the_uninterrupted_one(source, tmp_path):
    c = cfg(f"arms.0.init={{run='{source.path}', step=1333}}", "checkpoint_seconds=1e-9")
    full = sgdlab.run(c, tmp_path / "a", progress=False, quiet=True)
    with pytest.raises(KeyboardInterrupt):
        sgdlab.run(c, tmp_path / "b", progress=False, quiet=True, _stop_after=900)
    res = sgdlab.resume(tmp_path / "b", progress=False, quiet=True)
    np.testing.assert_array_equal(res.metrics["test_loss"], full.metrics["test_loss"])
    assert RunDir(tmp_path / "b").config().arms[0].init.step == 1333
