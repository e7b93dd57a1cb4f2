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
assert r.exit_code == 0, r.output
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "diag-net"], ["show", "diag-net", "--keys"],
                                  ["run", "--help"], ["show", "label-noise-diag-net-phases"],
                                  ["show", "eos-chebyshev", "--set", "seeds=3"], ["kinds", "data"],
                                  ["kinds", "model"], ["kinds", "optimizer"], ["kinds", "schedule"],
                                  ["kinds", "metric"], ["kinds", "executor"],
                                  ["show", "diag-net", "--set", "data.kind=chebyshev", "--keys"]])
def test_config_commands_import_no_heavy_library(args):
    p = subprocess.run([sys.executable, "-c", PROBE.format(args=args, heavy=HEAVY)], capture_output=True, text=True,
                       check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "", f"{args} imported {p.stdout.strip()}"
