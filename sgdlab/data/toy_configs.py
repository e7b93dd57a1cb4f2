"""``DataConfig`` kinds for the ReLU-network experiments: the toy tasks of :mod:`sgdlab.data.toy`
and a real offline classification set.

Kinds: ``regression_1d``, ``teacher_student_2d``, ``three_layer_teacher`` (float64 regression,
``y (n,)``) and ``digits`` (scikit-learn's 8x8 digits) / ``mnist1d`` (MNIST-1D generated
offline) for classification (integer labels). The last two need their package installed; they
are not dependencies of sgdlab and raise :class:`~sgdlab.core.errors.DataError` naming the package.

Extras handed to models and figures: the teacher's weights as ``teacher_W1``, ``teacher_b1``, ...;
``rank_inputs`` where the paper measures the Jacobian rank on special inputs (1-D regression:
300 evenly spaced inputs over the data range). A task without test labels (1-D regression) has
an all-NaN ``y_test``; models then skip the test loss.
"""

from __future__ import annotations

import importlib
import random
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check
from sgdlab.core.errors import DataError
from sgdlab.data import toy
from sgdlab.data.base import DataConfig, Dataset

# 1-D regression: the authors compute the Jacobian rank on 300 inputs over the data range.
RANK_INPUTS_1D = 300

# A teacher's hidden activation (toy.TEACHER_ACTIVATIONS): the papers use relu.
TeacherActivation = Literal["relu", "tanh", "gelu", "linear"]


def from_toy(ds: toy.ToyDataset, **extras: torch.Tensor) -> Dataset:
    """Wrap a :class:`toy.ToyDataset` (teacher weights become ``teacher_<name>`` extras)."""
    ex = {f"teacher_{k}": v for k, v in ds.teacher.items()}
    ex.update(extras)
    return Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, ex)


@dataclass(frozen=True)
class Regression1D(DataConfig):
    """The paper's 12-point 1-D regression (deterministic; test inputs = a fine grid, no labels)."""

    kind: ClassVar[str] = "regression_1d"
    n_test: int = 1000  # grid points over [min x, max x] for the learned-function figure
    rank_inputs: int = RANK_INPUTS_1D  # evenly spaced inputs for the Jacobian rank

    def __post_init__(self):
        check(self.n_test >= 2 and self.rank_inputs >= 1, "n_test must be >= 2 and rank_inputs >= 1")

    def build(self) -> Dataset:
        ds = toy.regression_1d(toy.Regression1DConfig(self.n_test))
        lo, hi = float(ds.x_train.min()), float(ds.x_train.max())
        grid = torch.linspace(lo, hi, self.rank_inputs, dtype=torch.float64)[:, None]
        return from_toy(ds, rank_inputs=grid)


@dataclass(frozen=True)
class TeacherStudent2D(DataConfig):
    """Unit-circle inputs, teacher of ``n_teacher`` unit-norm ReLU neurons with +-1 outputs."""

    kind: ClassVar[str] = "teacher_student_2d"
    n_train: int = 15  # paper: 15
    n_test: int = 1000  # paper: 1000
    n_teacher: int = 3  # teacher width: hidden neurons (paper: 3)
    seed: int = 0  # the one data seed shared by every run
    activation: TeacherActivation = "relu"  # the teacher neurons' activation (paper: relu)
    noise: float = 0.0  # std of Gaussian label noise on the training labels (paper: none; test clean)

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        self._toy()  # validates the generator keys

    def _toy(self) -> toy.TeacherStudent2DConfig:
        return toy.TeacherStudent2DConfig(self.n_train, self.n_test, self.n_teacher, self.activation, self.noise)

    def build(self) -> Dataset:
        return from_toy(toy.teacher_student_2d(self.seed, self._toy()))


@dataclass(frozen=True)
class ThreeLayerTeacher(DataConfig):
    """5-D unit-norm inputs, ReLU teacher ``d -> hidden -> 1`` with biases (see toy.py)."""

    kind: ClassVar[str] = "three_layer_teacher"
    d: int = 5
    hidden: tuple[int, ...] = (2, 2)  # teacher widths of its two hidden layers (paper: 2, 2)
    n_train: int = 50  # paper: 50
    n_test: int = 1000
    weight_std: float = 1.0  # teacher weights N(0, weight_std^2): not stated by the paper
    bias_std: float = 1.0
    min_active_fraction: float = 0.1  # redraw degenerate teachers (see toy.ThreeLayerTeacherConfig)
    seed: int = 0
    activation: TeacherActivation = "relu"  # the teacher's hidden activation (paper: relu)
    noise: float = 0.0  # std of Gaussian label noise on the training labels (paper: none; test clean)

    def __post_init__(self):
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        self._toy()  # validates the generator keys

    def _toy(self) -> toy.ThreeLayerTeacherConfig:
        return toy.ThreeLayerTeacherConfig(self.d, self.hidden, self.n_train, self.n_test, self.weight_std,
                                           self.bias_std, self.min_active_fraction, self.activation, self.noise)

    def build(self) -> Dataset:
        return from_toy(toy.three_layer_teacher(self.seed, self._toy()))


