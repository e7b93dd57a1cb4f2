"""A spec for the common case: one bundled experiment, more seeds, a table of final values.

Arms are rows; each metric column is 'median [IQR]' over the seeds that did not diverge; chosen
pairs of arms get one line each saying whether every metric differs (IQRs disjoint) or is not
significant.
"""

from __future__ import annotations

from collections.abc import Sequence

from sgdlab.frontends.docs_numbers.core import Spec, register
from sgdlab.frontends.docs_numbers.stats import (
    arm_finals,
    cell,
    compare,
    configure,
    div,
    md_table,
    only_metrics,
    paired,
    seeds_text,
    stat,
)

# Final values only: a coarse evaluation grid changes no trajectory (evaluation never touches
# the training state or its batches; divergence is caught by the per-step mini-batch check, the
# evaluations only add a full-loss check) and skips figures and snapshots.
FINALS_ONLY = ["eval.grid='log'", "eval.points=8", "extra_figures=[]", "snapshots=0"]


COMPARISONS_LEGEND = ("Comparisons (lower / higher: the IQRs are disjoint; not significant: they overlap; "
                      "the count pairs the runs of each seed alive in both arms):")


def pretty(arm: str) -> str:
    return arm.replace("eta", "η").replace("sigma", "σ").replace(" /", " ÷")  # "100t/T" keeps its slash


def significance_lines(arms: dict, pairs: Sequence[tuple[str, str]], metrics: dict[str, str]) -> str:
    """One bullet per pair: for each metric the IQR verdict, and the per-seed count when the
    two arms ran on the same seeds (paired: same init and batches up to where they differ)."""
    out = [COMPARISONS_LEGEND, ""]
    for a, b in pairs:
        parts = []
        for m, label in metrics.items():
            p = paired(arms, a, b, m)
            parts.append(f"{label} {compare(stat(arms, a, m), stat(arms, b, m))}" + (f" ({p})" if p else ""))
        out.append(f"- {pretty(a)} vs {pretty(b)}: " + "; ".join(parts))
    return "\n".join(out)


def arms_table(arms: dict, metrics: dict[str, str], sig: int = 3, order: Sequence[str] | None = None) -> str:
    first = next(iter(metrics))
    rows = []
    for a in order or arms:
        s = stat(arms, a, first)
        runs = "1 (deterministic)" if s.n == 1 else f"{s.n}"
        rows.append([pretty(a), runs, div(s)] + [cell(stat(arms, a, m), sig) for m in metrics])
    return md_table(["arm", "runs", "diverged", *metrics.values()], rows)


def experiment_spec(name: str, experiment: str, seeds: int, metrics: dict[str, str], *, block: str | None = None,
                    sets: Sequence[str] = (), pairs: Sequence[tuple[str, str]] = (), intro: str = "",
                    note: str = "", extra=None, about: str = "", cost: float = 1.0, sig: int = 3) -> Spec:
    """Register a spec running ``experiment`` with ``seeds`` seeds (plus ``sets``) and rendering
    one block: intro, the arms table, the significance lines of ``pairs``, ``extra(data)`` (a
    callable returning more text, optional), note."""

    def produce(ctx) -> dict:
        cfg = configure(experiment, [f"seeds={seeds}", *FINALS_ONLY, *only_metrics(list(metrics)), *sets])
        res = ctx.run(experiment, cfg)
        return {"seeds": seeds_text(seeds, cfg.first_seed), "steps": cfg.steps, "arms": arm_finals(res, list(metrics))}

    def render(d: dict) -> dict[str, str]:
        parts = [intro.format(steps=f"{d['steps']:,}", seeds=d["seeds"]) if intro else "",
                 arms_table(d["arms"], metrics, sig)]
        if pairs:
            parts.append(significance_lines(d["arms"], pairs, metrics))
        if extra is not None:
            parts.append(extra(d))
        if note:
            parts.append(note)
        return {block or name: "\n\n".join(p for p in parts if p)}

    return register(Spec(name, (block or name,), about or f"{experiment} with {seeds} seeds", produce, render, cost))
