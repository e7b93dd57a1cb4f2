"""Typed command-line flags derived from the experiment config: one option per top-level scalar
field of :class:`~sgdlab.spec.experiment.ExperimentConfig` (``--steps``, ``--seeds``,
``--dtype {float64,float32}``, ``--fused/--no-fused``, ...), so a new field is a new flag."""

from __future__ import annotations

import dataclasses
import typing

import click

__all__ = ["typed_flags"]

# Fields that name or describe an experiment rather than set how it runs: no flag.
NOT_FLAGS = {"name", "description"}


def _scalar_fields() -> list[tuple[str, object]]:
    """(name, type) of the top-level fields that take one number, string, boolean or choice."""
    from sgdlab.spec.experiment import ExperimentConfig

    hints = typing.get_type_hints(ExperimentConfig)
    out = []
    for f in dataclasses.fields(ExperimentConfig):
        tp = hints[f.name]
        if tp in (int, float, str, bool) or typing.get_origin(tp) is typing.Literal:
            out.append((f.name, tp))
    return out


def typed_flags(fn):
    """Add one option per top-level scalar ExperimentConfig field to the click command ``fn``;
    each defaults to None (not given: the config's value stays)."""
    for name, tp in reversed(_scalar_fields()):
        if name in NOT_FLAGS:
            continue
        flag = "--" + name.replace("_", "-")
        if tp is bool:
            fn = click.option(flag + "/--no-" + name.replace("_", "-"), name, default=None,
                              help=f"override {name}")(fn)
        elif typing.get_origin(tp) is typing.Literal:
            fn = click.option(flag, name, type=click.Choice(typing.get_args(tp)), default=None,
                              help=f"override {name}")(fn)
        else:
            fn = click.option(flag, name, type=tp, default=None, help=f"override {name}")(fn)
    return fn
