"""The deep-net speed benchmark runs from a clean checkout (CPU, --quick) and prints its ratios."""

import importlib.util
import json
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "deep_gpu.py"


def test_deep_gpu_benchmark_quick_prints_every_ratio(capsys, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_deep_gpu", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--quick", "--device", "cpu", "--threads", "1", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    for variant in ("fp32 NCHW", "channels_last", "bf16 autocast"):
        line = next(ln for ln in out.splitlines() if ln.startswith(variant) and "target" not in ln)
        assert re.search(r"\d\.\d{3}x \[", line) and ("met" in line or "MISSED" in line)
    assert re.search(r"evaluation every 200 steps: .* = \d+\.\d%, target <= 15%", out)
    assert re.search(r"batched seeds, R = 2 runs .* vmap/loop = \d+\.\d\dx", out)
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["seeds"]["vmap"] > 0 and len(res["rows"]) == 3 and not any("error" in r for r in res["rows"])
