"""Toy regression datasets of the sparse-features paper and of "SGD smooths the sharpest
directions", as pure functions of a frozen config and an explicit seed.

Every builder returns a :class:`ToyDataset` of float64 CPU tensors
``x_train (n, d)``, ``y_train (n,)``, ``x_test (n_test, d)``, ``y_test (n_test,)`` plus the
teacher's weights (``teacher``, empty for the 1-D regression, which has no teacher).

Teacher networks are dicts ``{"W1": (h1, d), "b1": (h1,), ..., "WL": (1, h_{L-1}), "bL": (1,)}``
(``torch.nn.Linear`` layout; bias keys absent for bias-free teachers), evaluated by
:func:`teacher_forward` as ``h(x) = W_L s(... s(W_1 x + b_1) ...) + b_L`` with the teacher's
activation ``s`` (``activation``: relu, the papers' choice, tanh, gelu or linear).
Label noise, where a config has it, is drawn after every other draw, so the default (none)
leaves the data of a seed unchanged.

Randomness: ``seed`` is an ``int`` or a ``numpy.random.Generator``; all draws come from that
one generator in the order documented per builder, so the same seed gives the same dataset.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sgdlab.core._torch import torch
from sgdlab.core.config import check

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "TEACHER_ACTIVATIONS",
    "Regression1DConfig",
    "SharpestDirectionsConfig",
    "TeacherStudent2DConfig",
    "ThreeLayerTeacherConfig",
    "ToyDataset",
    "hidden_preactivations",
    "regression_1d",
    "sharpest_directions",
    "teacher_forward",
    "teacher_student_2d",
    "three_layer_teacher",
]

# Teacher resampling attempts before giving up (a rejection happens with probability ~1/2 at the
# default settings, so 1000 failures in a row means the config cannot be satisfied).
_MAX_TEACHER_DRAWS = 1000

# The 1-D regression points of the paper: x = (-5.5, -4.5, ..., 5.5) / 4 + 0.07.
_REG1D_X_STEPS = np.arange(-5.5, 6.0, 1.0)  # 12 half-integers
_REG1D_X_SCALE = 4.0
_REG1D_X_SHIFT = 0.07
_REG1D_Y_OFFSET = 0.345
_REG1D_Y = (-2.0, 1.5, 0.0, 0.0, 2.0, 1.0, 0.0, -1.0, 0.0, 1.0, 2.0, -1.0)

# Hidden-layer activations a teacher may use.
TEACHER_ACTIVATIONS = {"relu": lambda z: torch.relu(z), "tanh": lambda z: torch.tanh(z),
                       "gelu": lambda z: torch.nn.functional.gelu(z), "linear": lambda z: z}


@dataclass(frozen=True)
class ToyDataset:
    """float64 tensors; ``y_test`` is all-NaN when ``has_test_labels`` is False."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    teacher: Mapping[str, Tensor] = field(default_factory=dict)
    has_test_labels: bool = True

    def as_tuple(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(x_train, y_train, x_test, y_test)``."""
        return self.x_train, self.y_train, self.x_test, self.y_test


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


def _positive(name: str, value: int) -> None:
    check(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
          f"{name} must be a positive integer, got {value!r}")


def _check_activation(activation: str) -> None:
    check(activation in TEACHER_ACTIVATIONS,
          f"activation: unknown {activation!r}; allowed: {', '.join(TEACHER_ACTIVATIONS)}")


def _check_noise(noise: float) -> None:
    check(np.isfinite(noise) and noise >= 0, f"noise must be a finite number >= 0, got {noise!r}")


def teacher_forward(teacher: Mapping[str, Tensor], x: Tensor, activation: str = "relu") -> Tensor:
    """``(n, d) -> (n,)``: MLP with layers ``W1, (b1), W2, (b2), ...``, hidden activation
    ``TEACHER_ACTIVATIONS[activation]``; last layer linear."""
    n_layers = sum(1 for k in teacher if k.startswith("W"))
    if n_layers == 0 or any(f"W{i}" not in teacher for i in range(1, n_layers + 1)):
        raise ValueError(f"teacher must hold W1..WL, got keys {sorted(teacher)}")
    act = TEACHER_ACTIVATIONS[activation]
    h = x
    for i in range(1, n_layers + 1):
        h = h @ teacher[f"W{i}"].T
        if f"b{i}" in teacher:
            h = h + teacher[f"b{i}"]
        if i < n_layers:
            h = act(h)
    return h.reshape(-1)


def hidden_preactivations(teacher: Mapping[str, Tensor], x: Tensor, activation: str = "relu") -> list[Tensor]:
    """Pre-activations ``(n, h_l)`` of each hidden layer of a :func:`teacher_forward` teacher."""
    n_layers = sum(1 for k in teacher if k.startswith("W"))
    act = TEACHER_ACTIVATIONS[activation]
    out, h = [], x
    for i in range(1, n_layers):
        z = h @ teacher[f"W{i}"].T + (teacher.get(f"b{i}", 0.0))
        out.append(z)
        h = act(z)
    return out


def _noisy(y: Tensor, rng: np.random.Generator, noise: float) -> Tensor:
    """``y + noise N(0, 1)``, drawn only when noise > 0 (the draw order of noiseless data)."""
    return y + _t(noise * rng.standard_normal(len(y))) if noise > 0 else y


# --------------------------------------------------------------------------- (a) 1-D regression
@dataclass(frozen=True)
class Regression1DConfig:
    """The paper's 12-point 1-D regression; test inputs: ``n_test`` evenly spaced points over
    ``[min x, max x]``. There is no target function, so the test labels are NaN."""

    n_test: int = 1000

    def __post_init__(self):
        _positive("n_test", self.n_test)


def regression_1d(cfg: Regression1DConfig = Regression1DConfig()) -> ToyDataset:
    """Deterministic (no seed): ``x_i = (i - 5.5) / 4 + 0.07``, ``i = 0..11``;
    ``y = 0.345 + (-2, 1.5, 0, 0, 2, 1, 0, -1, 0, 1, 2, -1)``. Shapes ``(12, 1)``, ``(12,)``,
    ``(n_test, 1)``, ``(n_test,)`` (NaN, ``has_test_labels=False``)."""
    x = _REG1D_X_STEPS / _REG1D_X_SCALE + _REG1D_X_SHIFT
    y = _REG1D_Y_OFFSET + np.asarray(_REG1D_Y)
    grid = np.linspace(x.min(), x.max(), cfg.n_test)
    return ToyDataset(
        x_train=_t(x[:, None]),
        y_train=_t(y),
        x_test=_t(grid[:, None]),
        y_test=_t(np.full(cfg.n_test, np.nan)),
        teacher={},
        has_test_labels=False,
    )


# ------------------------------------------------------------- (b) 2-D two-layer teacher-student
@dataclass(frozen=True)
class TeacherStudent2DConfig:
    """Inputs uniform on the unit circle; teacher ``sum_k a_k s(<w_k, x>)`` with unit-norm
    ``w_k`` (uniform directions), ``a_k = +-1`` (random signs), no biases, ``s`` = ``activation``
    (relu); training labels plus ``noise`` N(0, 1) (default 0: none), test labels clean."""

    n_train: int = 15
    n_test: int = 1000
    n_teacher: int = 3
    activation: str = "relu"
    noise: float = 0.0

    def __post_init__(self):
        for name in ("n_train", "n_test", "n_teacher"):
            _positive(name, getattr(self, name))
        _check_activation(self.activation)
        _check_noise(self.noise)


def _circle(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def teacher_student_2d(
    seed: int | np.random.Generator, cfg: TeacherStudent2DConfig = TeacherStudent2DConfig()
) -> ToyDataset:
    """Draw order: teacher rows ``(n_teacher, 2)`` Gaussian then normalised, signs, train
    inputs, test inputs, (label noise). teacher = ``{"W1": (n_teacher, 2), "W2": (1, n_teacher)}``."""
    rng = _rng(seed)
    w = rng.standard_normal((cfg.n_teacher, 2))
    w /= np.linalg.norm(w, axis=1, keepdims=True)  # Gaussian / norm: uniform direction
    a = rng.choice(np.array([-1.0, 1.0]), size=cfg.n_teacher)
    teacher = {"W1": _t(w), "W2": _t(a[None, :])}
    x_train, x_test = _t(_circle(rng, cfg.n_train)), _t(_circle(rng, cfg.n_test))
    y_train = _noisy(teacher_forward(teacher, x_train, cfg.activation), rng, cfg.noise)
    return ToyDataset(x_train, y_train, x_test, teacher_forward(teacher, x_test, cfg.activation), teacher)


# ------------------------------------------------------------ (c) three-layer 5-D teacher-student
@dataclass(frozen=True)
class ThreeLayerTeacherConfig:
    """Teacher ``d -> hidden[0] -> hidden[1] -> 1`` ReLU with biases; inputs ``g / ||g||``,
    ``g ~ N(0, I_d)`` (uniform on the sphere). The paper does not state the teacher's
    distribution: we use i.i.d. ``N(0, weight_std^2)`` weights and ``N(0, bias_std^2)`` biases
    (unit scale keeps the unit-norm inputs' pre-activations O(1)). No label noise.

    With 2-unit layers such a draw is often degenerate (measured: seeds 0 and 5 of 8 give a
    constant teacher, others a dead unit), so the teacher is redrawn until every hidden unit is
    active on a fraction in ``[min_active_fraction, 1 - min_active_fraction]`` of the training
    inputs (rejection sampling; ``min_active_fraction = 0`` disables it and keeps the first draw).
    A unit is "active" where its pre-activation is positive, whatever the ``activation`` (relu,
    the paper's; tanh, gelu, linear). Training labels plus ``noise`` N(0, 1) (default 0).
    """

    d: int = 5
    hidden: tuple[int, ...] = (2, 2)
    n_train: int = 50
    n_test: int = 1000
    weight_std: float = 1.0
    bias_std: float = 1.0
    min_active_fraction: float = 0.1
    activation: str = "relu"
    noise: float = 0.0

    def __post_init__(self):
        _check_activation(self.activation)
        _check_noise(self.noise)
        for name in ("d", "n_train", "n_test"):
            _positive(name, getattr(self, name))
        check(0.0 <= self.min_active_fraction < 0.5,
              f"min_active_fraction must be in [0, 0.5), got {self.min_active_fraction!r}")
        check(len(self.hidden) == 2, f"hidden must list 2 layer widths, got {self.hidden!r}")
        for i, h in enumerate(self.hidden):
            _positive(f"hidden[{i}]", h)
        check(self.weight_std > 0, f"weight_std must be > 0, got {self.weight_std!r}")
        check(self.bias_std >= 0, f"bias_std must be >= 0, got {self.bias_std!r}")


def _sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    g = rng.standard_normal((n, d))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def three_layer_teacher(
    seed: int | np.random.Generator, cfg: ThreeLayerTeacherConfig = ThreeLayerTeacherConfig()
) -> ToyDataset:
    """Draw order: train inputs, test inputs, then teacher draws ``(W1, b1), (W2, b2), (W3, b3)``
    until accepted (see config), (label noise). Shapes: x ``(n, d)`` unit rows; teacher W1
    ``(h1, d)``, W2 ``(h2, h1)``, W3 ``(1, h2)``, biases ``(h1,)``, ``(h2,)``, ``(1,)``."""
    rng = _rng(seed)
    x_train, x_test = _t(_sphere(rng, cfg.n_train, cfg.d)), _t(_sphere(rng, cfg.n_test, cfg.d))
    widths = (cfg.d, *cfg.hidden, 1)
    lo, hi = cfg.min_active_fraction, 1.0 - cfg.min_active_fraction
    for _ in range(_MAX_TEACHER_DRAWS):
        teacher = {}
        for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
            teacher[f"W{i}"] = _t(cfg.weight_std * rng.standard_normal((fan_out, fan_in)))
            teacher[f"b{i}"] = _t(cfg.bias_std * rng.standard_normal(fan_out))
        fractions = [(h > 0).double().mean(0) for h in hidden_preactivations(teacher, x_train, cfg.activation)]
        if all(bool(((f >= lo) & (f <= hi)).all()) for f in fractions):
            break
    else:
        raise ValueError(
            f"no teacher with every hidden unit active on a fraction in [{lo}, {hi}] of the "
            f"training inputs after {_MAX_TEACHER_DRAWS} draws; lower min_active_fraction"
        )
    y_train = _noisy(teacher_forward(teacher, x_train, cfg.activation), rng, cfg.noise)
    return ToyDataset(x_train, y_train, x_test, teacher_forward(teacher, x_test, cfg.activation), teacher)


# ------------------------------------------- (d) "SGD smooths the sharpest directions" teacher MLP
@dataclass(frozen=True)
class SharpestDirectionsConfig:
    """Jastrzebski et al. (2018) teacher-student MLP: ``x ~ N(0, I_d / d)``; teacher
    ``d -> 100 -> 100 -> 1`` ReLU, no biases; ``y = teacher(x) + N(0, label_noise_var)``.

    Teacher weights (the paper only says "Gaussian"; our choice): layer 1 ``N(0, 1)`` (inputs
    already have variance 1/d, so pre-activations have unit variance), later layers
    ``N(0, 2 / fan_in)`` (He scaling keeps them O(1) through ReLUs), so the clean signal has
    variance ~1 against label noise 0.2. ``n_train`` / ``n_test`` are not given by the paper:
    1000 each is our default. Test labels are clean unless ``noisy_test``. ``activation``: the
    teacher's hidden activation (relu, the paper's; tanh, gelu, linear; the weight scaling stays).
    """

    d: int = 300
    hidden: tuple[int, ...] = (100, 100)
    n_train: int = 1000
    n_test: int = 1000
    label_noise_var: float = 0.2
    noisy_test: bool = False
    activation: str = "relu"

    def __post_init__(self):
        _check_activation(self.activation)
        for name in ("d", "n_train", "n_test"):
            _positive(name, getattr(self, name))
        check(len(self.hidden) >= 1, f"hidden must list at least one width, got {self.hidden!r}")
        for i, h in enumerate(self.hidden):
            _positive(f"hidden[{i}]", h)
        check(self.label_noise_var >= 0, f"label_noise_var must be >= 0, got {self.label_noise_var!r}")


def sharpest_directions(
    seed: int | np.random.Generator, cfg: SharpestDirectionsConfig = SharpestDirectionsConfig()
) -> ToyDataset:
    """Draw order: W1..WL, train inputs, test inputs, train noise, (test noise).
    Shapes: x ``(n, d)``; teacher W1 ``(h1, d)``, ..., WL ``(1, h_last)``; no biases."""
    rng = _rng(seed)
    widths = (cfg.d, *cfg.hidden, 1)
    teacher = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths), start=1):
        std = 1.0 if i == 1 else np.sqrt(2.0 / fan_in)
        teacher[f"W{i}"] = _t(std * rng.standard_normal((fan_out, fan_in)))
    input_std = np.sqrt(1.0 / cfg.d)
    x_train = _t(input_std * rng.standard_normal((cfg.n_train, cfg.d)))
    x_test = _t(input_std * rng.standard_normal((cfg.n_test, cfg.d)))
    noise_std = np.sqrt(cfg.label_noise_var)
    y_train = teacher_forward(teacher, x_train, cfg.activation) + _t(noise_std * rng.standard_normal(cfg.n_train))
    y_test = teacher_forward(teacher, x_test, cfg.activation)
    if cfg.noisy_test:
        y_test = y_test + _t(noise_std * rng.standard_normal(cfg.n_test))
    return ToyDataset(x_train, y_train, x_test, y_test, teacher)
