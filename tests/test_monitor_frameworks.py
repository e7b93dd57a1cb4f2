"""The Monitor inside ordinary training code: step sizes that reach 0, PyTorch's default (SDPA)
attention, AdamW, torch.compile, Lightning's and the HF Trainer's loggers, restarts from a
checkpoint. Each run trains to the end and bit for bit as without the Monitor."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sgdlab.metrics.probes import ProbeSettings
from sgdlab.monitor import Monitor
from sgdlab.runs import RunDir

QUICK = ProbeSettings(max_batches=12, min_batches=4, trace_samples=4)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _tokens(n=32, t=8, vocab=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, t), generator=g)


# --------------------------------------------------------------------------- plain loops

def _warmup_cosine(steps, warm):
    return lambda t: t / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (steps - warm)))


def test_plain_loop_with_warmup_from_zero_and_cosine_decay_to_zero(tmp_path):
    steps = 12

    def run(monitored):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(160, 6, generator=g), torch.randint(0, 3, (160,), generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(steps, 3))
        mon = Monitor(model, F.cross_entropy, (x, y), opt, out=tmp_path / "plain", batch_size=16, strict=True,
                      metrics={"sharpness": 3, "threshold": 1, "batch_sharpness": 6},
                      settings=QUICK) if monitored else None
        for t in range(steps):
            if mon is not None:
                mon.step()
            opt.zero_grad()
            F.cross_entropy(model(x[16 * (t % 10):16 * (t % 10) + 16]), y[16 * (t % 10):16 * (t % 10) + 16]).backward()
            opt.step()
            sched.step()
        if mon is not None:
            mon.close()
        return _params(model), mon

    bare, _ = run(False)
    watched, mon = run(True)
    assert _same(bare, watched)
    steps_, m = mon.metrics()
    assert steps_.tolist() == list(range(steps + 1))  # every step, and the final state at close()
    assert m["lr"][0] == 0.0 and m["threshold"][0] == math.inf  # warm-up from 0: nothing can be unstable
    assert m["lr"][-1] == pytest.approx(0.0, abs=1e-12) and m["threshold"][-1] > 1e10  # cosine to (nearly) 0
    assert np.isfinite(m["sharpness"][-1]) and np.isfinite(m["batch_sharpness"][-1])  # all metrics at the end
    rd = RunDir(tmp_path / "plain")
    assert rd.complete() and np.isnan(rd.metrics()[1]["threshold"][0, 0])  # JSON has no inf: null on disk


def _encoder():
    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 16)
            self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1, batch_first=True)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.layer(self.emb(x)).mean(1))
    return Enc()


def test_transformer_encoder_layer_with_adamw_and_default_attention():
    x = _tokens()
    y = x[:, 0] % 3

    def run(monitored):
        torch.manual_seed(0)
        model = _encoder()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        mon = Monitor(model, F.cross_entropy, (x, y), opt, every=2, strict=True, settings=QUICK,
                      metrics=["sharpness", "preconditioned_sharpness", "threshold"]) if monitored else None
        for t in range(6):
            if mon is not None:
                mon.step()
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x[:8]), y[:8]).backward()
            opt.step()
        if mon is not None:
            mon.close()
        return _params(model), mon

    bare, _ = run(False)
    watched, mon = run(True)
    assert _same(bare, watched)
    _, m = mon.metrics()
    assert np.isfinite(m["sharpness"]).all()
    assert np.isnan(m["preconditioned_sharpness"][0]) and np.isfinite(m["preconditioned_sharpness"][1:]).all()
    assert m["threshold"][1] == pytest.approx(38 / 1e-2)


def test_compiled_model_is_measured_through_its_original_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1)).double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)

    class Compiled(nn.Module):  # what torch.compile returns, without compiling (fast): _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

        def forward(self, *a):
            raise AssertionError("the wrapper's forward must not be measured")

    a = Monitor(Compiled(model), F.mse_loss, (x, y), strict=True, settings=ProbeSettings(tol=1e-10)).step()
    b = Monitor(model, F.mse_loss, (x, y), strict=True, settings=ProbeSettings(tol=1e-10)).step()
    assert a["sharpness"] == pytest.approx(b["sharpness"], rel=1e-12)


@pytest.mark.slow
def test_torch_compile_model_trains_bit_for_bit():
    x = torch.randn(32, 6)
    y = torch.randint(0, 3, (32,))

    def run(monitored):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        cmodel = torch.compile(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = Monitor(cmodel, F.cross_entropy, (x, y), opt, every=2, strict=True) if monitored else None
        for _ in range(4):
            if mon is not None:
                mon.step()
            opt.zero_grad()
            F.cross_entropy(cmodel(x[:8]), y[:8]).backward()
            opt.step()
        if mon is not None:
            mon.close()
        return _params(model), mon

    bare, _ = run(False)
    watched, mon = run(True)
    assert _same(bare, watched) and np.isfinite(mon.metrics()[1]["sharpness"]).all()


def test_a_failing_metric_warns_once_records_nan_and_strict_raises():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(40, 4), torch.randn(40, 1)
    calls = {"n": 0}

    def loss(out, t):
        calls["n"] += 1
        if calls["n"] > 1:  # the first call (the check at construction) passes
            raise RuntimeError("boom in the user's loss")
        return F.mse_loss(out, t)

    mon = Monitor(model, loss, (x, y), every=1, metrics=["sharpness"])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(3):
            mon.step()
    msgs = [str(e.message) for e in w if "failed" in str(e.message)]
    assert len(msgs) == 1 and "boom in the user's loss" in msgs[0] and "RuntimeError" in msgs[0]
    assert all(math.isnan(r["sharpness"]) for _, r in mon.history)
    calls["n"] = 0
    strict = Monitor(model, loss, (x, y), every=1, metrics=["sharpness"], strict=True)
    with pytest.raises(RuntimeError, match="boom"):
        strict.step()


# --------------------------------------------------------------------------- error bars

def test_batch_estimates_log_standard_error_and_converged_flag():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(200, 4, generator=g), torch.randn(200, 1, generator=g)
    loose = Monitor(model, F.mse_loss, (x, y), batch_size=8, metrics=["batch_sharpness", "gni", "trace"],
                    settings=ProbeSettings(rse_tol=0.5, max_batches=50, trace_samples=8, trace_rse_tol=0.99)).step()
    tight = Monitor(model, F.mse_loss, (x, y), batch_size=8, metrics=["batch_sharpness"],
                    settings=ProbeSettings(rse_tol=1e-6, max_batches=12)).step()
    assert loose["batch_sharpness_converged"] == 1.0 and loose["batch_draws"] < 50
    assert 0 < loose["batch_sharpness_stderr"] < 0.5 * loose["batch_sharpness"]
    assert loose["gni_stderr"] > 0 and loose["gni_converged"] == 1.0
    assert loose["trace_stderr"] > 0 and loose["trace_converged"] == 1.0
    assert tight["batch_sharpness_converged"] == 0.0 and tight["batch_draws"] == 12
    full = Monitor(model, F.mse_loss, (x, y), batch_size=200, metrics=["batch_sharpness"]).step()
    assert full["batch_sharpness_stderr"] == 0.0 and full["batch_sharpness_converged"] == 1.0  # exact


def test_small_measurement_set_warns_with_the_variance_it_keeps():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(128, 4), torch.randn(128, 1)
    with pytest.warns(RuntimeWarning, match=r"128 examples, 4.0 batches of 32: .* 76% of the gradient noise"):
        Monitor(model, F.mse_loss, (x, y), batch_size=32, metrics=["batch_sharpness"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Monitor(model, F.mse_loss, (x, y), batch_size=8, metrics=["batch_sharpness"])  # 16 batches: fine
