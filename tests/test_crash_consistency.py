"""Crash consistency: a run or a sweep killed (SIGKILL, no clean-up) at a random moment, or inside a
chosen file write (checkpoint, metrics, summary, figure, sweep index), resumes to byte-identical
metrics and a complete directory.

Each trial starts a real ``sgdlab`` process through a small wrapper that kills it: after a random
delay, or at the n-th ``os.replace`` (the last step of every atomic write: the temporary file is
complete, the rename has not happened). Resume is repeated, each time killed again with some
probability, until the run is complete. The default suite runs a few trials; the slow suite 20 per
kind.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sgdlab.store.runs import RunDir
from sgdlab.workflows.sweep import Sweep

pytestmark = pytest.mark.study("diag_net")

WRAPPER = """
import os, signal, sys, threading
mode, arg, args = sys.argv[1], sys.argv[2], sys.argv[3:]
die = lambda *_: os.kill(os.getpid(), signal.SIGKILL)
if mode == "time":
    t = threading.Timer(float(arg), die)
    t.daemon = True
    t.start()
elif mode == "write":
    left, real = [int(arg)], os.replace
    def replace(src, dst):
        left[0] -= 1
        if left[0] == 0:
            die()
        return real(src, dst)
    os.replace = replace
elif mode == "count":  # how many atomic writes a whole run makes
    import atexit
    made, real = [0], os.replace
    def replace(src, dst):
        made[0] += 1
        return real(src, dst)
    os.replace = replace
    atexit.register(lambda: print(f"WRITES {made[0]}", file=sys.stderr))
from sgdlab.frontends.cli import main

