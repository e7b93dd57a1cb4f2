"""Diagonal linear networks (Andriushchenko et al., ICML 2023, Sec. 3; docs/diag-net.md).

Model ``diagonal_net`` (u, v in R^d, beta = u * v, fused numba kernels), its metrics (exact
Jacobian rank by inertia, ||u*v||_0), the loss-surface figures, the diag-net experiments and their
docs numbers.
"""

from pathlib import Path

import sgdlab
from sgdlab.plots import lazy_figure
from sgdlab.studies.diag_net import model  # noqa: F401  (registers diagonal_net)

sgdlab.register_figure("loss_surface")(lazy_figure("sgdlab.studies.diag_net.surface", "loss_surface"))
sgdlab.register_figure("loss_surface_gif")(lazy_figure("sgdlab.studies.diag_net.surface", "loss_surface_gif"))
sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.diag_net.numbers")
