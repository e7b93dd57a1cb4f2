"""Standard figures of a sweep directory: final metric vs a swept value (seed bands),
metric over training per value, heat map of two swept values, divergence map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from sgdlab.core.errors import ConfigError
from sgdlab.metrics.registry import METRIC_SPECS
from sgdlab.plots.panels import quiet_nan, save_figure
from sgdlab.store.runs import RunDir
from sgdlab.store.sweeps import SweepDir


def _summaries(sw: SweepDir, index: dict) -> dict[int, dict | None]:
    """Job id -> its summary (None while unfinished), read once for all of the sweep's figures."""
    return {j["id"]: RunDir(sw.path / j["dir"]).summary() for j in index["jobs"]}


def _finals(points, summaries: dict[int, dict | None], legend: dict[str, str], metric: str):
    """{arm legend name: [(point values, finals per seed (S,), n_diverged, n_runs, merged arm, job)]}."""
    out: dict[str, list] = {}
    for p in points:
        s = summaries[p.job]
        if s is None:
            continue
        for base, merged in p.arms.items():
            runs = [r for r in s["runs"] if r["arm"] == merged]
            vals = np.array([np.nan if r["final"].get(metric) is None else r["final"][metric] for r in runs])
            ndiv = sum(r["diverged_at"] is not None for r in runs)
            out.setdefault(legend[base], []).append((p.values, vals, ndiv, len(runs), merged, p.job))
    return out


def _legend_names(points) -> dict[str, str]:
    """Per base arm, a legend name true at every point: its label where all points agree, else the
    label with the words that differ between points replaced by "*" (e.g. "SGD eta=* /4.8 at 10%")."""
    seen: dict[str, list[str]] = {}
    for p in points:
        for base in p.arms:
            seen.setdefault(base, []).append(p.labels.get(base, base))
    out = {}
    for base, labels in seen.items():
        words = [lab.split(" ") for lab in labels]
        if len({len(w) for w in words}) != 1:
            out[base] = f"{base} (varies)"
            continue
        out[base] = " ".join(w[0] if len(set(w)) == 1 else _star(w) for w in zip(*words))
    taken = list(out.values())
    return {b: (n if taken.count(n) == 1 else f"{n} [{b}]") for b, n in out.items()}


def _star(words) -> str:
    """The common "key=" prefix of differing words, then "*"."""
    pre = words[0].split("=", 1)[0]
    return f"{pre}=*" if all("=" in w and w.split("=", 1)[0] == pre for w in words) else "*"


def _lines(finals, key, what):
    """Group items into lines over ``key``: one per (arm, values of the other axes).
    Each point is (x, seeds' finals) when what == 1, else (x, fraction diverged)."""
    lines: dict[str, list] = {}
    for arm, items in finals.items():
        for values, vals, ndiv, nruns, *_ in items:
            if key not in values:
                continue
            rest = ", ".join(f"{k}={v}" for k, v in values.items() if k != key)
            label = arm + (f" ({rest})" if rest else "")
            y = vals if what == 1 else ndiv / max(nruns, 1)
            lines.setdefault(label, []).append((values[key], y))
    return [(label, sorted(pts, key=lambda t: t[0])) for label, pts in lines.items()]


def _numeric_axis(axes):
    for k, vals in axes:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            return k, vals
    return None, None


DEFAULT_METRICS = ("train_loss", "test_loss")


def _figure_panels(index: dict) -> tuple[str, ...]:
    """The experiment's own figure panels (config ``figure``) of the sweep's jobs."""
    out: dict[str, None] = {}
    for j in index["jobs"]:
        out.update(dict.fromkeys(j.get("config", {}).get("figure", ())))
    return tuple(out)