sys.argv = ["sgdlab"] + args
main()
"""

# A run of ~1-3 s on 2 cores with frequent checkpoints, so that random kills land everywhere.
SETS = ["data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'", "eval.points=40",
        "checkpoint_seconds=0.05", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4", "arms.3.schedule.lr=0.4"]
RUN = ["run", "diag-net", "--steps", "200001", "--seeds", "2", "--no-progress"] + [a for s in SETS for a in ("--set", s)]
SWEEP = ["sweep", "diag-net", "--grid", "steps=60001,80001", "--seeds", "2"] + [a for s in SETS for a in ("--set", s)]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg"}


# Random kill points may land after a process has finished; the first process of a trial is
# drawn again until one lands (a trial without a kill would test nothing).
FIRST_TRIES = 8


def sgdlab_cli(args, mode="none", arg="0", timeout=600):
    wrapper = [sys.executable, "-c", WRAPPER, mode, str(arg)]
    return subprocess.run(wrapper + [str(a) for a in args], env=ENV, capture_output=True, text=True,
                          timeout=timeout, check=False)


def killed(p) -> bool:
    return p.returncode == -signal.SIGKILL


def _summary(path: Path) -> dict:
    s = json.loads((path / "summary.json").read_text())
    s.pop("wall_seconds")
    return s


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    p = sgdlab_cli(RUN + ["--out", root / "run"], "count")
    assert p.returncode == 0, p.stderr[-2000:]
    (root / "writes").write_text(p.stderr.rsplit("WRITES ", 1)[1].split()[0])
    return root


def _writes(reference: Path) -> int:
    """The atomic writes of the reference run, start to end (how many its checkpoints are depends
    on the machine's speed: checkpoint_seconds)."""
    return int((reference / "writes").read_text())


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    assert sgdlab_cli(SWEEP + ["--out", root / "sweep"]).returncode == 0
    return root


def _attack(rng: random.Random, first: bool):
    """A kill: after a random delay, inside a random atomic write, or none (a final clean resume)."""
    if not first and rng.random() < 0.3:
        return "none", 0
    if rng.random() < 0.5:
        return "time", round(rng.uniform(0.5, 6.0), 2)
    return "write", rng.randint(1, 40)


def _run_trial(reference, tmp_path, trial: int, first=None):
    """Kill, resume (killed again at random) until complete; the number of kills that landed.
    ``first``: the first process's attack (default: random)."""
    rng = random.Random(trial)
    out = tmp_path / f"run{trial}"
    mode, arg = first or _attack(rng, True)
    for k in range(FIRST_TRIES):  # a kill that lands after the run finished tests nothing: draw again
        p = sgdlab_cli(RUN + ["--out", out, "--overwrite"], mode, arg)
        if killed(p):
            break
        # the last try kills inside a write in the first half of a whole run's: it lands whatever
        # the machine's speed (a delay, or a write a faster run no longer makes, may not)
        mode, arg = _attack(rng, True) if k < FIRST_TRIES - 2 else ("write", rng.randint(1, max(1, _writes(reference) // 2)))
    kills = 0
    for _ in range(10):
        kills += killed(p)
        if p.returncode == 0 and RunDir(out).complete():
            break
        assert killed(p) or p.returncode == 0, p.stderr[-2000:]
        if not (out / "config.toml").exists():  # killed before the directory was whole: start again
            p = sgdlab_cli(RUN + ["--out", out, "--overwrite"], *_attack(rng, False))
            continue
        p = sgdlab_cli(["run", "--resume", out, "--no-progress"], *_attack(rng, False))
    else:
        p = sgdlab_cli(["run", "--resume", out, "--no-progress"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert RunDir(out).complete()
    assert (out / "metrics.jsonl").read_bytes() == (reference / "run" / "metrics.jsonl").read_bytes()
    assert _summary(out) == _summary(reference / "run")
    assert not list(out.rglob(".*.tmp*")) and not (out / ".lock").exists()
    return kills


def _sweep_trial(reference, tmp_path, trial: int, executor: str):
    rng = random.Random(1000 + trial)
    out = tmp_path / f"sweep{trial}"
    extra = ["--executor", executor, "--workers", "2"]

    def attack(first):  # workers are separate interpreters: only the driver is hit inside a write
        if executor == "pool":
            return ("time", round(rng.uniform(1.0, 8.0), 2)) if first or rng.random() < 0.5 else ("none", 0)
        return _attack(rng, first)

    for _ in range(FIRST_TRIES):
        shutil.rmtree(out, ignore_errors=True)
        p = sgdlab_cli(SWEEP + ["--out", out] + extra, *attack(True))
        if killed(p):
            break
    kills = 0
    for _ in range(10):
        kills += killed(p)
        if not (out / "index.json").exists():  # killed before the plan was written: start again
            shutil.rmtree(out, ignore_errors=True)
            p = sgdlab_cli(SWEEP + ["--out", out] + extra, *attack(False))
            continue
        if p.returncode == 0 and not Sweep(out).pending():
            break
        assert killed(p) or p.returncode == 0, p.stderr[-2000:]
        p = sgdlab_cli(["sweep", "--resume", out] + extra, *attack(False))
    else:
        p = sgdlab_cli(["sweep", "--resume", out] + extra)
    assert p.returncode == 0, p.stderr[-2000:]
    assert not Sweep(out).pending()
    for job in Sweep(out).index()["jobs"]:
        mine, ref = out / job["dir"], reference / "sweep" / job["dir"]
        assert (mine / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
        assert _summary(mine) == _summary(ref)
    assert kills >= 1, "no kill landed in this trial"


def test_a_killed_run_resumes_byte_identical(reference, tmp_path):
    # killed inside its 12th atomic write (a checkpoint, mid-run: the directory's first files take
    # 3), so this trial cannot pass without a kill; random kills are the slow trials' job
    assert _run_trial(reference, tmp_path, 0, first=("write", 12)) >= 1


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(1, 21))
def test_killed_runs_resume_byte_identical_many(reference, tmp_path, trial):
    assert _run_trial(reference, tmp_path, trial) >= 1, "no kill landed in this trial"


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(10))
@pytest.mark.parametrize("executor", ["inprocess", "pool"])
def test_killed_sweeps_resume_byte_identical(sweep_reference, tmp_path, trial, executor):
    _sweep_trial(sweep_reference, tmp_path, trial, executor)
