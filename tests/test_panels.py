"""Metric panels: the vectorized quantile band equals numpy's, log-axis labels are plain text
with matplotlib's own tick choice, and a figure renders without mathtext."""

import warnings

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from sgdlab.plots.panels import (
    PlainLogFormatter,
    _band,
    draw_metric_panels,
    plain_tick_labels,
    save_figure,
)


def test_band_equals_nanpercentile():
    g = np.random.default_rng(0)
    v = g.standard_normal((40, 9))
    v[g.random(v.shape) < 0.3] = np.nan
    v[3] = np.nan  # a row with no finite value
    med, lo, hi = _band(v)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-NaN row
        want = np.nanpercentile(v, [50, 25, 75], axis=1)
    np.testing.assert_allclose(np.stack([med, lo, hi]), want, rtol=1e-12, atol=1e-15)


def test_plain_log_labels_match_matplotlib_text():
    fmt, ref = PlainLogFormatter(10), ticker.LogFormatterSciNotation(10)
    fig = Figure()
    ax = fig.subplots()
    ax.set_yscale("log")
    ax.set_ylim(1e-33, 1e2)
    fmt.set_axis(ax.yaxis)
    ref.set_axis(ax.yaxis)
    assert fmt(1e-5) == "10⁻⁵" and fmt(100.0) == "10²" and fmt(1.0) == "10⁰"
    assert fmt(2e-5) in ("", "2×10⁻⁵")  # labelled exactly where matplotlib labels it
    assert (fmt(2e-5) == "") == (ref(2e-5) == "")


def test_panels_render_without_mathtext(tmp_path):
    steps = np.arange(50)
    metrics = {"train_loss": np.exp(-np.arange(50.0))[:, None] * np.ones((1, 2)),
               "jacobian_rank": np.full((50, 2), 7.0)}
    runs = [{"index": 0, "arm": "a"}, {"index": 1, "arm": "a"}]
    fig = draw_metric_panels(steps, metrics, runs, ("train_loss", "jacobian_rank"), ["a"], title="t")
    plain_tick_labels(fig)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert not any("$" in s for s in labels)
    assert save_figure(fig, tmp_path / "f.png").stat().st_size > 0
