"""MNIST-1D (Greydanus & Kobak, ICML 2024): the deep-network findings on real data, on a CPU
(docs/mnist1d.md).

Registers, through sgdlab's public ``register_*`` API: the model kind ``mnist1d_net`` (the
benchmark's logistic regression, MLP, 1-D CNN and GRU; :mod:`.models`, :mod:`.nets`), the
optimizer kind ``adam`` (the benchmark's optimizer; :mod:`.adam`), the ``mnist1d-*`` experiments and
the docs numbers (:mod:`.numbers`). The data kind ``mnist1d`` is the framework's
(``sgdlab.data.toy_configs``).
"""

from pathlib import Path

import sgdlab
from sgdlab.studies.mnist1d import adam, models  # noqa: F401  (register the kinds)

sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.mnist1d.numbers")
