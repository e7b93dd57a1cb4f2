"""The curvature benchmark runs from a clean checkout without the compared libraries installed."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "curvature.py"


def test_curvature_benchmark_runs_without_the_other_libraries(capsys):
    spec = importlib.util.spec_from_file_location("bench_curvature", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--libs", "none", "--skip", "methods,conv,track", "--seeds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    sg = next(line for line in out.splitlines() if line.strip().startswith("sgdlab ") and "default" in line)
    err = float(sg.split()[5])
    assert err <= 1e-4  # exact to 1e-4 at the default tolerance, against the float64 reference
    assert "no other solver reached 1e-4" in out
