"""The monitor's cost benchmark runs (tiny --quick mode) and prints its ratio and verdict."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "monitor.py"


def test_monitor_benchmark_quick(capsys):
    spec = importlib.util.spec_from_file_location("bench_monitor", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--steps", "20", "--threads", "1", "--subset", "64", "--batch", "16"])
    out = capsys.readouterr().out
    assert [r["case"] for r in rows if r["device"] == "cpu"] == ["mlp", "resnet18"]
    for r in rows:
        assert r["bare"] > 0 and r["in_loop"] > 0
        assert r["n_sharp"] == 4 and r["n_bs"] == 2  # steps 0, 5, 10, 15 and 0, 10
    assert out.count("target <= 10% overhead on CPU") == 2
