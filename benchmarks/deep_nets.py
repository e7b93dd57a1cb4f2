"""Deep-net training on the engine and the cost of the paper's evaluation, from whole processes.

ResNet-18 (CIFAR layout, 32x32x3 inputs, 10 classes), batch 256, SGD momentum 0.9 + weight decay
5e-4 + crop/flip augmentation (the paper's SOTA step), float32, random images (SyntheticImages:
the speed does not depend on the pixels). The evaluation is what the bundled CIFAR configs log:
train loss/error and the feature sparsity of every block on ``--eval-images`` training images,
test loss/error on as many test images (the paper: 10,000 each, every 200 iterations).

Three processes per width (``python -m sgdlab run CONFIG``, each repeated ``--repeats``
times, medians): P0 = 1 step, P1 = S steps, both evaluated at the start and the end only, and
P2 = S steps evaluated also at S/2. Then

    one training step = (P1 - P0) / (S - 1)          (S >= 50: whole steps, no warm-up effects)
    one evaluation    = P2 - P1
    overhead          = evaluation / (200 training steps),     target <= 15% (issue 13).

The evaluation is scaled to 10,000 images per split when ``--eval-images`` is smaller (forward
passes and the sparsity's correlation matrices are linear in the number of images); the table
says so.

    python benchmarks/deep_nets.py                       # width 8, S = 60, 10k eval images, 3 repeats
    python benchmarks/deep_nets.py --widths 64 --eval-images 1000   # the paper's width (hours on CPU)
    python benchmarks/deep_nets.py --quick               # width 4, S = 50, 2000 eval images
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc import bench_env, machine_line, med, python, repeat, spread, verdict

BATCH = 256  # the paper's batch size
EVAL_EVERY = 200  # the paper's evaluation period (iterations)
PAPER_EVAL_IMAGES = 10_000  # per split
TARGET = 0.15  # evaluation <= 15% of training time
MIN_STEPS = 50  # the minimum number of measured steps
LR = 0.01  # any small step: the timing does not depend on it


def config(width: int, n_eval: int, steps: int, evals: int, device: str) -> str:
    from sgdlab.core.config import dump_toml
    from sgdlab.data.image_configs import SyntheticImages
    from sgdlab.models.deep import DeepNetConfig
    from sgdlab.optim.config import SGD
    from sgdlab.optim.schedules import Constant
    from sgdlab.spec.experiment import ArmConfig, EvalConfig, ExperimentConfig

    # n_train >= one batch: the sampler draws batches of BATCH distinct images.
    data = SyntheticImages(n_train=max(n_eval, BATCH), n_test=n_eval, channels=3, size=32, num_classes=10,
                           augment=True, seed=0)
    cfg = ExperimentConfig(
        name="bench-deep", data=data,
        model=DeepNetConfig(name="resnet18", width=width, eval_train=n_eval, sparsity_examples=n_eval),
        arms=(ArmConfig("sota", SGD(BATCH, momentum=0.9, weight_decay=5e-4), Constant(LR)),),
        steps=steps, seeds=1, eval=EvalConfig("linear", evals), dtype="float32", device=device)
    return dump_toml(cfg)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="width 4, 2000 evaluation images per split")
    ap.add_argument("--widths", type=int, nargs="+", help="default 8 (quick: 4)")
    ap.add_argument("--steps", type=int, default=60, help=f"S, training steps of P1/P2 (>= {MIN_STEPS} for the verdict)")
    ap.add_argument("--eval-images", type=int, help=f"per split (default {PAPER_EVAL_IMAGES}; quick 2000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch/BLAS threads of every process")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    widths = a.widths or ([4] if a.quick else [8])
    n_eval = a.eval_images or (2000 if a.quick else PAPER_EVAL_IMAGES)
    S = a.steps
    env = bench_env(a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        for w in widths:
            files = {}
            for key, steps, evals in (("p0", 1, 2), ("p1", S, 2), ("p2", S, 3)):
                files[key] = tmp / f"{key}-w{w}.toml"
                files[key].write_text(config(w, n_eval, steps, evals, a.device))
            t = {k: repeat(python("-m", "sgdlab", "--threads", str(a.threads), "run", str(f), "--out",
                                  str(tmp / "out"), "--overwrite", "--no-progress"), env, a.repeats)
                 for k, f in files.items()}
            step = (med(t["p1"]) - med(t["p0"])) / (S - 1)
            ev = (med(t["p2"]) - med(t["p1"])) * PAPER_EVAL_IMAGES / n_eval
            rows.append((w, t, step, ev, ev / (EVAL_EVERY * step)))

    print(f"ResNet-18, batch {BATCH}, float32, SGD momentum + wd + crop/flip, device {a.device}; S = {S} steps; "
          f"evaluation on {n_eval} train + {n_eval} test images{'' if n_eval == PAPER_EVAL_IMAGES else ' (scaled to 10k)'}")
    print(machine_line(a.threads))
    print(f"\n{'width':>5} {'P0: 1 step, 2 evals':>24} {f'P1: {S} steps, 2 evals':>24} {f'P2: {S} steps, 3 evals':>24}  "
          "(CPU s median [min, max])")
    for w, t, *_ in rows:
        print(f"{w:>5} {spread(t['p0']):>24} {spread(t['p1']):>24} {spread(t['p2']):>24}")
    print(f"\n{'width':>5} {'step (s)':>9} {'images/s':>9} {'eval (s)':>9} {'200 steps (s)':>13} {'eval/train':>10}")
    for w, _t, step, ev, ratio in rows:
        note = "" if S >= MIN_STEPS else f"  (only {S} steps measured: below the issue's {MIN_STEPS})"
        print(f"{w:>5} {step:9.3f} {BATCH / step:9.1f} {ev:9.2f} {EVAL_EVERY * step:13.1f} {ratio:9.1%}  "
              f"[target <= {TARGET:.0%}: {verdict(ratio * 100, TARGET * 100, False, '%')}]{note}")


if __name__ == "__main__":
    main()
