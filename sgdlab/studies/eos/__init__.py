"""Edge of Stability (Cohen et al. 2021), Edge of Stochastic Stability (Andreyev & Beneventano) and
"SGD smooths the sharpest directions" (Jastrzebski et al.; docs/curvature.md).

Data ``chebyshev``, ``sharpest_directions`` and ``eoss_regression``, experiments and docs numbers;
the curvature figures (``sharpness_edge``, ``sharpest_directions``) are the framework's.
"""

from pathlib import Path

import sgdlab
from sgdlab.studies.eos import data  # noqa: F401  (registers the data kinds)

sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.eos.numbers")
