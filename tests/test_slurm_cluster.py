"""The SLURM executor against a real SLURM cluster (slurmctld + slurmd; `.ci/slurm-up.sh` starts a
single-node one with partition `debug`): a sweep's array job, one task cancelled with `scancel`
while it is observably mid-run, `sgdlab sweep --resume`, and the results equal an uninterrupted
sweep's, byte for byte.

Mid-run is an event, not a delay: the sweep logs a metric (`slurm_gate`, registered by a module
the config imports, so the tasks import it as users' kinds are) that, while a gate file exists,
stops at the task's fifth metric call (its step-0 evaluation, then a few more rows and a
checkpoint are on disk) and writes a marker naming its SLURM task. The test cancels
the task named by the first marker, then removes the gate. Skipped, with the reason, where no
SLURM cluster answers (.ci/run passes on why it could not start one)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from waiting import wait_for

from sgdlab.core.exit_codes import FAILED_WORK
from sgdlab.store.runs import RunDir

pytest.importorskip("submitit", reason="the slurm executor needs submitit: pip install -e '.[slurm]'")

PARTITION = "debug"


def _cluster_problem() -> str | None:
    """Why no SLURM cluster with an up partition `debug` answers here (None: it does)."""
    given = os.environ.get("SGDLAB_SLURM_UNAVAILABLE")
    if given:
        return given
    for tool in ("sbatch", "squeue", "scancel", "sinfo"):
        if shutil.which(tool) is None:
            return f"no SLURM here: {tool} not found (.ci/slurm-up.sh installs and starts a one-node cluster)"
    try:
        p = subprocess.run(["sinfo", "-h", "-p", PARTITION, "-o", "%a %D"], capture_output=True, text=True,
                           timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return f"sinfo failed: {e}"
    if p.returncode != 0 or not p.stdout.strip().startswith("up"):
        return f"no up SLURM partition {PARTITION!r} (sinfo: {(p.stdout + p.stderr).strip()[:200] or 'nothing'})"
    return None


pytestmark = [pytest.mark.study("diag_net"),
              pytest.mark.skipif(_cluster_problem() is not None, reason=str(_cluster_problem()))]

GATE_MODULE = '''
"""A metric that pauses a run at its fifth call while a gate file exists (the test's hold)."""
import json
import os
import sys
import time
from pathlib import Path

import torch

import sgdlab

_calls = [0]
HOLD_AT_CALL = 5


@sgdlab.register_metric("slurm_gate")
def slurm_gate(model, params, data):
    """0 per run; holds the task at its fifth call while $SGDLAB_TEST_GATE exists."""
    _calls[0] += 1
    gate = Path(os.environ.get("SGDLAB_TEST_GATE", "/nonexistent"))
    if _calls[0] == HOLD_AT_CALL and gate.exists():
        task = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        marker = {"task": task, "python": sys.executable, "omp": os.environ.get("OMP_NUM_THREADS"),
                  "pythonpath": os.environ.get("PYTHONPATH", "")}
        (gate.parent / f"held-{task}.json").write_text(json.dumps(marker))
        while gate.exists():
            time.sleep(0.05)
    return torch.zeros(next(iter(params.values())).shape[0])
'''

GRID = ["--grid", "steps=2001,4001", "--grid", "seeds=1,2"]
SETS = ['metrics.names=["train_loss", "test_loss", "jacobian_rank", "l0", "slurm_gate"]',
        "checkpoint_seconds=0.01", "eval.grid='linear'", "eval.points=11"]


def _sgdlab(*args, **kw):
    return [sys.executable, "-m", "sgdlab", *[str(a) for a in args]]


def _results(sweep: Path) -> dict:
    """Per job directory: metrics.jsonl bytes and the summary without its wall time."""
    out = {}
    for job in json.loads((sweep / "index.json").read_text())["jobs"]:
        d = sweep / job["dir"]
        summary = json.loads((d / "summary.json").read_text())
        summary.pop("wall_seconds")
        out[job["dir"]] = ((d / "metrics.jsonl").read_bytes(), summary)
    return out


def test_a_cancelled_array_task_resumes_to_the_uninterrupted_sweep(tmp_path):
    (tmp_path / "gate_metric.py").write_text(textwrap.dedent(GATE_MODULE))
    (tmp_path / "sweep.toml").write_text("[slurm]\npoll = 0.5\ntime = 30\n")
    sets = [a for s in SETS for a in ("--set", s)]
    common = ["diag-net", *GRID, *sets, "--import", tmp_path / "gate_metric.py"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SGDLAB_TEST_GATE": str(tmp_path / "gate")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH", "")]))

    # the uninterrupted reference: the same plan, in process
    ref = subprocess.run(_sgdlab("sweep", *common, "--out", tmp_path / "ref"), env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=False)
    assert ref.returncode == 0, ref.stderr[-3000:]

    (tmp_path / "gate").write_text("held")
    out = tmp_path / "sw"
    driver = subprocess.Popen(_sgdlab("sweep", *common, "--executor", "slurm", "--partition", PARTITION,
                                      "--file", tmp_path / "sweep.toml", "--out", out),
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        held = lambda: sorted(tmp_path.glob("held-*.json"))
        assert wait_for(lambda: held(), "a SLURM task held mid-run", driver), driver.communicate()[1][-3000:]
        marker = json.loads(held()[0].read_text())
        task = marker["task"]
        # the task runs with the driver's Python and CPU-thread setting, and finds this checkout
        assert marker["python"] == sys.executable and marker["omp"] == "1"
        submitted = out / "slurm" / "submitted.json"
        wait_for(lambda: submitted.exists() and task in json.loads(submitted.read_text()).values(),
                 "the driver to record the submitted tasks")
        job_id = int(next(k for k, v in json.loads(submitted.read_text()).items() if v == task))
        job_dir = out / json.loads((out / "index.json").read_text())["jobs"][job_id]["dir"]
        assert (job_dir / "checkpoint.pt").exists() and len(RunDir(job_dir).rows()) >= 2  # observably mid-run

        subprocess.run(["scancel", task], check=True)
        wait_for(lambda: task not in subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True,
                                                    text=True, check=False).stdout.split(),
                 f"SLURM to drop the cancelled task {task}")
    except BaseException:
        driver.kill()  # and its tasks: nothing of a failed test keeps running
        submitted = out / "slurm" / "submitted.json"
        if submitted.exists():
            subprocess.run(["scancel", *json.loads(submitted.read_text()).values()], check=False)
        raise
    finally:
        (tmp_path / "gate").unlink(missing_ok=True)  # the other tasks go on
    _, stderr = driver.communicate()
    # the cancelled task is a failed job: the sweep says so (exit 3, the job listed), --resume reruns it
    assert driver.returncode == FAILED_WORK and "ended without a result" in stderr, stderr[-3000:]
    jobs = json.loads((out / "index.json").read_text())["jobs"]
    assert [j["status"] for j in jobs].count("failed") == 1 and jobs[job_id]["status"] == "failed", jobs
    assert "ended without a result" in jobs[job_id]["error"]
    assert RunDir(job_dir).summary() is None  # cancelled before its end: nothing finished it

    resumed = subprocess.run(_sgdlab("sweep", "--resume", out, "--executor", "slurm", "--partition", PARTITION),
                             env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all(j["status"] == "done" for j in json.loads((out / "index.json").read_text())["jobs"])
    assert _results(out) == _results(tmp_path / "ref")
    assert (out / "figures" / "final_vs_value.png").exists()
