"""Deep-net training speed of sgdlab's engine against a minimal hand-written PyTorch loop.

Both do the same work per step on synthetic CIFAR-shaped data (32x32x3 uint8 images resident
on the device, 10 classes): a batch gathered on the device, random crop (padding 4) + flip on
the device, uint8 -> float, forward + backward of ResNet-18 in train mode, SGD momentum 0.9 +
weight decay 5e-4 (the paper's SOTA step), with the same dtype / autocast / memory format /
torch.compile. The plain loop is ``torch.optim.SGD`` on an ``nn.Module`` (foreach update);
the engine is ``sgdlab.engine.train.Engine.advance_to`` (functional_call on stacked run state, per-run
(seed, step) augmentation draws, divergence check, its own update). Printed:

1. **Parity** (one run): engine images/s / plain images/s, target >= 0.95, for fp32 NCHW and
   each fast-path switch (channels_last, bf16 autocast, compile), and each switch's effect
   (images/s with it / without it) on both.
2. **Evaluation overhead** at the paper's cadence: one ``Engine.evaluate`` (train loss/error and
   block sparsity of every block on 10,000 training images + test loss/error on 10,000 test
   images) / the time of 200 training steps, target <= 15%. On CPU the evaluation is timed on
   ``--eval-images`` images per split and scaled linearly to 10,000 (say so in the table).
3. **Batched seeds**: R runs of one config as one vmap computation vs the loop over runs
   (images/s counts all R runs' images), and vs R plain loops one after another.

    python benchmarks/deep_gpu.py                    # CPU: width 8; CUDA (when present): width 64
    python benchmarks/deep_gpu.py --quick            # smoke run, seconds
    python benchmarks/deep_gpu.py --device cuda --compile --json out.json

Rates are medians (ratios: median and IQR of the per-round ratios) over ``--repeats`` timed blocks of ``--steps`` steps after warm-up steps
(allocations, cuDNN autotuning, compilation); the blocks of the compared runners alternate (in
alternating order), so a busy machine slows both alike. ``torch.backends.cudnn.benchmark`` is on for both.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F

from sgdlab.data.augment import CIFAR_CROP_PADDING, FLIP_PROBABILITY, crop_flip
from sgdlab.data.image_configs import SyntheticImages
from sgdlab.engine.train import Engine
from sgdlab.models.cifar import build_deep_model
from sgdlab.models.deep import DeepNetConfig
from sgdlab.optim.config import SGD
from sgdlab.optim.schedules import Constant
from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

PARITY_TARGET = 0.95  # issue 16: engine >= 0.95x the plain loop's images/s
EVAL_TARGET = 0.15  # issue 16: evaluation <= 15% of training time
EVAL_EVERY = 200  # the paper's evaluation frequency (iterations)
PAPER_EVAL_IMAGES = 10_000  # per split
CLASSES = 10
SIDE = 32  # CIFAR images
SECTIONS = ("parity", "eval", "seeds", "profile")
PROFILE_ROWS = 15  # operators listed by the profile section
LR, MOMENTUM, WD = 0.01, 0.9, 5e-4  # the SOTA step; timing does not depend on the values
THROUGHPUT_EVAL_IMAGES = 256  # engine runs timed for speed evaluate only their initial loss
# Fast-path variants: (label, DeepNetConfig keys); compile is added with --compile or on CUDA.
VARIANTS = [("fp32 NCHW", {}), ("channels_last", {"channels_last": True}), ("bf16 autocast", {"autocast": "bf16"})]
COMPILE_VARIANT = ("compile", {"compile": "default"})
# Settings per device / mode: width, batch, training images, timed steps, warm-up steps, R, eval images.
PRESETS = {
    "cuda": {"width": 64, "batch": 256, "n_train": 50_000, "steps": 20, "warmup": 5, "seeds": 4,
             "eval_images": PAPER_EVAL_IMAGES},
    "cpu": {"width": 8, "batch": 256, "n_train": 2048, "steps": 1, "warmup": 1, "seeds": 2, "eval_images": 1000},
    "quick": {"width": 2, "batch": 32, "n_train": 256, "steps": 2, "warmup": 1, "seeds": 2, "eval_images": 64},
}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# Clocks: wall time (GPU runs) or this process's CPU time (CPU runs: on a machine shared with
# other jobs it counts only our own work; with PASSIVE OpenMP waiting, idle threads cost nothing).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["wall"]


def timed(fn, device: str) -> float:
    sync(device)
    t0 = CLOCK()
    fn()
    sync(device)
    return CLOCK() - t0


def paired(a, device: str, runners: list) -> list[np.ndarray]:
    """Images/s of each (block, images) runner per round: timed blocks interleaved over
    ``a.repeats`` rounds, in alternating order (1 2, 2 1, 1 2, ...: what runs first in a round was
    measured to gain or lose a few percent), so that all see the same machine load."""
    rates = [[] for _ in runners]
    for i in range(a.repeats):
        order = range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))
        for k in order:
            block, images = runners[k]
            rates[k].append(images / timed(block, device))
    return [np.asarray(r) for r in rates]


def ratio(num: np.ndarray, den: np.ndarray) -> dict:
    """Median and IQR over rounds of the per-round ratio num / den."""
    q = np.percentile(num / den, [25, 50, 75])
    return {"ratio": float(q[1]), "iqr": [float(q[0]), float(q[2])]}


def config(a, device: str, seeds: int, n_eval: int, **deep) -> ExperimentConfig:
    data = SyntheticImages(n_train=max(a.n_train, a.batch, n_eval), n_test=n_eval, channels=3, size=a.side,
                           num_classes=CLASSES, augment=True, seed=0)
    return ExperimentConfig(
        name="bench-deep-gpu", data=data,
        model=DeepNetConfig(name=a.model, width=a.width, eval_train=n_eval, sparsity_examples=n_eval, **deep),
        arms=(ArmConfig("sota", SGD(a.batch, momentum=MOMENTUM, weight_decay=WD), Constant(LR)),),
        steps=10**9, seeds=seeds, eval=EvalConfig("linear", 2), dtype="float32", device=device)


def engine_runner(a, device: str, seeds: int = 1, **deep):
    """(a block of a.steps engine steps, the images it trains on: all runs' images count), warm."""
    eng = Engine(config(a, device, seeds, THROUGHPUT_EVAL_IMAGES, **deep))
    state = eng.initial_state()
    eng.advance_to(state, a.warmup)
    return (lambda: eng.advance_to(state, state.step + a.steps)), seeds * a.batch * a.steps


def plain_runner(a, device: str, channels_last=False, autocast="none", compile="none"):
    """The reference: a hand-written loop doing the engine's work on one model; warm."""
    data = config(a, device, 1, THROUGHPUT_EVAL_IMAGES).data.build()
    x, y = data.x_train.to(device), data.y_train.to(device)
    net = build_deep_model(a.model, num_classes=CLASSES, width=a.width,
                           generator=torch.Generator().manual_seed(0)).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt).train()
    model = net if compile == "none" else torch.compile(net, mode=None if compile == "default" else compile)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    gen = torch.Generator(device=device).manual_seed(0)
    ac = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if autocast == "bf16"
          else torch.autocast(torch.device(device).type, enabled=False))
    b, pad = a.batch, CIFAR_CROP_PADDING

    def step():
        idx = torch.randint(0, len(x), (b,), device=device, generator=gen)
        off = torch.randint(0, 2 * pad + 1, (2, b), device=device, generator=gen)
        flip = torch.rand(b, device=device, generator=gen) < FLIP_PROBABILITY
        xb = crop_flip(x[idx], off, flip, pad).float().div_(255).contiguous(memory_format=fmt)
        with ac:
            loss = F.cross_entropy(model(xb).float(), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def block():
        for _ in range(a.steps):
            step()

    for _ in range(a.warmup):
        step()
    return block, b * a.steps


def eval_overhead(a, device: str, step_s: float) -> dict:
    n = a.eval_images
    eng = Engine(config(a, device, 1, n))
    state = eng.initial_state()  # its train-loss pass warms up the evaluation path
    eng.advance_to(state, 1)
    s = timed(lambda: eng.evaluate(state), device) * PAPER_EVAL_IMAGES / n
    return {"eval_s": s, "train_200_s": EVAL_EVERY * step_s, "ratio": s / (EVAL_EVERY * step_s),
            "scaled_from": n if n != PAPER_EVAL_IMAGES else None}


def verdict(value: float, target: float, at_least: bool) -> str:
    ok = value >= target if at_least else value <= target
    gap = abs(value - target) / target
    return f"met ({gap:+.1%} margin)" if ok else f"MISSED by {gap:.1%}"


def variant_row(a, device: str, label: str, deep: dict) -> dict:
    try:
        plain, eng = paired(a, device, [plain_runner(a, device, **deep), engine_runner(a, device, **deep)])
    except Exception as e:  # one failing switch (e.g. compile) must not lose the other rows
        if not deep:
            raise
        print(f"  {label:14s} FAILED: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        return {"variant": label, "error": f"{type(e).__name__}: {e}"[:500]}
    row = {"variant": label, "engine": float(np.median(eng)), "plain": float(np.median(plain)), **ratio(eng, plain)}
    print(f"  {label:14s} engine {row['engine']:9.1f} img/s   plain {row['plain']:9.1f} img/s   {row['ratio']:.3f}x",
          flush=True)
    return row


def op_profile(a, device: str) -> list[dict]:
    """Per operator: time per step in the plain loop and in the engine (fp32 NCHW), from the
    torch profiler over ``a.repeats`` alternating blocks; host time, and device time on CUDA."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    runners = {"plain": plain_runner(a, device)[0], "engine": engine_runner(a, device)[0]}
    tot: dict = {k: {} for k in runners}
    for i in range(a.repeats):
        for k in (("plain", "engine") if i % 2 == 0 else ("engine", "plain")):
            with profile(activities=acts) as prof:
                runners[k]()
                sync(device)
            for e in prof.key_averages():
                host, dev = tot[k].get(e.key, (0.0, 0.0))
                tot[k][e.key] = (host + e.self_cpu_time_total, dev + getattr(e, "self_device_time_total", 0.0))
    per_step = 1e3 * a.repeats * a.steps  # microseconds summed over blocks -> ms per step
    rows = [{"op": op, **{f"{k}_{w}_ms": tot[k].get(op, (0.0, 0.0))[j] / per_step for k in runners
                          for j, w in enumerate(("host", "device"))}} for op in set(tot["plain"]) | set(tot["engine"])]
    key = "device" if device.startswith("cuda") else "host"
    rows.sort(key=lambda r: -abs(r[f"engine_{key}_ms"] - r[f"plain_{key}_ms"]))
    for k in runners:
        print(f"  profile        {k}: {sum(r[f'{k}_{key}_ms'] for r in rows):.1f} ms {key} operator time per step")
    return rows


def run(a, save=lambda res: None) -> dict:
    """The measurements of ``a.sections``; ``save(partial results)`` after each (a time limit
    keeps what was done). torch.compile comes last: its compilation is the slowest and most
    fragile part."""
    device = a.device
    res: dict = {"rows": []}
    if "parity" in a.sections:
        for label, deep in VARIANTS:
            res["rows"].append(variant_row(a, device, label, deep))
            save(res)
    if "eval" in a.sections:
        engine_rate = res["rows"][0]["engine"] if res["rows"] else paired(a, device, [engine_runner(a, device)])[0]
        res["eval"] = ev = eval_overhead(a, device, a.batch / float(np.median(engine_rate)))
        print(f"  evaluation     {ev['eval_s']:.2f} s per evaluation, {ev['ratio']:.1%} of {EVAL_EVERY} steps",
              flush=True)
        save(res)
    if "seeds" in a.sections:
        R = a.seeds
        vec, loop = paired(a, device, [engine_runner(a, device, seeds=R),
                                       engine_runner(a, device, seeds=R, vectorize=False)])
        res["seeds"] = {"R": R, "vmap": float(np.median(vec)), "loop": float(np.median(loop)),
                        "plain": res["rows"][0]["plain"] if res["rows"] else None, **ratio(vec, loop)}
        print(f"  R = {R} seeds    vmap {res['seeds']['vmap']:9.1f} img/s   loop {res['seeds']['loop']:9.1f} img/s",
              flush=True)
        save(res)
    if "profile" in a.sections:
        res["profile"] = op_profile(a, device)
        save(res)
    if "parity" in a.sections and a.compile:
        res["rows"].append(variant_row(a, device, *COMPILE_VARIANT))
        save(res)
    return res


def report(a, res: dict) -> None:
    dev = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"\n{a.model} width {a.width}, batch {a.batch}, float32, SGD momentum {MOMENTUM} + wd {WD} + crop/flip, "
          f"synthetic {a.side}x{a.side}x3 data on the device; {dev}; torch {torch.__version__}; "
          f"median of {a.repeats} x {a.steps} steps after {a.warmup} warm-up; {a.clock} clock")
    if res["rows"]:
        print(f"\n{'variant':16s} {'engine img/s':>12s} {'plain img/s':>12s} {'engine/plain [IQR]':>22s}  "
              f"{'target >= ' + str(PARITY_TARGET):20s} {'effect: engine':>14s} {'plain':>6s}")
        base = res["rows"][0]
        for r in res["rows"]:
            if "error" in r:
                print(f"{r['variant']:16s} failed: {r['error'][:150]}")
                continue
            eff = (f"{r['engine'] / base['engine']:13.2f}x {r['plain'] / base['plain']:5.2f}x"
                   if r is not base else f"{'(reference)':>14s} {'':>6s}")
            rr = f"{r['ratio']:.3f}x [{r['iqr'][0]:.2f}-{r['iqr'][1]:.2f}]"
            print(f"{r['variant']:16s} {r['engine']:12.1f} {r['plain']:12.1f} {rr:>22s}  "
                  f"{verdict(r['ratio'], PARITY_TARGET, True):20s} {eff}")
    if "eval" in res:
        ev = res["eval"]
        note = f" (timed on {ev['scaled_from']} images/split, scaled to {PAPER_EVAL_IMAGES})" if ev["scaled_from"] else ""
        print(f"\nevaluation every {EVAL_EVERY} steps: {ev['eval_s']:.2f} s vs {ev['train_200_s']:.1f} s of training = "
              f"{ev['ratio']:.1%}, target <= {EVAL_TARGET:.0%}: {verdict(ev['ratio'], EVAL_TARGET, False)}{note}")
    if "seeds" in res:
        s = res["seeds"]
        vs_plain = (f"; vs {s['R']} plain loops one after another ({s['plain']:.1f} img/s): "
                    f"{s['vmap'] / s['plain']:.2f}x" if s["plain"] else "")
        print(f"\nbatched seeds, R = {s['R']} runs of one config: vmap {s['vmap']:.1f} img/s, loop over runs "
              f"{s['loop']:.1f} img/s: vmap/loop = {s['ratio']:.2f}x [IQR {s['iqr'][0]:.2f}-{s['iqr'][1]:.2f}]"
              + vs_plain)
    if "profile" in res:
        key = "device" if a.device.startswith("cuda") else "host"
        print(f"\noperators with the largest engine - plain difference ({key} time, ms per step"
              + ("; host time of the engine / plain in brackets):" if key == "device" else "):"))
        for r in res["profile"][:PROFILE_ROWS]:
            print(f"  {r['op'][:48]:48s} engine {r[f'engine_{key}_ms']:9.3f}  plain {r[f'plain_{key}_ms']:9.3f}"
                  + (f"  [{r['engine_host_ms']:.3f} / {r['plain_host_ms']:.3f}]" if key == "device" else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda[:i]")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (width 2, batch 32)")
    ap.add_argument("--sections", default="parity,eval,seeds",
                    help=f"comma-separated, of {', '.join(SECTIONS)} (profile: per-operator engine vs plain)")
    ap.add_argument("--model", default="resnet18", help="a name of sgdlab.models.cifar.DEEP_MODELS")
    ap.add_argument("--side", type=int, default=SIDE, help="image side (synthetic images side x side x 3)")
    for k in ("width", "batch", "n_train", "steps", "warmup", "seeds", "eval_images"):
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=None, help="override the device preset")
    ap.add_argument("--repeats", type=int, default=None, help="timed blocks per measurement (median)")
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                    help="add torch.compile rows (default: on CUDA only; minutes of compilation on CPU)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--clock", choices=sorted(CLOCKS), default=None,
                    help="wall (default on CUDA) or cpu: this process's CPU time (default on CPU)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)
    a.sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    bad = sorted(set(a.sections) - set(SECTIONS))
    if bad:
        ap.error(f"unknown section {bad[0]!r}; allowed: {', '.join(SECTIONS)}")
    torch.set_num_threads(a.threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    preset = PRESETS["quick" if a.quick else ("cuda" if a.device.startswith("cuda") else "cpu")]
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.repeats = a.repeats or (1 if a.quick else 6)  # even: each runner goes first equally often
    a.clock = a.clock or ("wall" if a.device.startswith("cuda") else "cpu")
    global CLOCK
    CLOCK = CLOCKS[a.clock]
    if a.compile is None:
        a.compile = a.device.startswith("cuda") and not a.quick
    torch.backends.cudnn.benchmark = True
    print(f"deep_gpu: device {a.device}, {a.model} width {a.width}, batch {a.batch}, R = {a.seeds}, "
          f"sections {','.join(a.sections)}", flush=True)
    meta = {"settings": {k: v for k, v in vars(a).items() if k != "json"}, "torch": torch.__version__,
            "device_name": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu",
            "date": time.strftime("%Y-%m-%d")}

    def save(res):
        if a.json:
            with open(a.json, "w") as f:
                json.dump({**meta, **res}, f, indent=1)

    res = run(a, save)
    report(a, res)
    return res


if __name__ == "__main__":
    main()