def plot_sweep(path: str | Path, metrics: tuple[str, ...] | None = None) -> list[Path]:
    """The sweep's figures for ``metrics``. Default: train and test loss and the experiment's own
    figure panels (those logged), into ``figures/final_vs_value.png`` etc.; chosen ``metrics`` go
    to their own files (``final_vs_value-METRIC....png``), so the default figures are never replaced."""
    sw = SweepDir(path)
    index = sw.index()
    points, summaries = sw.points(), _summaries(sw, index)
    legend = _legend_names(points)
    finals_of = lambda metric: _finals(points, summaries, legend, metric)
    logged = sorted({k for s in summaries.values() if s for a in s["arms"].values() for k in a["final"]})
    custom = bool(metrics)
    if not metrics:
        wanted = dict.fromkeys((*DEFAULT_METRICS, *_figure_panels(index)))
        metrics = tuple(m for m in wanted if m in logged) or tuple(logged[:1]) or DEFAULT_METRICS[:1]
    metrics = METRIC_SPECS.canonical_names(metrics, "metrics")
    suffix = "-" + "-".join(metrics) if custom else ""
    for m in metrics:
        if logged and m not in logged:
            raise ConfigError(f"{sw.path}: {METRIC_SPECS.choices(m, logged)} (the metrics its jobs logged)")
    log_scale = METRIC_SPECS.log_scale
    axes = index["axes"]
    fig_dir = sw.path / "figures"
    fig_dir.mkdir(exist_ok=True)
    files = []
    key, values = _numeric_axis(axes)
    if key is None:
        return files
    logx = min(values) > 0 and max(values) / min(values) > 10
    # final metric vs the swept value, with seed bands; and the divergence map
    fig = Figure(figsize=(4.2 * (len(metrics) + 1), 3.4), layout="constrained")
    axs = fig.subplots(1, len(metrics) + 1, squeeze=False)[0]
    for ax, metric in zip(axs, metrics):
        for c, (label, pts) in enumerate(_lines(finals_of(metric), key, 1)):
            xs = np.array([x for x, _ in pts], dtype=float)
            with quiet_nan():
                q = np.array([np.nanpercentile(v, [25, 50, 75]) if np.isfinite(v).any() else [np.nan] * 3
                              for _, v in pts])
            ax.plot(xs, q[:, 1], "o-", color=f"C{c % 10}", label=label, ms=3)
            ax.fill_between(xs, q[:, 0], q[:, 2], color=f"C{c % 10}", alpha=0.2, lw=0)
        ax.set_xlabel(key)
        ax.set_title(f"final {METRIC_SPECS.label(metric)} (median, IQR over seeds)")
        if log_scale(metric):
            ax.set_yscale("log")
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    ax = axs[-1]
    finals = finals_of(metrics[0])
    for c, (label, pts) in enumerate(_lines(finals, key, None)):
        ax.plot([x for x, _ in pts], [f for _, f in pts], "s-", color=f"C{c % 10}", label=label, ms=3)
    ax.set_xlabel(key)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("fraction of seeds diverged")
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    axs[0].legend(fontsize=7)
    files.append(save_figure(fig, fig_dir / f"final_vs_value{suffix}.png"))

    # metric over training per value (first arm of the base experiment)
    if finals:
        arm, items = next(iter(finals.items()))
        fig = Figure(figsize=(5.5, 3.6), layout="constrained")
        ax = fig.subplots()
        cmap = __import__("matplotlib").colormaps["viridis"]
        order = sorted(items, key=lambda it: it[0].get(key, 0))
        for i, (vals_, _, _, _, merged, job) in enumerate(order):
            rd = RunDir(sw.path / index["jobs"][job]["dir"])
            steps, m = rd.metrics()
            idx = [r["index"] for r in rd.runs() if r["arm"] == merged]
            with quiet_nan():
                med = np.nanmedian(m[metrics[0]][:, idx], axis=1) if idx else None
            if med is not None:
                ax.plot(steps, med, color=cmap(i / max(len(order) - 1, 1)), label=f"{key}={vals_.get(key):.4g}")
        ax.set_yscale("log" if log_scale(metrics[0]) else "linear")
        ax.set_xlabel("iteration")
        ax.set_title(f"{arm}: median {METRIC_SPECS.label(metrics[0])} per {key}")
        ax.legend(fontsize=6, ncol=2)
        files.append(save_figure(fig, fig_dir / f"over_training{suffix}.png"))

    # heat map of two swept values
    if len(axes) >= 2:
        (k1, v1), (k2, v2) = axes[0], axes[1]
        grid = np.full((len(v2), len(v1)), np.nan)
        arm, items = next(iter(finals_of(metrics[-1]).items()))
        for vals_, v, *_ in items:
            with quiet_nan():
                grid[v2.index(vals_[k2]), v1.index(vals_[k1])] = np.nanmedian(v) if np.isfinite(v).any() else np.nan
        fig = Figure(figsize=(5.5, 4), layout="constrained")
        ax = fig.subplots()
        data = np.log10(grid) if log_scale(metrics[-1]) else grid
        im = ax.imshow(data, origin="lower", aspect="auto", cmap="magma")
        ax.set_xticks(range(len(v1)), [f"{x:.3g}" if isinstance(x, float) else str(x) for x in v1], rotation=45)
        ax.set_yticks(range(len(v2)), [f"{x:.3g}" if isinstance(x, float) else str(x) for x in v2])
        ax.set_xlabel(k1)
        ax.set_ylabel(k2)
        fig.colorbar(im, ax=ax, label=("log10 " if log_scale(metrics[-1]) else "")
                     + f"median final {METRIC_SPECS.label(metrics[-1])}")
        ax.set_title(arm)
        files.append(save_figure(fig, fig_dir / f"heatmap{suffix}.png"))
    return files
