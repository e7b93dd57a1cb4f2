# The framework's dataset kinds register on import (one module per family); the studies' kinds
# (chebyshev, eoss_regression, support_regression, ...) register through sgdlab.register_data.
from sgdlab.data import (  # noqa: F401
    arrays,  # arrays (a .npz / .pt file)
    function,  # function (module:function returning arrays)
    image_configs,  # images (CIFAR, Tiny ImageNet, digits, MNIST-1D), synthetic_images
    synthetic,  # sparse_regression
    toy_configs,  # regression_1d, teacher_student_2d, three_layer_teacher, digits, mnist1d
)
