# The framework's model families register their config kinds on import (one module per family);
# the studies' families (diagonal_net, two_layer, linear) register through sgdlab.register_model.
from sgdlab.models import (  # noqa: F401
    deep,  # deep_net: CIFAR-style nn.Modules on the engine
    mlp,  # relu_mlp (ReLU / tanh MLPs)
)
