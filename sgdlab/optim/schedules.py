"""Step-size schedules as plain functions ``step -> step size`` (optax style).

Every builder takes the base step size ``lr`` and the run length ``total_steps`` (T) and
returns a function that accepts an ``int`` or an integer ``numpy`` array of steps
``t in [0, T)`` and returns the step size used *at* step ``t`` (the update from iterate
``t`` to ``t+1``). Fractions ``p`` are of the whole run; "divide by k at p" means the
step size is divided by ``k`` for ``t > floor(p T)``, as in the authors' toy code
(``if i == threshold: gamma /= decay`` after the update of iteration ``i``).

The ``*Schedule`` dataclasses are the typed configs that build these functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sgdlab.core.config import Choice, check
from sgdlab.core.registry import Registry

Schedule = Callable[[int | np.ndarray], float | np.ndarray]


def _frac(t, total_steps):
    return np.asarray(t, dtype=np.float64) / total_steps


def _out(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def constant(lr: float, total_steps: int) -> Schedule:
    """eta_t = lr."""
    return lambda t: _out(np.full(np.shape(t), lr, dtype=np.float64))


def piecewise(lr: float, total_steps: int, milestones=(), factors=()) -> Schedule:
    """eta_t = lr / prod{k_i : t > floor(p_i T)} (cumulative decays)."""
    thresholds = np.floor(np.asarray(milestones, dtype=np.float64) * total_steps)
    factors = np.asarray(factors, dtype=np.float64)

    def fn(t):
        t = np.asarray(t)
        div = np.ones(t.shape)
        for th, k in zip(thresholds, factors):
            div = np.where(t > th, div * k, div)
        return _out(lr / div)

    return fn


def steps(values, total_steps: int, milestones=()) -> Schedule:
    """eta_t = values[i] with i = #{j : t > floor(p_j T)}: values[0] up to step floor(p_1 T)
    included, values[1] after it, ... (the step of ``piecewise``, with explicit values)."""
    thresholds = np.floor(np.asarray(milestones, dtype=np.float64) * total_steps)
    vals = np.asarray(values, dtype=np.float64)
    # searchsorted(side="left") counts the thresholds strictly below t.
    return lambda t: _out(vals[np.searchsorted(thresholds, np.asarray(t), side="left")])


def warmup_decay(lr: float, total_steps: int, until: float, coef: float, power: float, decay: float) -> Schedule:
    """Warm-up of the authors' toy ReLU nets, then one decay.

    eta_t = lr (1 + coef (t/T)^power)            for t <= floor(p T)
          = lr (1 + coef (floor(pT)/T)^power) / k for t >  floor(p T)
    Linear warm-up (1-D regression): power = 1, coef = f - 1 with f = 400 p in the paper.
    Square-root warm-up (three-layer net): power = 0.5, coef = 5.
    """
    th = math.floor(until * total_steps)
    peak = lr * (1 + coef * (th / total_steps) ** power)

    def fn(t):
        t = np.asarray(t)
        return _out(np.where(t <= th, lr * (1 + coef * _frac(t, total_steps) ** power), peak / decay))

    return fn


def exp_warmup(lr: float, total_steps: int, until: float, base: float = 1.05) -> Schedule:
    """Exponential warm-up of the authors' CIFAR code (`piecewise_0Xepochs`, warmup_exp > 1).

    eta_t = lr base^(100 t/T)          for t/T < p
          = lr base^(100 p) / 10       for p <= t/T < 0.9
          = lr base^(100 p) / 100      for t/T >= 0.9
    (lr=0.75, base=1.05, p=0.5: 0.75 -> 8.6 -> 0.86 -> 0.086.)
    """
    return piecewise_0Xepochs(lr, total_steps, until=until, warmup_exp=base)


def piecewise_0Xepochs(lr: float, total_steps: int, until: float, warmup_exp: float = 1.0,
                       warmup_factor: float = 1.0) -> Schedule:
    """The authors' CIFAR `piecewise_0Xepochs` family, all three branches, exactly.

    With s = t/T and p = `until`:
    * warmup_exp > 1 (exponential): lr w^(100 s) for s < p; then lr w^(100 p)/10 until 0.9; then /100.
    * warmup_exp < 1 (power):       lr (1 + (100 s)^w) for s < p; then lr (1 + (100 p)^w)/10; then /100.
    * warmup_exp = 1 (interpolated, *the odd variant*): linear interpolation from lr to
      warmup_factor*lr over the first *half* of the run (not over p), cut at p; then
      (p/0.5) warmup_factor lr / 10 until 0.9 and /100 after. The drop at p is therefore
      not a fixed /10: with warmup_factor = 1 (no warm-up, the default) the step falls from
      lr to (p/0.5) lr/10, a factor 5/p: x50, x16.7, x10 for p = 0.1, 0.3, 0.5. Kept only to
      reproduce the authors' numbers.
    """

    def fn(t):
        s = _frac(t, total_steps)
        if warmup_exp > 1.0:
            rise, peak = lr * warmup_exp ** (100 * s), lr * warmup_exp ** (100 * until)
        elif warmup_exp < 1.0:
            rise, peak = lr * (1 + (100 * s) ** warmup_exp), lr * (1 + (100 * until) ** warmup_exp)
        else:
            rise = lr + (warmup_factor - 1) * lr * np.minimum(s / 0.5, 1.0)
            peak = until / 0.5 * warmup_factor * lr
        return _out(np.where(s < until, rise, np.where(s < 0.9, peak / 10, peak / 100)))

    return fn


def cosine(lr: float, total_steps: int) -> Schedule:
    """eta_t = lr (1 + cos(pi t/T)) / 2."""
    return lambda t: _out(lr * (0.5 + 0.5 * np.cos(np.pi * _frac(t, total_steps))))


# --------------------------------------------------------------------------- configs


class ScheduleConfig(Choice):
    """A step-size schedule; ``build(T)`` returns the plain function."""

    registry: ClassVar[Registry] = Registry("schedule")

    def build(self, total_steps: int) -> Schedule:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_lr(self):
        check(math.isfinite(self.lr) and self.lr > 0, f"lr: step size must be a positive number, got {self.lr}")

    def describe(self) -> str:
        return f"{self.kind}(lr={self.lr:g})"


def _check_frac(name, p):
    check(0.0 <= p <= 1.0, f"{name}: decay point must be a fraction of the run in [0, 1], got {p}")


@dataclass(frozen=True)
class Constant(ScheduleConfig):
    """The same step size lr at every step."""

    kind: ClassVar[str] = "constant"
    lr: float = 0.1

    def __post_init__(self):
        self._check_lr()

    def build(self, total_steps):
        return constant(self.lr, total_steps)

    def describe(self):
        return f"eta={self.lr:g} constant"


@dataclass(frozen=True)
class Piecewise(ScheduleConfig):
    """Step size lr, divided by factors[i] (cumulatively) after each milestone fraction of the run."""

    kind: ClassVar[str] = "piecewise"
    lr: float = 0.1
    milestones: tuple[float, ...] = ()  # fractions of the run after which the step is divided
    factors: tuple[float, ...] = ()  # divisor at each milestone (cumulative)

    def __post_init__(self):
        self._check_lr()
        check(len(self.milestones) == len(self.factors),
              f"milestones and factors must have the same length, got {len(self.milestones)} and {len(self.factors)}")
        for p in self.milestones:
            _check_frac("milestones", p)
        for k in self.factors:
            check(k > 0 and math.isfinite(k), f"factors: divisors must be positive, got {k}")

    def build(self, total_steps):
        return piecewise(self.lr, total_steps, self.milestones, self.factors)

    def describe(self):
        decays = ", ".join(f"/{k:g} at {100 * p:g}%" for p, k in zip(self.milestones, self.factors))
        return f"eta={self.lr:g}" + (f", {decays}" if decays else " constant")


@dataclass(frozen=True)
class Steps(ScheduleConfig):
    """Explicit values per phase: ``values[0]`` up to step ``floor(milestones[0] T)`` included,
    then ``values[1]``, ... (the convention of ``piecewise``). The one schedule whose values may
    be 0, which switches a noise level off: ``sigma = {kind = "steps", values = [1.0, 0.0],
    milestones = [0.8]}`` is label noise for the first 80% of the run, none after."""

    kind: ClassVar[str] = "steps"
    values: tuple[float, ...] = (0.1,)  # one value per phase, >= 0 (len(milestones) + 1 of them)
    milestones: tuple[float, ...] = ()  # increasing fractions of the run where the next phase starts

    def __post_init__(self):
        check(len(self.values) == len(self.milestones) + 1,
              f"values needs one value per phase (len(milestones) + 1 = {len(self.milestones) + 1}), "
              f"got {len(self.values)}")
        for v in self.values:
            check(math.isfinite(v) and v >= 0, f"values must be finite numbers >= 0, got {v}")
        for p in self.milestones:
            _check_frac("milestones", p)
        check(list(self.milestones) == sorted(self.milestones),
              f"milestones must be increasing, got {list(self.milestones)}")

    @property
    def lr(self) -> float:
        """The largest value (what range checks and labels read, e.g. label_flip's p <= 1)."""
        return max(self.values)

    def build(self, total_steps):
        return steps(self.values, total_steps, self.milestones)

    def describe(self):
        if not self.milestones:
            return f"eta={self.values[0]:g} constant"
        later = [f"{v:g} after {100 * p:g}%" for p, v in zip(self.milestones, self.values[1:])]
        parts = [f"eta={self.values[0]:g}", *later]
        return ", ".join(parts)


@dataclass(frozen=True)
class LinearWarmup(ScheduleConfig):
    """eta (1 + (f-1) t/T) up to p, then / decay (authors' 1-D regression; f = 400 p there)."""

    kind: ClassVar[str] = "linear_warmup"
    lr: float = 2e-4
    until: float = 0.5  # p: end of the warm-up, fraction of the run
    factor: float = 200.0  # f: the step size would reach f*lr at t = T
    decay: float = 3.0  # divisor applied after p

    def __post_init__(self):
        self._check_lr()
        _check_frac("until", self.until)
        check(self.factor > 0 and self.decay > 0, "factor and decay must be positive")

    def build(self, total_steps):
        return warmup_decay(self.lr, total_steps, self.until, self.factor - 1.0, 1.0, self.decay)

    def describe(self):
        return f"eta={self.lr:g} linear warm-up x{self.factor:g} to {100 * self.until:g}%, then /{self.decay:g}"


@dataclass(frozen=True)
class PowerWarmup(ScheduleConfig):
    """eta (1 + c (t/T)^q) up to p, then / decay (authors' three-layer net: c=5, q=0.5)."""

    kind: ClassVar[str] = "power_warmup"
    lr: float = 0.04
    until: float = 0.5
    coef: float = 5.0
    power: float = 0.5
    decay: float = 5.0

    def __post_init__(self):
        self._check_lr()
        _check_frac("until", self.until)
        check(self.power > 0 and self.decay > 0, "power and decay must be positive")

    def build(self, total_steps):
        return warmup_decay(self.lr, total_steps, self.until, self.coef, self.power, self.decay)

    def describe(self):
        return (f"eta={self.lr:g} (1+{self.coef:g}(t/T)^{self.power:g}) to {100 * self.until:g}%, "
                f"then /{self.decay:g}")


@dataclass(frozen=True)
class ExpWarmup(ScheduleConfig):
    """Exponential warm-up lr base^(100 t / T) up to fraction until, then /10, and /100 from 90% of the run."""

    kind: ClassVar[str] = "exp_warmup"
    lr: float = 0.75
    until: float = 0.5
    base: float = 1.05  # step grows by base every 1% of the run

    def __post_init__(self):
        self._check_lr()
        _check_frac("until", self.until)
        check(self.base > 1.0, f"base: exponential warm-up needs base > 1, got {self.base}")

    def build(self, total_steps):
        return exp_warmup(self.lr, total_steps, self.until, self.base)

    def describe(self):
        return f"eta={self.lr:g} x{self.base:g}^(100t/T) to {100 * self.until:g}%, /10, /100 at 90%"


@dataclass(frozen=True)
class Piecewise0XEpochs(ScheduleConfig):
    """The authors' CIFAR `piecewise_0Xepochs` exactly, incl. the p-dependent decay (see function)."""

    kind: ClassVar[str] = "piecewise_0Xepochs"
    lr: float = 0.05
    until: float = 0.5
    warmup_exp: float = 1.0
    warmup_factor: float = 1.0

    def __post_init__(self):
        self._check_lr()
        _check_frac("until", self.until)
        check(self.warmup_exp > 0 and self.warmup_factor > 0, "warmup_exp and warmup_factor must be positive")

    def build(self, total_steps):
        return piecewise_0Xepochs(self.lr, total_steps, self.until, self.warmup_exp, self.warmup_factor)


@dataclass(frozen=True)
class Cosine(ScheduleConfig):
    """Cosine decay from lr at step 0 towards 0 at the end of the run."""

    kind: ClassVar[str] = "cosine"
    lr: float = 0.1

    def __post_init__(self):
        self._check_lr()

    def build(self, total_steps):
        return cosine(self.lr, total_steps)
