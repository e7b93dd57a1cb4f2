"""Diagonal linear networks (Andriushchenko et al., ICML 2023, Sec. 3; docs/diag-net.md).

Model ``diagonal_net`` (u, v in R^d, beta = u * v, fused numba kernels), its metrics (exact
Jacobian rank by inertia, ||u*v||_0), the loss-surface figures, the diag-net experiments and their
docs numbers.
"""

from pathlib import Path

import sgdlab
from sgdlab.plots import lazy_figure
from sgdlab.studies.diag_net import model  # noqa: F401  (registers diagonal_net)

# what diagonal_net.metrics() logs (beta = u * v)
sgdlab.register_metric_spec("l0", "||u*v||_0: coordinates with |beta_j| > metrics.thresholds.l0 (1e-50, the "
                            "authors' count)", label="‖u⊙v‖₀", table=5)
sgdlab.register_metric_spec("l0_robust", "||u*v||_0 with threshold metrics.thresholds.l0_robust (1e-3: numerical "
                            "dust not counted)", label="‖u⊙v‖₀ (>10⁻³)", table=6)
sgdlab.register_metric_spec("l1", "||u*v||_1", label="‖u⊙v‖₁", log_scale=True)
sgdlab.register_metric_spec("support_mass", "sum over the true support of |beta_j| / ||beta||_1",
                            label="support mass", table=7)
sgdlab.register_metric_spec("param_norm", "||(u, v)||_2", label="‖(u,v)‖₂")
sgdlab.register_metric_spec("balancedness", "|| |u| - |v| ||_2 (zero on the balanced manifold)", label="‖|u|−|v|‖",
                            log_scale=True)

sgdlab.register_figure("loss_surface")(lazy_figure("sgdlab.studies.diag_net.surface", "loss_surface"))
sgdlab.register_figure("loss_surface_gif")(lazy_figure("sgdlab.studies.diag_net.surface", "loss_surface_gif"))
sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.diag_net.numbers")