def _require(module: str, kind: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DataError(f"data kind {kind!r} needs the optional package {module!r}, which is not "
                        f"installed (pip install {module.replace('_', '-')}); sgdlab does not download data. "
                        f"Offline alternatives: regression_1d, teacher_student_2d, three_layer_teacher") from None


def _split(x: np.ndarray, y: np.ndarray, n_train: int, seed: int) -> Dataset:
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:n_train], perm[n_train:]
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)
    return Dataset(t(x[tr]), torch.as_tensor(y[tr], dtype=torch.int64), t(x[te]),
                   torch.as_tensor(y[te], dtype=torch.int64))


@dataclass(frozen=True)
class Digits(DataConfig):
    """scikit-learn's 1797 8x8 digit images (bundled with the package, no download), pixels
    scaled to [0, 1], 10 classes; a seeded random split into ``n_train`` / the rest."""

    kind: ClassVar[str] = "digits"
    n_train: int = 1000
    seed: int = 0  # split seed

    def __post_init__(self):
        check(1 <= self.n_train < 1797, f"n_train must be in [1, 1797), got {self.n_train}")

    def build(self) -> Dataset:
        ds = _require("sklearn.datasets", self.kind).load_digits()
        return _split(ds.data / 16.0, ds.target, self.n_train, self.seed)


@dataclass(frozen=True)
class MNIST1D(DataConfig):
    """MNIST-1D generated offline by ``mnist1d.data.make_dataset`` (Greydanus & Kobak, 2024);
    never downloaded. Every generator argument of ``mnist1d.data.get_dataset_args()`` is a key,
    with the package's default, so the default arrays equal ``make_dataset(get_dataset_args())``
    exactly: 4000 train / 1000 test sequences ``x (n, final_seq_length)`` (standardised over
    the whole set by the package), labels ``y (n,)`` in 0..9, its own split kept.
    ``make_dataset`` reseeds NumPy's and Python's global generators; their states are restored.
    """

    kind: ClassVar[str] = "mnist1d"
    num_samples: int = 5000  # sequences generated, split train / test (package default)
    train_split: float = 0.8  # share of the sequences in the training set
    template_len: int = 12  # points of each digit template
    padding: tuple[int, int] = (36, 60)  # range of the zero padding added before the transforms
    scale_coeff: float = 0.4  # random scaling amplitude
    max_translation: int = 48  # largest random shift (points)
    corr_noise_scale: float = 0.25  # correlated (smoothed) noise amplitude
    iid_noise_scale: float = 2e-2  # white noise amplitude
    shear_scale: float = 0.75  # random shear amplitude
    shuffle_seq: bool = False  # one fixed permutation of the sequence positions (the "shuffled" benchmark)
    final_seq_length: int = 40  # points after resampling
    seed: int = 42  # generator seed (package default)
    # Not a generator argument: keep only the first n_train training sequences (0 = all), e.g. the
    # fixed subset of a full-batch GD run; the test set is unchanged.
    n_train: int = 0

    def __post_init__(self):
        check(self.n_train >= 0, f"n_train must be >= 0 (0 = all), got {self.n_train}")
        check(self.num_samples >= 10, f"num_samples must be >= 10 (one per class), got {self.num_samples}")
        check(0 < self.train_split < 1, f"train_split must be in (0, 1), got {self.train_split}")
        check(len(self.padding) == 2 and 0 <= self.padding[0] <= self.padding[1],
              f"padding must be [low, high] with 0 <= low <= high, got {list(self.padding)}")
        check(self.template_len >= 2 and self.final_seq_length >= 2, "template_len and final_seq_length must be >= 2")
        check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")

    def generator_args(self) -> dict:
        """The keyword arguments of ``mnist1d`` (``get_dataset_args(as_dict=True)`` with this config's values)."""
        return {"num_samples": self.num_samples, "train_split": self.train_split, "template_len": self.template_len,
                "padding": list(self.padding), "scale_coeff": self.scale_coeff, "max_translation": self.max_translation,
                "corr_noise_scale": self.corr_noise_scale, "iid_noise_scale": self.iid_noise_scale,
                "shear_scale": self.shear_scale, "shuffle_seq": self.shuffle_seq,
                "final_seq_length": self.final_seq_length, "seed": self.seed}

    def arrays(self) -> dict:
        """``make_dataset`` of these arguments (global RNG states restored afterwards)."""
        _require("mnist1d", self.kind)
        data = importlib.import_module("mnist1d.data")
        args = data.get_dataset_args(as_dict=False)
        for k, v in self.generator_args().items():
            setattr(args, k, v)
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            return data.make_dataset(args)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)

    def build(self) -> Dataset:
        d = self.arrays()
        n = len(d["y"])
        check(self.n_train <= n, f"n_train {self.n_train} exceeds the {n} training sequences")
        keep = slice(0, self.n_train or n)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)
        return Dataset(t(d["x"][keep]), torch.as_tensor(d["y"][keep], dtype=torch.int64), t(d["x_test"]),
                       torch.as_tensor(d["y_test"], dtype=torch.int64))
