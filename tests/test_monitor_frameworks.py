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
from sgdlab.store.runs import RunDir
from sgdlab.workflows.monitor import Monitor

QUICK = ProbeSettings(max_batches=12, min_batches=4, trace_samples=4)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def _bare_and_watched(build, steps: int):
    """Train twice from the same seed, without and with a Monitor: ``(params without, params with,
    the monitor)``. ``build(monitored)`` returns ``(model, step, monitor or None)``; ``step(t)`` is
    one training step; the monitor measures before each step and once more at close."""
    out = []
    for monitored in (False, True):
        torch.manual_seed(0)
        model, step, mon = build(monitored)
        for t in range(steps):
            if mon is not None:
                mon.step()
            step(t)
        if mon is not None:
            mon.close()
        out.append((_params(model), mon))
    return out[0][0], out[1][0], out[1][1]


def _tokens(n=32, t=8, vocab=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, t), generator=g)


# --------------------------------------------------------------------------- plain loops

def _warmup_cosine(steps, warm):
    return lambda t: t / warm if t < warm else 0.5 * (1 + math.cos(math.pi * (t - warm) / (steps - warm)))


def test_plain_loop_with_warmup_from_zero_and_cosine_decay_to_zero(tmp_path):
    steps = 12

    def build(monitored):
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        g = torch.Generator().manual_seed(1)
        x, y = torch.randn(160, 6, generator=g), torch.randint(0, 3, (160,), generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(steps, 3))
        mon = Monitor(model, F.cross_entropy, (x, y), opt, out=tmp_path / "plain", batch_size=16, strict=True,
                      metrics={"sharpness": 3, "threshold": 1, "batch_sharpness": 6},
                      settings=QUICK) if monitored else None

        def step(t):
            opt.zero_grad()
            F.cross_entropy(model(x[16 * (t % 10):16 * (t % 10) + 16]), y[16 * (t % 10):16 * (t % 10) + 16]).backward()
            opt.step()
            sched.step()
        return model, step, mon

    bare, watched, mon = _bare_and_watched(build, steps)
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

    def build(monitored):
        model = _encoder()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        mon = Monitor(model, F.cross_entropy, (x, y), opt, every=2, strict=True, settings=QUICK,
                      metrics=["sharpness", "preconditioned_sharpness", "threshold"]) if monitored else None

        def step(t):
            model.train()
            opt.zero_grad()
            F.cross_entropy(model(x[:8]), y[:8]).backward()
            opt.step()
        return model, step, mon

    bare, watched, mon = _bare_and_watched(build, 6)
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

    def build(monitored):
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        cmodel = torch.compile(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        mon = Monitor(cmodel, F.cross_entropy, (x, y), opt, every=2, strict=True) if monitored else None

        def step(t):
            opt.zero_grad()
            F.cross_entropy(cmodel(x[:8]), y[:8]).backward()
            opt.step()
        return model, step, mon

    bare, watched, mon = _bare_and_watched(build, 4)
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


# --------------------------------------------------------------------------- adaptive optimizers

def _dense_preconditioned(model, x, y, opt, kind):
    """lambda_max(P^-1 (H + wd I)) from the optimizer's state, brute force in float64."""
    from sgdlab.metrics.curvature import dense_hessian

    h = dense_hessian(model, F.mse_loss, (x, y))
    scale, decay = [], []
    for g in opt.param_groups:
        for p in g["params"]:
            st = opt.state[p]
            if kind == "rmsprop":
                root = st["square_avg"].sqrt()
                wd = g["weight_decay"]
                c = 2 + 2 * g["momentum"]
            else:
                b1, b2 = g["betas"]
                root = (st["exp_avg_sq"] / (1 - b2 ** float(st["step"]))).sqrt()
                wd = g["weight_decay"] if kind == "adam" else 0.0
                c = (2 + 2 * b1) / (1 - b1)
            scale.append((g["lr"] / c) / (root.reshape(-1) + g["eps"]))
            decay.append(torch.full((p.numel(),), float(wd), dtype=torch.float64))
    s, w = torch.cat(scale), torch.cat(decay)
    s_ref = max(g["lr"] / ((2 + 2 * g["momentum"]) if kind == "rmsprop" else (2 + 2 * g["betas"][0]) / (1 - g["betas"][0]))
                for g in opt.param_groups)
    s = s / s_ref  # relative to the group with the largest lr / c (the reduction of sgdlab.metrics.adaptive)
    a = torch.diag(s.sqrt()) @ (h + torch.diag(w)) @ torch.diag(s.sqrt())
    return float(torch.linalg.eigvalsh(a)[-1]), 1.0 / s_ref


@pytest.mark.parametrize("kind", ["adam", "adamw", "rmsprop"])
def test_preconditioned_sharpness_equals_dense_float64(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 2)).double()
    x, y = torch.randn(24, 3, dtype=torch.float64), torch.randn(24, 2, dtype=torch.float64)
    groups = [{"params": model[0].parameters(), "lr": 0.01, "weight_decay": 0.1},  # per-group lr and decay
              {"params": model[2].parameters(), "lr": 0.03, "weight_decay": 0.0}]
    opt = {"adam": lambda: torch.optim.Adam(groups, betas=(0.9, 0.99)),
           "adamw": lambda: torch.optim.AdamW(groups, betas=(0.8, 0.999)),
           "rmsprop": lambda: torch.optim.RMSprop(groups, momentum=0.5)}[kind]()
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    m = Monitor(model, F.mse_loss, (x, y), opt, strict=True, metrics=["preconditioned_sharpness", "threshold"],
                settings=ProbeSettings(tol=1e-10)).step()
    want, edge = _dense_preconditioned(model, x, y, opt, kind)
    assert m["preconditioned_sharpness"] == pytest.approx(want, rel=1e-9)
    assert m["threshold"] == pytest.approx(edge, rel=1e-12) and math.isfinite(m["threshold"])


