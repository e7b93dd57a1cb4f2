"""Statistics, formatting and result collection for the generated blocks (pure functions).

Medians with interquartile ranges (numpy's linear percentiles) over the seeds that did not
diverge; two arms are called different only when their IQRs are disjoint, otherwise "not
significant"; arms run on the same seeds (same init and batch stream) are also compared seed by
seed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stat:
    """Median and quartiles over the finite values; n = all runs, alive = finite ones."""

    n: int
    alive: int
    median: float | None
    q25: float | None
    q75: float | None

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stat:
        x = np.array([np.nan if v is None else v for v in values], dtype=float)
        ok = x[np.isfinite(x)]
        if ok.size == 0:
            return cls(len(x), 0, None, None, None)
        q25, med, q75 = np.percentile(ok, [25, 50, 75])
        return cls(len(x), int(ok.size), float(med), float(q25), float(q75))

    @property
    def diverged(self) -> int:
        return self.n - self.alive


def overlap(a: Stat, b: Stat) -> bool:
    """True when the interquartile ranges intersect (the difference is then 'not significant')."""
    if a.median is None or b.median is None:
        return True
    return a.q25 <= b.q75 and b.q25 <= a.q75


def compare(a: Stat, b: Stat, lower: str = "lower", higher: str = "higher") -> str:
    """'lower' / 'higher' when the IQRs are disjoint, else 'not significant (IQRs overlap)'."""
    if overlap(a, b):
        return "not significant (IQRs overlap)"
    return lower if a.median < b.median else higher


def paired(arms: dict, a: str, b: str, metric: str) -> str:
    """Per-seed comparison of two arms run on the same seeds (same init and batch stream):
    'lower in k of m' over the m seeds alive in both; '' when the arms share no seed."""
    va = dict(zip(arms[a]["seeds"], arms[a][metric]))
    vb = dict(zip(arms[b]["seeds"], arms[b][metric]))
    both = [s for s in va if s in vb and va[s] is not None and vb[s] is not None]
    if len(both) < 2:
        return ""
    k = sum(va[s] < vb[s] for s in both)
    return f"lower in {k} of {len(both)} seeds"


def num(x: float | None, sig: int = 3) -> str:
    """Compact number: integers and halves as is, 1e-2 <= |x| < 1e4 with ``sig`` significant
    digits, else scientific without exponent padding (1.58e-4)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if x == 0:
        return "0"
    if abs(x) < 1e4 and float(2 * x).is_integer():
        return f"{x:g}"
    if 1e-2 <= abs(x) < 1e4:
        return f"{x:.{sig}g}"
    m, e = f"{x:.{sig - 1}e}".split("e")
    return f"{m}e{int(e)}"


def cell(s: Stat, sig: int = 3) -> str:
    """'median [q25, q75]', the value alone for a single (deterministic) run, '–' when every
    run diverged."""
    if s.median is None:
        return "–"
    if s.n == 1:
        return num(s.median, sig)
    return f"{num(s.median, sig)} [{num(s.q25, sig)}, {num(s.q75, sig)}]"


def div(s: Stat) -> str:
    return f"{s.diverged}/{s.n}"


def seeds_text(n: int, first: int = 0) -> str:
    return f"{n} seed{'s' if n != 1 else ''} ({first}-{first + n - 1})" if n > 1 else f"1 seed ({first})"


def md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- collecting results

def label(arm) -> str:
    """The arm's name as runs and summaries carry it (its resolved label where names hold
    placeholders such as ``{schedule.lr}``)."""
    return getattr(arm, "label", arm.name)


def arm_finals(res, metrics: Sequence[str], step_index: int = -1) -> dict:
    """Per arm: seeds, diverged flags and each metric's value per run at ``step_index``
    (None where the run diverged or the value is not finite)."""
    div_at = {r["index"]: r.get("diverged_at") for r in (res.summary or {}).get("runs", [])}
    out = {}
    for arm in res.config.arms:
        runs = [r for r in res.runs if r["arm"] == label(arm)]
        entry = {"seeds": [r["seed"] for r in runs], "diverged": [div_at.get(r["index"]) is not None for r in runs]}
        for m in metrics:
            if m not in res.metrics:
                continue
            vals = res.metrics[m][step_index, [r["index"] for r in runs]]
            entry[m] = [None if d or not math.isfinite(v) else float(v) for v, d in zip(vals, entry["diverged"])]
        out[label(arm)] = entry
    return out


def add_late_levels(res, finals: dict, metric: str = "train_loss") -> dict:
    """Adds ``late_level`` to every arm of ``finals`` (from :func:`arm_finals` on ``res``): per
    run, the median of ``metric`` over the evaluation steps T/2..T (non-finite values skipped),
    the level a stabilized run hovers at; None for a run that diverged (at any time: a late
    divergence means it never stabilized) or has no finite value. Returns ``finals``."""
    late = res.steps >= res.steps[-1] // 2
    for arm in res.config.arms:
        e = finals[label(arm)]
        v = res.metrics[metric][late][:, res.arm(label(arm))]
        with warnings.catch_warnings():  # a run with no finite value: NaN -> None below
            warnings.simplefilter("ignore", RuntimeWarning)
            lv = np.nanmedian(np.where(np.isfinite(v), v, np.nan), axis=0)
        e["late_level"] = [None if d or not np.isfinite(x) else float(x) for x, d in zip(lv, e["diverged"])]
    return finals


def stat(arms: dict, arm: str, metric: str) -> Stat:
    return Stat.of(arms[arm][metric])




# --------------------------------------------------------------------------- configs

def configure(experiment: str, sets: Sequence[str] = (), arms: Sequence[dict] | None = None):
    """A bundled experiment with ``key=value`` overrides and, optionally, its arms replaced by
    ``arms`` (TOML-like dicts: name, optimizer, schedule)."""
    from sgdlab.core.config import from_dict, to_dict
    from sgdlab.workflows import api

    cfg = api.override(api.load_experiment(experiment), list(sets))
    if arms is not None:
        d = to_dict(cfg)
        d["arms"] = list(arms)
        cfg = from_dict(type(cfg), d)
    return cfg


def only_metrics(names: Sequence[str]) -> list[str]:
    """Overrides that log only ``names`` and draw them as the panels (a panel must be logged)."""
    quoted = ", ".join(f'"{n}"' for n in names)
    return [f"metrics.names=[{quoted}]", f"figure=[{quoted}]"]


def constant_arm(name: str, lr: float, optimizer: dict) -> dict:
    return {"name": name, "optimizer": dict(optimizer), "schedule": {"kind": "constant", "lr": lr}}
