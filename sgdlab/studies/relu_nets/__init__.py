"""ReLU networks: 1-D regression, teacher-student and three-layer nets (Andriushchenko et al.,
ICML 2023, Sec. 4; docs/relu-nets.md).

The framework's ``relu_mlp`` model and toy data kinds, with this study's figures (neuron movement,
learned function), experiments and docs numbers.
"""

from pathlib import Path

import sgdlab
from sgdlab.plots import lazy_figure

for _name in ("neuron_movement", "neuron_movement_gif", "learned_function_1d"):
    sgdlab.register_figure(_name)(lazy_figure("sgdlab.studies.relu_nets.figures", _name))
sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.relu_nets.numbers")
