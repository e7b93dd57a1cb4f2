"""Curvature of any ``torch.nn.Module`` loss: Hessian-vector products, top eigenvalues (sharpness),
trace, spectral density and mini-batch curvature (batch sharpness, MiniBS, GNI).

Three lines::

    from sgdlab.metrics.curvature import sharpness
    lam = sharpness(model, loss_fn, (x, y))          # lambda_max of the Hessian of loss_fn
    # loss_fn(output, y) must return the MEAN loss over the batch; see docs/curvature.md

Everything works on a functional copy: the module's parameters, buffers, ``.training`` flags,
``.grad`` fields and the global RNG state are unchanged by any call. Models with BatchNorm need
an explicit ``bn_mode="eval" | "train"``. Eigenvalues are those of the loss exactly as loss_fn
defines it (every result carries ``loss_reduction``): a loss scaled by c has eigenvalues scaled
by c, which moves where 2/eta sits.

This package never imports sgdlab's trainer, CLI or plots.
"""

from sgdlab.metrics.curvature._common import LOSS_REDUCTION, SymmetricOperator
from sgdlab.metrics.curvature.batch import (
                    QUANTITIES,
                    MCEstimate,
                    batch_curvature,
                    batch_sharpness,
                    gradient_noise_interaction,
                    mini_batch_sharpness,
                    step_sharpness,
)
from sgdlab.metrics.curvature.dense import MatrixOperator, dense_eigvalsh, dense_hessian
from sgdlab.metrics.curvature.density import SpectralDensity, spectral_density
from sgdlab.metrics.curvature.hvp import FunctionalLoss, HessianOperator, fixed_subset
from sgdlab.metrics.curvature.lanczos import EigResult, hessian_eigs, lanczos, sharpness
from sgdlab.metrics.curvature.summaries import (
                    CurvatureSummary,
                    condition_ratio,
                    curvature_summary,
                    directional_curvature,
                    negative_eigenvalues,
)
from sgdlab.metrics.curvature.trace import TraceResult, hutchinson_trace

__all__ = [
                    "LOSS_REDUCTION",
                    "QUANTITIES",
                    "CurvatureSummary",
                    "EigResult",
                    "FunctionalLoss",
                    # operators
                    "HessianOperator",
                    "MCEstimate",
                    "MatrixOperator",
                    "SpectralDensity",
                    "SymmetricOperator",
                    "TraceResult",
                    # mini-batch curvature
                    "batch_curvature",
                    "batch_sharpness",
                    "condition_ratio",
                    "curvature_summary",
                    "dense_eigvalsh",
                    "dense_hessian",
                    "directional_curvature",
                    "fixed_subset",
                    "gradient_noise_interaction",
                    "hessian_eigs",
                    # spectrum summaries
                    "hutchinson_trace",
                    "lanczos",
                    "mini_batch_sharpness",
                    "negative_eigenvalues",
                    # eigenvalues
                    "sharpness",
                    "spectral_density",
                    "step_sharpness",
]
