"""docs/your-own-experiment.md is executed, block by block and in order, so it cannot rot.

Fenced blocks whose first line is ``# NAME.py`` or ``# NAME.toml`` are written to that file; other
``python`` blocks run as scripts; ``bash`` blocks run with ``bash -euo pipefail`` (a block using
``--ray`` is skipped where Ray is not installed). All in one fresh directory.
"""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "your-own-experiment.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg",
       "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DASHBOARD": "1"}


def blocks():
    return [(lang, body) for lang, body in FENCE.findall(DOC.read_text())]


def test_the_page_has_the_parts_the_issue_names():
    text = DOC.read_text()
    for needle in ("register_data", "register_model", "imports =", "[[arms.phases]]", "--resume", "init = {file",
                   "--executor pool", "--ray", "params("):
        assert needle in text, needle


def test_the_worked_example_runs(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**ENV, "PATH": bin_dir + os.pathsep + ENV.get("PATH", "")}
    ran = 0
    for lang, body in blocks():
        first = body.splitlines()[0].strip() if body.strip() else ""
        named = re.fullmatch(r"#\s*([\w.-]+\.(py|toml))", first)
        if named:
            (tmp_path / named.group(1)).write_text(body)
            continue
        if lang == "python":
            cmd = [sys.executable, "-c", body]
        elif lang == "bash":
            if "--ray" in body and importlib.util.find_spec("ray") is None:
                continue
            cmd = ["bash", "-euo", "pipefail", "-c", body]
        else:
            continue
        p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert p.returncode == 0, f"block failed:\n{body}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}"
        ran += 1
        if "cmp runs/mine" in body:
            assert "identical metrics" in p.stdout
    assert ran >= 6
    assert (tmp_path / "runs" / "mine" / "figures").is_dir()
    assert '"status": "failed"' not in (tmp_path / "sweeps" / "pool" / "index.json").read_text()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")
def test_the_ray_block_is_there():
    assert any("--ray" in body for lang, body in blocks() if lang == "bash")
