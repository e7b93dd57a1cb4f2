"""The probe of an experiment's own products (sgdlab.workflows.shard_probe): where the BLAS fails
the generic probe, a torch-path run is spread only if its own steps and metrics give every run
the same bits in pieces of its groups; the verdict is checked against whole sharded runs."""

import json

import numpy as np
import pytest
import torch
from shard_helpers import relu

import sgdlab
from sgdlab.core._torch import torch as lazy_torch
from sgdlab.engine.train import Engine
from sgdlab.workflows import cores, shard_probe
from sgdlab.workflows.cores import choose
from sgdlab.workflows.shard_pieces import spread_order
from sgdlab.workflows.shard_probe import experiment_invariance

pytestmark = pytest.mark.study("relu_nets")

GENERIC = "this machine's BLAS gives a run other last bits (test)"


def _by_batch(monkeypatch):
    """torch.matmul one ulp off where an odd number of runs share a product (as a BLAS computing
    a last, partial tile with other code is off for some runs): the runs are the rows of a 2-D
    product and the batch of a 3-D one. The generic probe as it is."""
    real = torch.matmul

    def by_batch(a, b):
        out = real(a, b)
        runs = out.shape[0] if out.dim() == 3 else out.shape[-2]
        return torch.nextafter(out, torch.full_like(out, torch.inf)) if runs % 2 else out

    monkeypatch.setattr(torch, "matmul", by_batch)
    lazy_torch.matmul  # noqa: B018 - the stand-in the models use holds torch's names once loaded: patched there too
    monkeypatch.setattr(lazy_torch, "matmul", by_batch)
    monkeypatch.setattr(cores, "blas_batch_invariance", cores.blas_batch_invariance.__wrapped__)


def test_pieces_are_the_sizes_a_split_can_make():
    for n in (4, 8, 13):
        pieces = shard_probe._pieces(n)
        order = list(spread_order(n))
        assert {len(p) for p in pieces} == set(range(2, n - 1))
        for p in pieces:  # a first or last stretch of the split order
            m = len(p)
            assert sorted(order[:m]) == list(p) or sorted(order[-m:]) == list(p)
    sizes = shard_probe._sizes(500)
    assert len(sizes) <= shard_probe.MAX_SIZES and sizes[:8] == list(range(2, 10)) and sizes[-1] == 498
    assert shard_probe._pieces(3) == []  # no piece leaves 2 runs to the other side


def test_probe_finds_a_product_that_depends_on_the_batch(monkeypatch):
    """Negative control: with products one ulp off for odd row counts, the probe names what
    differs, and the run stays in one process giving both reasons."""
    eng = Engine(relu())  # one group of 12 runs
    _by_batch(monkeypatch)
    why = experiment_invariance(eng, eng.initial_state())
    assert why is not None and "differs in a piece of the runs" in why and "runs of a group, first step at 0" in why
    problem = cores.blas_batch_invariance()
    assert problem is not None
    par = choose(eng.cfg, eng.n_runs, 2, probe=lambda: experiment_invariance(eng, eng.initial_state()))
    assert par.workers == 1 and problem in par.reason and why in par.reason


def test_probe_leaves_the_engine_and_state_as_they_were():
    eng = Engine(relu("seeds=6"))
    state = eng.initial_state()
    before = [{k: v.clone() for k, v in p.items()} for p in state.params]
    seconds = eng.group_seconds.copy()
    experiment_invariance(eng, state)
    assert state.step == 0 and all(torch.equal(p[k], b[k]) for p, b in zip(state.params, before) for k in b)
    assert np.array_equal(eng.group_seconds, seconds) and (state.diverged < 0).all()


def test_a_probe_that_raises_keeps_one_process(monkeypatch):
    """A metric failing on a piece (not on the whole batch) must not stop the run: it stays in
    one process and the line says why."""
    eng = Engine(relu())
    real = eng.model.metrics

    def needs_many_runs(params, *a, **k):
        if next(iter(params.values())).shape[0] < len(eng.runs):
            raise ValueError("needs every run")
        return real(params, *a, **k)

    monkeypatch.setattr(eng.model, "metrics", needs_many_runs)
    why = experiment_invariance(eng, eng.initial_state())
    assert why == "probing it raised ValueError: needs every run"


def test_evaluation_with_state_is_not_probed():
    eng = Engine(relu("metrics.curvature.every=2", "metrics.names=['train_loss','sharpness']"))
    assert "keeps state between steps" in experiment_invariance(eng, eng.initial_state())


def test_a_users_metric_is_not_run_ahead_of_the_training():
    """A metric of the user's may count its calls: the probe does not call it."""
    from sgdlab.metrics.probes import PROBES
    from sgdlab.metrics.registry import METRIC_SPECS

    calls = []
    name = "test_shard_probe_counted"
    sgdlab.register_metric(name)(lambda model, params, data: calls.append(1) or params["W1"].sum((1, 2)))
    try:
        eng = Engine(relu(f"metrics.names=['train_loss','{name}']"))
        why = experiment_invariance(eng, eng.initial_state())
        assert why is not None and name in why and "not run ahead of the training" in why and not calls
    finally:
        METRIC_SPECS.remove(name)
        PROBES._items.pop(name, None)


def test_probe_is_asked_only_where_the_generic_probe_fails(monkeypatch):
    def never():
        raise AssertionError("probed")

    cfg = relu()
    monkeypatch.setattr(cores, "blas_batch_invariance", lambda: None)
    assert choose(cfg, 12, 2, probe=never).workers == 2
    monkeypatch.setattr(cores, "blas_batch_invariance", lambda: GENERIC)
    assert choose(cfg, 12, 1, probe=never).workers == 1
    assert choose(cfg, 12, 2, invariant=True, probe=never).workers == 2
    monkeypatch.setattr(cores, "blas_reproducible", lambda: False)  # alignment decides: no probe can tell
    assert choose(cfg, 12, 2, probe=never).workers == 1
    monkeypatch.setattr(cores, "blas_reproducible", lambda: True)
    par = choose(cfg, 12, 2, probe=lambda: None)
    assert par.workers == 2 and GENERIC in par.reason and "probed in" in par.reason


def test_the_verdict_holds_for_whole_sharded_runs(tmp_path, monkeypatch):
    """Brute force: where the probe passes, a run spread over 2 and 3 processes (re-cut as it goes)
    writes the bytes of one process; where it fails, the run stays in one process. The generic
    probe is made to fail, as on a BLAS with partial-tile code."""
    cfg = relu("seeds=8", "steps=400")
    eng = Engine(cfg)
    verdict = experiment_invariance(eng, eng.initial_state())
    monkeypatch.setattr(cores, "blas_batch_invariance", lambda: GENERIC)
    one = sgdlab.run(cfg, tmp_path / "one", progress=False, quiet=True, workers=1)
    for k in (2, 3):
        sgdlab.run(cfg, tmp_path / f"k{k}", progress=False, quiet=True, workers=k)
        meta = json.loads((tmp_path / f"k{k}" / "meta.json").read_text())
        if verdict is None:
            assert meta.get("workers") == k
            assert (tmp_path / f"k{k}" / "metrics.jsonl").read_bytes() == (one.path / "metrics.jsonl").read_bytes()
        else:
            assert meta.get("workers", 1) == 1
