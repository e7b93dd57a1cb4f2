"""In-memory image datasets: the :class:`ImageDataset` container, offline real datasets
(scikit-learn digits, MNIST-1D) and a name -> loader registry.

File readers for CIFAR-10/100 and Tiny ImageNet live in :mod:`sgdlab.data.files`; nothing here
downloads anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.errors import ConfigError, DataError
from sgdlab.core.registry import Registry
from sgdlab.data.files import load_cifar10, load_cifar100, load_tiny_imagenet
from sgdlab.data.image_dataset import ImageDataset, to_unit_float

__all__ = [
    "IMAGE_DATASETS",
    "ImageDataset",
    "load_digits",
    "load_image_dataset",
    "load_mnist1d",
    "to_unit_float",
]

# scikit-learn's digits have integer intensities 0..16.
DIGITS_MAX_VALUE = 16.0
# Share of the 1797 digits held out as the test split.
DIGITS_TEST_FRACTION = 0.2


def _split(x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int):
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def load_digits(test_fraction: float = DIGITS_TEST_FRACTION, seed: int = 0) -> ImageDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes), offline.

    Images ``(N, 1, 8, 8)`` float32 in [0, 1]; a random train/test split drawn from ``seed``.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as e:  # keep the cause: a broken install differs from a missing one
        raise DataError(f"the 'digits' dataset needs scikit-learn: pip install scikit-learn ({e})") from None
    bunch = sk_load_digits()
    x = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32) / DIGITS_MAX_VALUE).unsqueeze(1)
    y = torch.as_tensor(np.asarray(bunch.target), dtype=torch.int64)
    x_tr, y_tr, x_te, y_te = _split(x, y, test_fraction, seed)
    return ImageDataset(x_tr, y_tr, x_te, y_te, 10, "digits", tuple(str(d) for d in range(10)))


def load_mnist1d(num_samples: int | None = None, seed: int | None = None) -> ImageDataset:
    """MNIST-1D generated offline with ``mnist1d.data.make_dataset`` (never downloaded).

    Defaults are the package's (5000 samples, 80/20 split, seed 42). Each length-40 signal is an
    image ``(N, 1, 1, 40)``, min-max scaled to [0, 1] with the *training* range (test values are
    clipped to it). Disable crop augmentation for it (height 1).
    ``make_dataset`` reseeds NumPy's and Python's global RNGs; their states are restored here.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:
        raise DataError(f"the 'mnist1d' dataset needs the mnist1d package: pip install mnist1d ({e})") from None
    args = get_dataset_args(as_dict=False)
    if num_samples is not None:
        args.num_samples = int(num_samples)
    if seed is not None:
        args.seed = int(seed)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x_tr = np.asarray(data["x"], dtype=np.float32)
    x_te = np.asarray(data["x_test"], dtype=np.float32)
    lo, hi = float(x_tr.min()), float(x_tr.max())
    scale = hi - lo if hi > lo else 1.0

    def as_images(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.clip((a - lo) / scale, 0.0, 1.0)).reshape(len(a), 1, 1, -1)

    return ImageDataset(
        as_images(x_tr), torch.as_tensor(np.asarray(data["y"]), dtype=torch.int64),
        as_images(x_te), torch.as_tensor(np.asarray(data["y_test"]), dtype=torch.int64),
        10, "mnist1d", tuple(str(d) for d in range(10)),
    )


IMAGE_DATASETS: Registry[Callable[..., ImageDataset]] = Registry("image dataset")


def _needs_path(name: str, path) -> Path:
    if path is None:
        raise ConfigError(f"dataset {name!r} is read from files: give its path (nothing is downloaded)")
    return Path(path)


@IMAGE_DATASETS.register("cifar10")
def _cifar10(path=None, **kw) -> ImageDataset:
    return load_cifar10(_needs_path("cifar10", path), **kw)


@IMAGE_DATASETS.register("cifar100")
def _cifar100(path=None, **kw) -> ImageDataset:
    return load_cifar100(_needs_path("cifar100", path), **kw)


@IMAGE_DATASETS.register("tiny-imagenet")
def _tiny_imagenet(path=None, **kw) -> ImageDataset:
    return load_tiny_imagenet(_needs_path("tiny-imagenet", path), **kw)


def _no_path(name: str, path) -> None:
    if path is not None:
        raise ConfigError(f"dataset {name!r} is generated offline and takes no path, got {str(path)!r}")


@IMAGE_DATASETS.register("digits")
def _digits(path=None, **kw) -> ImageDataset:
    _no_path("digits", path)
    return load_digits(**kw)


@IMAGE_DATASETS.register("mnist1d")
def _mnist1d(path=None, **kw) -> ImageDataset:
    _no_path("mnist1d", path)
    return load_mnist1d(**kw)


def load_image_dataset(name: str, path: str | Path | None = None, **kw) -> ImageDataset:
    """Load dataset ``name`` (see ``IMAGE_DATASETS.names()``); ``path`` for file-based ones.

    Unknown names raise ConfigError listing the valid ones; missing or corrupt files DataError.
    """
    loader = IMAGE_DATASETS.get(name)
    try:
        return loader(path, **kw)
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        raise ConfigError(f"dataset {name!r}: {e}") from None  # an option the loader does not take
