from . import mlp  # noqa: E402,F401  (registers the relu_mlp model kind)
# Model families register their config kinds on import (append one line per module).
from . import linear, two_layer  # noqa: E402,F401  (related findings: docs/related-*.md)
from . import deep, diagonal  # noqa: E402,F401  (diagonal_net; deep_net: CIFAR-style nn.Modules)
