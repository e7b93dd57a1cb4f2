"""Limits on the amount of work one command may describe, checked before any of it is done
(documented in docs/reliability.md). Each bounds something whose cost grows with it, so that a
typo (``linspace(0.1, 0.3, 3000000)``, ``eval.points = 1e9``) is refused at once, even at
``--dry-run``, instead of running for hours or filling the memory.
"""

from __future__ import annotations

# Values of one grid axis (a list, or n of linspace/logspace/uniform/loguniform).
MAX_AXIS_VALUES = 10_000
# Points of a whole sweep grid (the product of its axes' lengths): each point is planned, recorded
# in index.json and shown in the tables (planning costs ~1-10 ms per point).
MAX_GRID_POINTS = 10_000
# Updates of one run (``steps``): 10^12 is beyond any run (weeks at a microsecond a step), and
# keeps the step arithmetic in int64.
MAX_STEPS = 10**12
# Runs of one experiment (arms x seeds): each is a row of every batched tensor, of runs.json and of
# every line of metrics.jsonl, and each is planned before the first step.
MAX_RUNS = 10**6
# A run's seed (first_seed + seeds - 1, an arm's own seeds): seeds are kept in int64 tables.
MAX_SEED = 2**63 - 1
# Evaluation steps of a run (eval.points, eval.head) and saved snapshots: each evaluation computes
# every metric of every run, each snapshot stores every parameter of every run.
MAX_EVAL_POINTS = 100_000

__all__ = ["MAX_AXIS_VALUES", "MAX_EVAL_POINTS", "MAX_GRID_POINTS", "MAX_RUNS", "MAX_SEED", "MAX_STEPS"]
