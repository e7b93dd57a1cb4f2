# Model families register their config kinds on import (one module per family).
from sgdlab.models import (  # noqa: F401
    deep,  # deep_net: CIFAR-style nn.Modules on the engine
    diagonal,  # diagonal_net
    linear,  # linear (finite-sum quadratic)
    mlp,  # relu_mlp (ReLU / tanh MLPs)
    two_layer,  # two_layer (depth-2 linear / ReLU nets of the related findings)
)
