"""Multi-phase arms: one arm as a sequence of phases, each with its own optimizer, schedule and
length, sharing the parameters and the metrics of the run::

    [[arms]]
    name = "label noise, then GD"
    [[arms.phases]]
    optimizer = {kind = "label_noise_sgd", sigma = 1.0}
    schedule = {kind = "constant", lr = 0.05}
    fraction = 0.8            # or steps = 16000
    [[arms.phases]]           # no length: the rest of the run
    optimizer = {kind = "gd"}
    schedule = {kind = "constant", lr = 0.1}

Lengths. A phase runs ``steps`` updates or a ``fraction`` of the run's ``T`` updates; the last
phase may omit both and runs to the end. Boundaries are rounded cumulatively,
``end_k = S_k + round(F_k T)`` with ``S_k`` / ``F_k`` the steps / fractions of phases ``0..k``,
so fractions that sum to 1 cover the run exactly. Every phase has at least one update and the
phases cover exactly ``T``.

Time. Phase ``k`` makes the updates ``t in [start_k, end_k)``. Its step-size schedule, and what
its optimizer schedules (a noise level given as a schedule, the SDE's ``noise_steps``,
``label_flip``) are built over the phase's own length and evaluated at ``t - start_k``: a phase
behaves like a run of its own. Randomness (batches, label and gradient noise) stays keyed by the
absolute step ``t``, so results never depend on chunking or resuming.

State. Parameters carry over. Each phase starts its own optimizer state: momentum buffers at 0,
the EMA copy at the weights of the phase start (as a fresh run from those weights). The state at
step ``t`` belongs to the phase whose update produced it (the phase of update ``t - 1``; the
first phase at ``t = 0``): an evaluation at a boundary logs the end of the earlier phase, with
its EMA and its batch law for curvature. The divergence threshold stays the run's (from its
step-0 loss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sgdlab.core.config import check
from sgdlab.optim.config import SGD, OptimizerConfig
from sgdlab.optim.schedules import Constant, Schedule, ScheduleConfig

# Fractions of one arm may sum to 1 up to float rounding (0.1 + 0.2 + 0.7 = 1.0000000000000002).
FRACTION_SLACK = 1e-9


@dataclass(frozen=True)
class PhaseConfig:
    """One phase of an arm: optimizer, schedule (over the phase's own length) and length."""

    optimizer: OptimizerConfig = field(default_factory=SGD)
    schedule: ScheduleConfig = field(default_factory=Constant)
    steps: int | None = None  # length in updates; or
    fraction: float | None = None  # length as a fraction of the run (experiment `steps`); neither: the rest

    def __post_init__(self):
        check(self.steps is None or self.fraction is None,
              f"a phase takes steps or fraction, not both (got steps={self.steps}, fraction={self.fraction})")
        check(self.steps is None or self.steps >= 1, f"phase steps must be >= 1, got {self.steps}")
        check(self.fraction is None or (math.isfinite(self.fraction) and 0 < self.fraction <= 1),
              f"phase fraction must be in (0, 1], got {self.fraction}")

    @property
    def sized(self) -> bool:
        return self.steps is not None or self.fraction is not None

    def length_text(self) -> str:
        if self.steps is not None:
            return f"{self.steps} steps"
        return f"{100 * self.fraction:g}%" if self.fraction is not None else "rest"


def check_phases(arm: str, phases: tuple[PhaseConfig, ...]) -> None:
    """What can be checked without the run length: a non-empty list, only the last phase
    without a length, fractions summing to at most 1."""
    check(len(phases) >= 1, f"arm {arm!r}: phases must list at least one phase (or give the arm an "
                            f"optimizer and schedule instead)")
    for i, p in enumerate(phases[:-1]):
        check(p.sized, f"arm {arm!r}: phase {i} has no length; give it steps or fraction (only the last "
                       f"phase may omit both: it runs to the end)")
    total = sum(p.fraction or 0.0 for p in phases)
    check(total <= 1 + FRACTION_SLACK, f"arm {arm!r}: phase fractions sum to {total:g} > 1")


def phase_bounds(arm: str, phases: tuple[PhaseConfig, ...], total_steps: int) -> list[tuple[int, int]]:
    """``[(start, end)]`` of each phase's updates in a run of ``total_steps`` (module docstring)."""
    bounds, steps, frac = [], 0, 0.0
    for i, p in enumerate(phases):
        start = bounds[-1][1] if bounds else 0
        if p.sized:
            steps += p.steps or 0
            frac += p.fraction or 0.0
            end = steps + math.floor(min(frac, 1.0) * total_steps + 0.5)
        else:
            end = total_steps
        check(end > start, f"arm {arm!r}: phase {i} ({p.length_text()}) gets no update of the run's "
                           f"{total_steps} steps")
        check(end <= total_steps, f"arm {arm!r}: phases 0..{i} take {end} steps, more than the run's "
                                  f"{total_steps} (experiment steps)")
        bounds.append((start, end))
    check(bounds[-1][1] == total_steps,
          f"arm {arm!r}: the phases cover {bounds[-1][1]} of the run's {total_steps} steps; leave the last "
          f"phase's length out so that it runs to the end")
    return bounds


def run_schedule(phases: tuple[PhaseConfig, ...], bounds: list[tuple[int, int]]) -> Schedule:
    """The step size at absolute step ``t`` of the whole run: phase ``k``'s schedule, built over
    its length, at ``t - start_k``. One phase (it starts at 0) is its schedule function itself."""
    fns = [p.schedule.build(e - s) for p, (s, e) in zip(phases, bounds)]
    if len(fns) == 1:
        return fns[0]
    starts = np.array([s for s, _ in bounds])

    def fn(t):
        t = np.asarray(t)
        k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(fns) - 1)
        out = np.empty(t.shape, dtype=np.float64)
        for i in np.unique(k):
            sel = k == i
            out[sel] = fns[i](t[sel] - starts[i])
        return float(out) if out.ndim == 0 else out

    return fn


def describe_optimizer(opt: OptimizerConfig) -> str:
    """``sgd(b=4, without replacement)``, ``gd``, ``label_noise_sgd(b=1)``: the runs.json form."""
    if not hasattr(opt, "batch_size"):
        return opt.kind
    return f"{opt.kind}(b={opt.batch_size}{'' if getattr(opt, 'replacement', True) else ', without replacement'})"


def describe_phases(phases: tuple[PhaseConfig, ...]) -> tuple[str, str]:
    """(schedule, optimizer) texts of a phased arm for tables, e.g.
    ``"label_noise_sgd eta=0.05 constant for 80%, then gd eta=0.1 constant for the rest"``;
    one phase reads as the plain arm it equals."""
    if len(phases) == 1:
        return phases[0].schedule.describe(), describe_optimizer(phases[0].optimizer)
    sched = ", then ".join(f"{p.optimizer.kind} {p.schedule.describe()} for "
                           f"{'the rest' if not p.sized else p.length_text()}" for p in phases)
    opt = " then ".join(describe_optimizer(p.optimizer) for p in phases)
    return sched, opt
