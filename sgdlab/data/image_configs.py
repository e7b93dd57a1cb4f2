"""Image classification datasets as engine data (`kind = "images"`), read from local files or
generated offline; never downloaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import DataError
from sgdlab.data.augment import Augmentation
from sgdlab.data.base import DataConfig, Dataset

# Paths are required for these; the others are generated offline.
NEEDS_PATH = {"cifar10", "cifar100", "tiny-imagenet"}


@dataclass(frozen=True)
class ImageData(DataConfig):
    """A named image dataset (sgdlab.data.images.IMAGE_DATASETS); images stay uint8 in memory."""

    kind: ClassVar[str] = "images"
    name: str = "cifar10"  # cifar10, cifar100, tiny-imagenet (need `path`), digits, mnist1d
    path: str = ""  # archive or folder of the standard on-disk format
    n_train: int = 0  # first n training examples (0 = all)
    n_test: int = 0  # first n test examples (0 = all)
    augment: bool = False  # random crop (padding 4) + horizontal flip of training batches
    crop_padding: int = 4
    flip: bool = True
    seed: int = 0  # train/test split of datasets that have none (digits)

    def __post_init__(self):
        # readers load on demand: configs stay cheap to build
        from sgdlab.data.images import IMAGE_DATASETS

        IMAGE_DATASETS.get(self.name)  # unknown names fail listing the valid ones
        check(self.n_train >= 0 and self.n_test >= 0, "n_train and n_test must be >= 0 (0 = all)")
        check(self.crop_padding >= 0, "crop_padding must be >= 0")

    def build(self) -> Dataset:
        if self.name in NEEDS_PATH and not self.path:
            raise DataError(f"{self.name} is read from local files: set data.path to its archive or folder, "
                            f"e.g. --set data.path=/data/cifar-10-python.tar.gz (sgdlab never downloads data)")
        kw = {"seed": self.seed} if self.name == "digits" else {}
        from sgdlab.data.images import load_image_dataset

        ds = load_image_dataset(self.name, self.path or None, **kw)
        ds = ds.subset(self.n_train or None, self.n_test or None)
        aug = Augmentation(self.crop_padding, self.flip) if self.augment else None
        return Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                       {"num_classes": torch.tensor(ds.num_classes)}, augment=aug)


@dataclass(frozen=True)
class SyntheticImages(DataConfig):
    """Random-label images of a given shape: a tiny stand-in for tests and smoke runs."""

    kind: ClassVar[str] = "synthetic_images"
    n_train: int = 64
    n_test: int = 32
    channels: int = 3
    size: int = 16
    num_classes: int = 10
    augment: bool = False
    seed: int = 0

    def __post_init__(self):
        check(min(self.n_train, self.n_test, self.channels, self.size, self.num_classes) >= 1,
              "synthetic image sizes and counts must be >= 1")

    def build(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        shape = (self.channels, self.size, self.size)
        t = lambda n: torch.as_tensor(rng.integers(0, 256, (n, *shape), dtype=np.uint8))
        lab = lambda n: torch.as_tensor(rng.integers(0, self.num_classes, n), dtype=torch.int64)
        return Dataset(t(self.n_train), lab(self.n_train), t(self.n_test), lab(self.n_test),
                       {"num_classes": torch.tensor(self.num_classes)},
                       augment=Augmentation() if self.augment else None)
