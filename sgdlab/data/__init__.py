# Dataset kinds register on import (one module per family).
from sgdlab.data import (  # noqa: F401
    arrays,  # arrays (a .npz / .pt file)
    eos,  # chebyshev, sharpest_directions, eoss_regression
    function,  # function (module:function returning arrays)
    image_configs,  # images (CIFAR, Tiny ImageNet, digits, MNIST-1D), synthetic_images
    related,  # scalar_target, support_regression
    synthetic,  # sparse_regression
    toy_configs,  # regression_1d, teacher_student_2d, three_layer_teacher, digits, mnist1d
)
