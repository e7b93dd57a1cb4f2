"""Crash consistency of the newer doors: a run with a multi-phase arm and a run with an exact
initial point (``arms.N.init = {file = ...}``), killed (SIGKILL) inside a chosen atomic write and
resumed, again and again, end byte-identical to an uninterrupted run. Kill points are write counts
(an observable event), never wall-clock delays. Slow suite only.

(Multi-worker / sharded runs are covered where sharding lives.)
"""

import random
from pathlib import Path

import numpy as np
import pytest
from test_crash_consistency import FIRST_TRIES, _summary, killed, sgdlab_cli

from sgdlab.store.runs import RunDir

pytestmark = pytest.mark.slow

SMALL = ["--set", "eval.grid='linear'", "--set", "eval.points=40", "--set", "checkpoint_seconds=0.05", "--seeds", "2",
         "--no-progress"]
PHASED = ["run", "label-noise-diag-net-phases", "--steps", "20000", *SMALL]
DIAG = ["data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4",
        "arms.3.schedule.lr=0.4"]


def _init_cmd(root: Path) -> list:
    init = root / "init.npz"
    if not init.exists():  # one point per seed of arm 0 (a leading seed axis), seeded
        rng = np.random.default_rng(0)
        np.savez(init, u=0.1 + 0.05 * rng.random((2, 30)), v=0.05 * rng.standard_normal((2, 30)))
    return ["run", "diag-net", "--steps", "100001", *SMALL, *[a for s in DIAG for a in ("--set", s)],
            "--set", f"arms.0.init={{file='{init}'}}"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("doors")


@pytest.fixture(scope="module")
def references(root):
    refs = {}
    for name, cmd in (("phased", PHASED), ("init", _init_cmd(root))):
        p = sgdlab_cli(cmd + ["--out", root / f"ref-{name}"])
        assert p.returncode == 0, p.stderr[-2000:]
        refs[name] = (cmd, root / f"ref-{name}")
    return refs


def _write_kill(rng: random.Random):
    return "write", rng.randint(4, 40)  # the directory's own first files take 3 writes


def _trial(cmd, reference: Path, out: Path, seed: int) -> int:
    """Killed inside a random atomic write, resumed (killed again with probability 0.6) until
    complete; returns the number of kills that landed."""
    rng = random.Random(seed)
    for _ in range(FIRST_TRIES):
        p = sgdlab_cli(cmd + ["--out", out, "--overwrite"], *_write_kill(rng))
        if killed(p):
            break
    kills = 0
    for _ in range(12):
        kills += killed(p)
        if p.returncode == 0 and RunDir(out).complete():
            break
        assert killed(p) or p.returncode == 0, p.stderr[-2000:]
        if not (out / "config.toml").exists():
            p = sgdlab_cli(cmd + ["--out", out, "--overwrite"], *_write_kill(rng))
            continue
        attack = _write_kill(rng) if rng.random() < 0.6 else ("none", 0)
        p = sgdlab_cli(["run", "--resume", out, "--no-progress"], *attack)
    else:
        p = sgdlab_cli(["run", "--resume", out, "--no-progress"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert RunDir(out).complete()
    assert (out / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
    assert _summary(out) == _summary(reference)
    assert not list(out.rglob(".*.tmp*")) and not (out / ".lock").exists()
    return kills


@pytest.mark.parametrize("trial", range(8))
@pytest.mark.parametrize("kind", ["phased", "init"])
def test_killed_runs_of_the_new_doors_resume_byte_identical(references, root, kind, trial):
    cmd, ref = references[kind]
    assert _trial(cmd, ref, root / f"{kind}-{trial}", 100 * trial + len(kind)) >= 1, "no kill landed"
