"""Commands that only read or write configs answer without importing torch, numba, scipy or
matplotlib (their imports cost seconds; the speed itself is measured by benchmarks/diag_net.py)."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.study("diag_net", "eos")

HEAVY = ("torch", "numba", "scipy", "matplotlib")
PROBE = """
import sys
from click.testing import CliRunner
from sgdlab.frontends.cli import main

r = CliRunner().invoke(main, {args!r})
assert r.exit_code == {code}, r.output
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "diag-net"], ["show", "diag-net", "--keys"],
                                  ["run", "--help"], ["show", "label-noise-diag-net-phases"],
                                  ["show", "eos-chebyshev", "--set", "seeds=3"], ["kinds", "data"],
                                  ["kinds", "model"], ["kinds", "optimizer"], ["kinds", "schedule"],
                                  ["kinds", "metric"], ["kinds", "executor"],
                                  ["show", "diag-net", "--set", "data.kind=chebyshev", "--keys"]])
def test_config_commands_import_no_heavy_library(args):
    p = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY, code=0)], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", f"{args} imported {p.stdout.strip()}"


@pytest.mark.parametrize("args", [["run", "diag-net", "--dry-run", "--set", "eval.points=1000000000"],
                                  ["run", "diag-nett"], ["run", "diag-net", "--set", "arms.0.schedule.lr=-1"],
                                  ["sweep", "diag-net", "--grid", "arms.0.schedule.lr=linspace(0.1,0.3,3000000)",
                                   "--dry-run"]])
def test_a_refused_config_is_refused_before_any_heavy_import(args):
    p = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY, code=2)], capture_output=True,
                       text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", f"{args} imported {p.stdout.strip()}"
