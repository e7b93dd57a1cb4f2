"""Sweep grids: the axis syntax and the planner that merges grid points into batched jobs.

A grid point is the base experiment with some keys overridden. Points that differ only in
their arms (step sizes, schedules, batch sizes, samplers) run as *one* job: their arms are
merged into one experiment, which the engine batches as a tensor dimension. Points that
differ in anything else (data, model, steps, seeds, ...) become separate jobs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from dataclasses import dataclass

import numpy as np

from sgdlab.core.config import override, override_values, to_dict
from sgdlab.core.errors import ConfigError
from sgdlab.core.limits import MAX_AXIS_VALUES, MAX_GRID_POINTS
from sgdlab.spec.experiment import ExperimentConfig
from sgdlab.store.sweeps import JOBS, Point, _short

__all__ = ["Job", "check_grid_size", "each_point", "parse_axis", "parse_values", "plan", "point_configs"]

_RANGE = re.compile(r"^(linspace|logspace|loguniform|uniform)\((.*)\)$")


def parse_values(text: str) -> list:
    """Values of one grid axis.

    ``0.1,0.2,0.3`` (TOML values, comma separated; lists in brackets stay whole),
    ``linspace(lo, hi, n)``, ``logspace(lo, hi, n)`` (lo, hi are the values, not exponents),
    ``uniform(lo, hi, n, seed)`` and ``loguniform(lo, hi, n, seed)`` (random, sorted).
    """
    text = text.strip()
    m = _RANGE.match(text)
    if m:
        fn, args = m.group(1), [a.strip() for a in m.group(2).split(",")]
        try:
            lo, hi, n = float(args[0]), float(args[1]), int(args[2])
            seed = int(args[3]) if len(args) > 3 else 0
        except (ValueError, IndexError):
            raise ConfigError(f"grid range {text!r}: expected {fn}(lo, hi, n"
                              f"{', seed' if 'uniform' in fn else ''})") from None
        if n < 1 or (fn in ("logspace", "loguniform") and (lo <= 0 or hi <= 0)):
            raise ConfigError(f"grid range {text!r}: need n >= 1 and, on a log scale, lo, hi > 0")
        if n > MAX_AXIS_VALUES:  # before a single value is computed
            raise ConfigError(f"grid range {text!r}: n = {n} values exceed the limit of {MAX_AXIS_VALUES} per axis "
                              f"(sgdlab.core.limits.MAX_AXIS_VALUES)")
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"grid range {text!r}: lo and hi must be finite numbers")
        if fn == "linspace":
            return np.linspace(lo, hi, n).tolist()
        if fn == "logspace":
            return np.geomspace(lo, hi, n).tolist()
        rng = np.random.default_rng(seed)
        if fn == "uniform":
            return np.sort(rng.uniform(lo, hi, n)).tolist()
        return np.sort(np.exp(rng.uniform(math.log(lo), math.log(hi), n))).tolist()
    import tomllib

    try:
        vals = tomllib.loads(f"v = [{text}]")["v"]
    except tomllib.TOMLDecodeError:
        vals = [v.strip() for v in text.split(",")]  # bare words: strings
    if not vals:
        raise ConfigError(f"grid axis {text!r} has no values")
    return vals


def check_grid_size(axes: list[tuple[str, list]]) -> int:
    """The number of grid points, refused above the limits (sgdlab.core.limits) before any is planned."""
    total = 1
    for k, vals in axes:
        if not isinstance(vals, (list, tuple)) or not vals:
            raise ConfigError(f"grid axis {k!r} must be a non-empty list of values, got {vals!r}")
        if len(vals) > MAX_AXIS_VALUES:
            raise ConfigError(f"grid axis {k!r} has {len(vals)} values; the limit is {MAX_AXIS_VALUES} per axis "
                              f"(sgdlab.core.limits.MAX_AXIS_VALUES)")
        total *= len(vals)
    if total > MAX_GRID_POINTS:
        raise ConfigError(f"the grid has {total} points ({' x '.join(str(len(v)) for _, v in axes)}); the limit is "
                          f"{MAX_GRID_POINTS} (sgdlab.core.limits.MAX_GRID_POINTS): split the sweep")
    return total


def parse_axis(spec: str) -> tuple[str, list]:
    if "=" not in spec:
        raise ConfigError(f"grid axis {spec!r} must look like key.path=v1,v2,... or key=logspace(lo,hi,n)")
    key, text = spec.split("=", 1)
    return key.strip(), parse_values(text)


# --------------------------------------------------------------------------- planning

@dataclass
class Job:
    id: int
    config: ExperimentConfig

    @property
    def dir(self) -> str:
        return f"{JOBS}/job-{self.id:04d}"


# Keys that do not separate jobs: points differing only in these share one batched job.
_NOT_JOB_KEYS = ("arms", "name", "description")


def _literal(text: str) -> str:
    """``text`` as an arm name that reads as itself (braces escaped)."""
    return text.replace("{", "{{").replace("}", "}}")


class _Keys:
    """What makes two points one job (their configs but the arms) and two arms one arm (all but
    the name), computed once per distinct object: a grid's points share the parts their values
    leave alone (``override`` rebuilds only what an assignment touches), so thousands of points
    cost a few serializations. Keyed by ``id``: the configs stay alive for the whole plan."""

    def __init__(self):
        self.parts: dict[int, str] = {}
        self.arms: dict[int, str] = {}

    def job(self, cfg: ExperimentConfig) -> str:
        if id(cfg) in self.parts:  # points share the config of their non-arm values
            return self.parts[id(cfg)]
        out = []
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if f.name in _NOT_JOB_KEYS or v is None:
                continue
            if id(v) not in self.parts:
                self.parts[id(v)] = json.dumps(to_dict(v), sort_keys=True)
            out.append(f"{f.name}={self.parts[id(v)]}")
        self.parts[id(cfg)] = "\n".join(out)
        return self.parts[id(cfg)]

    def arm(self, arm) -> str:
        if id(arm) not in self.arms:
            d = to_dict(arm)
            d.pop("name")
            self.arms[id(arm)] = json.dumps(d, sort_keys=True)
        return self.arms[id(arm)]


_ARM_KEY = re.compile(r"^arms\.(\d+)\.(.+)$")


def each_point(base: ExperimentConfig, axes: list[tuple[str, list]]) -> list[tuple]:
    """``(values, config, job part)`` of every grid point, in ``itertools.product`` order: ``base``
    with the point's values set, each point overridden on its own; the job part is a config whose
    fields but the arms are the point's (here the point's config itself)."""
    keys = [k for k, _ in axes]
    out = []
    for combo in itertools.product(*[vals for _, vals in axes]) if axes else [()]:
        cfg = override_values(base, list(zip(keys, combo)))
        out.append((dict(zip(keys, combo)), cfg, cfg))
    return out


def point_configs(base: ExperimentConfig, axes: list[tuple[str, list]]) -> list[tuple]:
    """:func:`each_point`, built from shared parts: the configs of the non-arm values once per
    combination of those values, each arm once per combination of its own axes' values, and a
    point their union (its checks run again). The same configs (tested), at the cost of one
    config per point rather than one override per axis per point, and points share their arm
    objects, so the planner computes an arm's label and identity once. Axes over whole arms
    (``arms``, ``arms.N``) and any config error take the point-by-point way, which words the error."""
    keys = [k for k, _ in axes]
    arm_axis: dict[str, tuple[int, str]] = {}
    for k in keys:
        m = _ARM_KEY.match(k)
        if m and int(m.group(1)) < len(base.arms):
            arm_axis[k] = (int(m.group(1)), m.group(2))
        elif k == "arms" or k.startswith("arms."):
            return each_point(base, axes)
    other = [i for i, k in enumerate(keys) if k not in arm_axis]
    by_arm: dict[int, list[int]] = {}
    for i, k in enumerate(keys):
        if k in arm_axis:
            by_arm.setdefault(arm_axis[k][0], []).append(i)
    configs: dict[tuple, ExperimentConfig] = {}
    arms: dict[tuple, object] = {}
    out = []
    try:
        for idx in itertools.product(*[range(len(vals)) for _, vals in axes]):
            values = {k: axes[i][1][j] for i, (k, j) in enumerate(zip(keys, idx))}
            ckey = tuple(idx[i] for i in other)
            if ckey not in configs:
                configs[ckey] = override_values(base, [(keys[i], values[keys[i]]) for i in other])
            cfg = configs[ckey]
            if by_arm:
                new_arms = list(cfg.arms)
                for n, axis_ids in by_arm.items():
                    akey = (n, tuple(idx[i] for i in axis_ids))
                    if akey not in arms:
                        arms[akey] = override_values(base.arms[n], [(arm_axis[keys[i]][1], values[keys[i]])
                                                                    for i in axis_ids])
                    new_arms[n] = arms[akey]
                cfg = dataclasses.replace(cfg, arms=tuple(new_arms))
            out.append((values, cfg, configs[ckey]))
    except ConfigError:
        return each_point(base, axes)
    return out


def plan(base: ExperimentConfig, axes: list[tuple[str, list]], sets: tuple[str, ...] = ()) -> tuple[list[Point], list[Job]]:
    """Expand the grid and merge points that can share one batched job.

    Within a job, identical arms (same optimizer and schedule) are run once and shared by
    every point that has them; other arms are renamed ``"<arm> | <point label>"``.
    """
    base = override(base, list(sets)) if sets else base
    # Points are named by the base experiment's arm labels (after `sets`, before the axes), so an
    # arm keeps one identity across the grid while its resolved label follows each point's values.
    base_labels = [a.label for a in base.arms]
    keys = [k for k, _ in axes]
    check_grid_size(axes)
    if len(set(keys)) != len(keys):
        raise ConfigError(f"grid axes repeat a key: {keys}")
    points_cfg = point_configs(base, axes)
    jobs: dict[str, dict] = {}
    points = []
    keys_of = _Keys()
    for pid, (values, cfg, part) in enumerate(points_cfg):
        key = keys_of.job(part)
        if key not in jobs:
            jobs[key] = {"id": len(jobs), "cfg": cfg, "arms": {}}
        job = jobs[key]
        mapping, labels = {}, {}
        label = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
        literal = _literal(label)  # arm names may hold {placeholders}
        for base_label, arm in zip(base_labels, cfg.arms):
            sig = keys_of.arm(arm)
            if sig not in job["arms"]:
                # the arm's resolved label, braces escaped: the same label, with no placeholder left to resolve
                name = arm.name if not label else f"{_literal(arm.label)} | {literal}"
                job["arms"][sig] = arm.renamed(name)
            mapping[base_label] = job["arms"][sig].label
            labels[base_label] = arm.label
        points.append(Point(pid, values, job["id"], mapping, labels))
    out_jobs = []
    for j in sorted(jobs.values(), key=lambda j: j["id"]):
        cfg = dataclasses.replace(j["cfg"], arms=tuple(j["arms"].values()),
                                  name=f"{base.name}-job{j['id']}")
        out_jobs.append(Job(j["id"], cfg))
    return points, out_jobs
