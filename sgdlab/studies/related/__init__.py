"""Related findings: large-step GD on a depth-2 linear net, SGD learning the support (eta/b),
SGD with vs without replacement (docs/related-*.md).

Models ``two_layer`` and ``linear`` (finite-sum quadratic), data ``scalar_target`` and
``support_regression``, their metrics and figures, experiments and docs numbers.
"""

from pathlib import Path

import sgdlab
from sgdlab.plots import lazy_figure
from sgdlab.studies.related import data, linear, two_layer  # noqa: F401  (register their kinds)

for _name in ("linear2_large_step", "support_identification", "replacement"):
    sgdlab.register_figure(_name)(lazy_figure("sgdlab.studies.related.figures", _name))
sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.related.numbers")
