from . import toy_configs  # noqa: E402,F401  (registers the toy and offline data kinds)
# Dataset kinds register on import (append one line per module).
from . import related  # noqa: E402,F401  (scalar_target, support_regression)