# --------------------------------------------------------------------------- where the values go

def test_log_to_a_summary_writer_and_a_wandb_like_run(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    class FakeRun:  # the part of wandb.Run the Monitor uses
        def __init__(self):
            self.logged = []

        def log(self, data, step=None):
            self.logged.append((step, dict(data)))

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(40, 4), torch.randn(40, 1)
    writer, run = SummaryWriter(str(tmp_path / "tb")), FakeRun()
    mon = Monitor(model, F.mse_loss, (x, y), every=2, log_to=[writer, run])
    for _ in range(4):
        mon.step()
    mon.close()
    writer.close()
    # step 3 (not due) is the final state: close() measures it
    assert [s for s, _ in run.logged] == [0, 2, 3] and "sgdlab/sharpness" in run.logged[0][1]
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("sgdlab/sharpness")] == [0, 2, 3]


def test_plain_resume_continues_one_record(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = torch.randn(40, 4), torch.randn(40, 1)
    out = tmp_path / "r"
    mon = Monitor(model, F.mse_loss, (x, y), out=out, every=2)
    for t in range(7):
        mon.step(t)
    mon.close(6)  # the "crash": rows 0, 2, 4, 6
    mon = Monitor(model, F.mse_loss, (x, y), out=out, every=2, resume=True)  # back from a checkpoint at step 4
    for t in range(4, 9):
        mon.step(t)
    mon.close(8)
    steps, _ = RunDir(out).metrics()
    assert steps.tolist() == [0, 2, 4, 6, 8] and RunDir(out).complete()
    assert [t for t, _ in mon.history] == [0, 2, 4, 6, 8]


# --------------------------------------------------------------------------- Lightning

def _lightning_fit(L, tmp_path, callbacks, max_steps, loggers=False, ckpt_path=None, checkpoint_dir=None):
    from torch.utils.data import DataLoader, TensorDataset

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _idx):
            return F.cross_entropy(self(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(160, 6, generator=g), torch.randint(0, 3, (160,), generator=g)
    net = Net()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    extra = []
    if checkpoint_dir is not None:
        from lightning.pytorch.callbacks import ModelCheckpoint
        extra = [ModelCheckpoint(dirpath=checkpoint_dir, every_n_train_steps=4, save_top_k=-1)]
    L.Trainer(max_steps=max_steps, callbacks=callbacks + extra, accelerator="cpu", logger=loggers,
              enable_checkpointing=checkpoint_dir is not None, enable_progress_bar=False,
              enable_model_summary=False).fit(net, loader, ckpt_path=ckpt_path)
    return net, (x, y)


def test_lightning_logs_to_every_logger(tmp_path):
    L = pytest.importorskip("lightning")
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sgdlab.frontends.integrations.lightning import MonitorCallback

    plain, (x, y) = _lightning_fit(L, tmp_path, [], 8)
    csv, tb = CSVLogger(str(tmp_path / "csv")), TensorBoardLogger(str(tmp_path / "tb"))
    cb = MonitorCallback(F.cross_entropy, (x, y), out=tmp_path / "lit", metrics={"sharpness": 4, "threshold": 4})
    watched, _ = _lightning_fit(L, tmp_path, [cb], 8, loggers=[csv, tb])
    assert _same(_params(plain), _params(watched))
    import csv as csvmod
    with open(csv.log_dir + "/metrics.csv") as f:
        rows = [r for r in csvmod.DictReader(f) if r.get("sgdlab/sharpness")]
    assert [int(r["step"]) for r in rows] == [0, 4, 8]
    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    assert [e.step for e in acc.Scalars("sgdlab/sharpness")] == [0, 4, 8]


def test_lightning_restart_from_checkpoint_continues_one_record(tmp_path):
    L = pytest.importorskip("lightning")
    from sgdlab.frontends.integrations.lightning import MonitorCallback

    kw = {"out": tmp_path / "lit", "metrics": {"sharpness": 2, "threshold": 2}}
    _, (x, y) = _lightning_fit(L, tmp_path, [MonitorCallback(F.cross_entropy, _data_for_lightning(), **kw)], 5,
                               checkpoint_dir=tmp_path / "ck")
    steps, _ = RunDir(tmp_path / "lit").metrics()
    assert steps.tolist() == [0, 2, 4, 5]  # the first job's record, its final state included
    ckpt = str(tmp_path / "ck" / "epoch=0-step=4.ckpt")
    resumed, _ = _lightning_fit(L, tmp_path, [MonitorCallback(F.cross_entropy, (x, y), **kw)], 8, ckpt_path=ckpt)
    plain, _ = _lightning_fit(L, tmp_path, [], 8, ckpt_path=ckpt)
    assert _same(_params(plain), _params(resumed))
    rd = RunDir(tmp_path / "lit")
    steps, m = rd.metrics()
    assert steps.tolist() == [0, 2, 4, 6, 8] and np.isfinite(m["sharpness"]).all()  # row 5 of the first job dropped
    assert rd.complete() and rd.summary()["monitor_seconds"] > 0


def _data_for_lightning():
    g = torch.Generator().manual_seed(0)
    return torch.randn(160, 6, generator=g), torch.randint(0, 3, (160,), generator=g)


# --------------------------------------------------------------------------- Hugging Face

def test_hf_gpt2_with_sdpa_adamw_linear_schedule_logs_through_report_to(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from sgdlab.frontends.integrations.hf import MonitorCallback

    ids = _tokens(n=48, t=8, vocab=32)

    def lm_loss(out, labels):  # what GPT2LMHeadModel computes with labels=: next-token cross-entropy
        logits = out.logits[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))

    def fit(callbacks, name):
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=1, n_head=2)
        model = GPT2LMHeadModel(cfg)
        assert model.config._attn_implementation == "sdpa"
        args = TrainingArguments(str(tmp_path / name), max_steps=6, per_device_train_batch_size=8, learning_rate=1e-2,
                                 warmup_steps=2, use_cpu=True, report_to=["tensorboard"], save_strategy="no",
                                 logging_steps=3, disable_tqdm=True, seed=3)  # AdamW, linear schedule to 0
        Trainer(model=model, args=args, train_dataset=[{"input_ids": a, "labels": a} for a in ids],
                callbacks=callbacks).train()
        return model

    plain = fit([], "plain")
    cb = MonitorCallback(lm_loss, (ids, ids), out=tmp_path / "mon", strict=True,
                         metrics={"sharpness": 3, "preconditioned_sharpness": 3, "threshold": 1})
    watched = fit([cb], "watched")
    assert _same(_params(plain), _params(watched))
    steps, m = RunDir(tmp_path / "mon").metrics()
    assert steps.tolist() == list(range(7))
    assert m["threshold"][0, 0] != m["threshold"][0, 0] or m["lr"][0, 0] == 0  # warm-up from 0: inf (null on disk)
    assert np.isnan(m["threshold"][-1, 0]) and m["lr"][-1, 0] == 0.0  # the linear schedule ends at 0
    assert np.isfinite(m["sharpness"][::3, 0]).all() and np.isfinite(m["preconditioned_sharpness"][3::3, 0]).all()
    files = list((tmp_path / "watched").rglob("events.out.tfevents*"))
    tags = set()
    for f in files:
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert "train/sgdlab/sharpness" in tags and "train/sgdlab/preconditioned_sharpness" in tags, tags
