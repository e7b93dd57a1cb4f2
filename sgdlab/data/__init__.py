from . import toy_configs  # noqa: E402,F401  (registers the toy and offline data kinds)
# Dataset kinds register on import (append one line per module).
from . import related  # noqa: E402,F401  (scalar_target, support_regression)
from . import image_configs, synthetic  # noqa: E402,F401  (sparse_regression; images, synthetic_images)
from . import eos  # noqa: E402,F401  (chebyshev, sharpest_directions, eoss_regression)
