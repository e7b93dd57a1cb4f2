"""Related findings: large-step GD on a depth-2 linear net, SGD learning the support (eta/b),
SGD with vs without replacement (docs/related-*.md).

Models ``two_layer`` and ``linear`` (finite-sum quadratic), data ``scalar_target`` and
``support_regression``, their metrics and figures, experiments and docs numbers.
"""

from pathlib import Path

import sgdlab
from sgdlab.plots import lazy_figure
from sgdlab.studies.related import data, linear, two_layer  # noqa: F401  (register their kinds)

# what two_layer.metrics() and linear.metrics() log
for _name, _description in (
        ("residual", "mean training residual f(x) - y (eps of the scalar target)"),
        ("norm_sq", "|W|^2 + |v|^2 (lambda of the scalar net)"),
        ("imbalance", "|W|^2 - |v|^2 (conserved by gradient flow)"),
        ("a1", "W[0, 0]: the first first-layer weight (a of the scalar net)"),
        ("b1", "v[0]: the first second-layer weight (b of the scalar net)"),
        ("irrelevant_norm", "RMS first-layer column norm over the irrelevant coordinates / its initial value"),
        ("relevant_norm", "RMS first-layer column norm over the support coordinates / its initial value"),
        ("beta_irrelevant", "|W^T v| restricted to the irrelevant coordinates (linear activation)"),
        ("dist_opt", "|theta - theta*|^2, theta* the least-squares minimizer")):
    sgdlab.register_metric_spec(_name, _description)

for _name in ("linear2_large_step", "support_identification", "replacement"):
    sgdlab.register_figure(_name)(lazy_figure("sgdlab.studies.related.figures", _name))
sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.related.numbers")
