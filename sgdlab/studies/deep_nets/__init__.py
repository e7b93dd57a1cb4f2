"""Deep networks: ResNet/DenseNet on CIFAR-10/100 and Tiny ImageNet with long large-step phases,
and the offline CPU demo on scikit-learn's digits (Andriushchenko et al., ICML 2023, Sec. 5;
docs/deep-nets.md).

The architectures (``sgdlab.models.cifar``) and image data kinds are the framework's; this study
holds the experiments and docs numbers.
"""

from pathlib import Path

import sgdlab

sgdlab.register_experiments(Path(__file__).parent / "experiments")
sgdlab.register_docs_numbers("sgdlab.studies.deep_nets.numbers")
