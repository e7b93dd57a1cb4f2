"""MNIST-1D (Greydanus & Kobak, ICML 2024): the deep-network findings on real data, on a CPU.

Registers, through sgdlab's public ``register_*`` API: the model kind ``mnist1d_net`` (the
benchmark's logistic regression, MLP, 1-D CNN and GRU; :mod:`.models`, :mod:`.nets`) and the
optimizer kind ``adam`` (the benchmark's optimizer; :mod:`.adam`). The data kind ``mnist1d`` is
bundled (``sgdlab.data.toy_configs``). Experiments: ``sgdlab/experiments/mnist1d-*.toml``;
numbers of docs/mnist1d.md: :mod:`.numbers` (registered with ``sgdlab.docs_numbers``).
"""

from . import adam, models  # noqa: F401  (register the kinds)
