"""The authors'-style reference for benchmarks/diag_net.py: one process, NumPy + matplotlib only.

Does what a user of the authors' code does for the diag-net figure, for the first ``--runs`` runs
of the experiment in sgdlab's order (arms x seeds): the data drawn as the authors (legacy
``RandomState(0)``), per run a Python loop of batch-1 SGD with replacement (``diag_nets.SGD``
style, a scalar step size divided at the milestone), and at every evaluation step of the authors'
grid the train and test loss, ||u*v||_0 (|beta_j| > 1e-50) and rank phi (phi = [X*v, X*u] on 2d
test inputs, a full SVD, singular value / largest > 1e-15); then the 4-panel figure (median and
interquartile band per arm) saved as PNG. Prints one JSON line of component timings.

    python benchmarks/diag_net_reference.py --runs 2 --steps 100001 --out /tmp/ref.png
"""

from __future__ import annotations

import argparse
import json
import time

T_START = time.perf_counter()

import numpy as np

# The default diag-net experiment (sgdlab/studies/diag_net/experiments/diag-net.toml), in sgdlab's run order.
N, D, R_SUPPORT, N_TEST, DATA_SEED = 80, 200, 20, 1000, 0
ARMS = [("SGD eta=0.25", 0.25, None, None), ("SGD eta=0.282 /4.8 at 10%", 0.282, 0.1, 4.8),
        ("SGD eta=0.282 /3.4 at 30%", 0.282, 0.3, 3.4), ("SGD eta=0.282 /1.5 at 50%", 0.282, 0.5, 1.5)]
SEEDS = 8
L0_THRESHOLD, RANK_RTOL = 1e-50, 1e-15


def data():
    rng = np.random.RandomState(DATA_SEED)
    x = rng.multivariate_normal(np.zeros(D), np.eye(D), N)
    x_test = rng.multivariate_normal(np.zeros(D), np.eye(D), N_TEST)
    beta = rng.standard_normal(D)
    beta[R_SUPPORT:] = 0
    beta = np.abs(beta) / np.linalg.norm(beta)
    return x, x @ beta, x_test, x_test @ beta


def eval_steps(T, points=250, head=100):
    s = np.round(np.linspace(0, T - 1, points))
    return np.unique(np.concatenate([s, np.arange(min(head, T)), [0, T]]).astype(int))


def sgd_run(x, y, xt, yt, lr0, milestone, factor, T, evals, seed):
    """One run, the authors' way; metrics (train, test, l0, rank) at the eval steps."""
    u, v = 0.1 * np.ones(D), np.zeros(D)
    rng = np.random.default_rng(seed)
    x_rank = xt[: 2 * D]
    lr, drop = lr0, (int(milestone * T) if milestone is not None else -1)
    out, t_svd = [], 0.0
    for i in range(T + 1):
        if i in evals:
            beta = u * v
            t0 = time.perf_counter()
            sv = np.linalg.svd(np.hstack([x_rank * u, x_rank * v]), compute_uv=False)
            t_svd += time.perf_counter() - t0
            out.append((np.linalg.norm(x @ beta - y) ** 2 / (2 * N), np.linalg.norm(xt @ beta - yt) ** 2 / (2 * N_TEST),
                        float((sv / sv[0] > RANK_RTOL).sum()), float((np.abs(beta) > L0_THRESHOLD).sum())))
        if i == T:
            break
        if i == drop:
            lr = lr / factor
        i_t = rng.integers(N)
        err = x[i_t] @ (u * v) - y[i_t]
        xe = err * x[i_t]
        u, v = u - lr * xe * v, v - lr * xe * u
    return np.array(out), t_svd


def figure(results, steps, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["train loss", "test loss", "rank", "l0"]  # sgdlab's panel order
    fig, axes = plt.subplots(1, 4, figsize=(16.8, 3.4), layout="constrained")
    for k, (arm, runs) in enumerate(results.items()):
        vals = np.stack(runs, axis=2)  # (E, 4, seeds)
        for j, ax in enumerate(axes):
            lo, med, hi = np.nanpercentile(vals[:, j], [25, 50, 75], axis=1)
            ax.plot(steps, med, color=f"C{k}", label=arm)
            ax.fill_between(steps, lo, hi, color=f"C{k}", alpha=0.2, lw=0)
    for j, ax in enumerate(axes):
        ax.set_title(names[j])
        ax.set_yscale("log" if j < 2 else "linear")
    axes[0].legend(fontsize=7)
    fig.savefig(path, dpi=130)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1, help="first RUNS runs of the experiment (arm-major)")
    ap.add_argument("--steps", type=int, default=100001)
    ap.add_argument("--points", type=int, default=250, help="authors' grid: evenly spaced points")
    ap.add_argument("--head", type=int, default=100, help="authors' grid: every step below this")
    ap.add_argument("--out", default="reference.png")
    a = ap.parse_args(argv)
    t_import = time.perf_counter() - T_START
    t0 = time.perf_counter()
    x, y, xt, yt = data()
    steps = eval_steps(a.steps, a.points, a.head)
    evals = set(steps.tolist())
    t_data = time.perf_counter() - t0
    plan = [(arm, s) for arm in ARMS for s in range(SEEDS)][: a.runs]
    results: dict[str, list] = {}
    t0 = time.perf_counter()
    t_svd = 0.0
    for (name, lr0, milestone, factor), seed in plan:
        m, ts = sgd_run(x, y, xt, yt, lr0, milestone, factor, a.steps, evals, seed)
        results.setdefault(name, []).append(m)
        t_svd += ts
    t_runs = time.perf_counter() - t0
    t0 = time.perf_counter()
    if results:
        figure(results, steps, a.out)
    t_fig = time.perf_counter() - t0
    print(json.dumps({"runs": len(plan), "steps": a.steps, "evals": len(steps), "imports": t_import,
                      "data": t_data, "runs_s": t_runs, "svd_s": t_svd, "figure": t_fig}))


if __name__ == "__main__":
    main()
