"""Shared by the reliability tests: a tiny diag-net, the CLI in-process, and the one-error check."""

import numpy as np
from click.testing import CliRunner

from sgdlab.core.exit_codes import BAD_INPUT
from sgdlab.frontends.cli import main

TINY = ["steps=300", "seeds=2", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'",
        "eval.points=4", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4", "arms.3.schedule.lr=0.4"]
TINY_CLI = [a for kv in TINY for a in ("--set", kv)]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error(r, *needles):
    """Exit 2 with exactly one `error:` line on stderr (no traceback) holding every needle; other
    lines may only be the run's own notes (how its runs were spread over processes)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and " process(es), " not in ln]
    assert r.exit_code == BAD_INPUT, r.output
    assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error: "), r.output
    for n in needles:
        assert n in lines[0], r.output
    return lines[0]


def xy_arrays() -> tuple[np.ndarray, np.ndarray]:
    """x (20, 5) standard normal (seed 0) and y = its first column: a small regression data file."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 5))
    return x, x[:, 0].copy()
