"""The monitor's cost benchmark runs (tiny --quick mode), prints its table and verdicts, and
writes the table between its markers."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "monitor.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_monitor", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_monitor_benchmark_quick(capsys):
    bench = _bench()
    rows = bench.main(["--quick", "--steps", "20", "--repeats", "1", "--intervals", "5,10"])
    out = capsys.readouterr().out
    assert [(r["case"], r["every"]) for r in rows] == [("mlp", 5), ("mlp", 10), ("transformer", 5), ("transformer", 10)]
    for r in rows:
        assert r["n"] == 20 // r["every"] and r["monitor_ms"] > 0 and r["power_ms"] > 0
        assert r["monitor_err"] < 1e-3  # the default tolerance bounds the relative error by 1e-3
    assert "| mlp |" in out and "| transformer |" in out and "accurate" in out


def test_write_docs_replaces_only_the_marked_block(tmp_path):
    bench = _bench()
    page = tmp_path / "p.md"
    page.write_text(f"a\n<!-- {bench.MARK} -->\nold\n<!-- /{bench.MARK} -->\nb\n")
    bench.write_docs("new table", page)
    assert page.read_text() == f"a\n<!-- {bench.MARK} -->\nnew table\n<!-- /{bench.MARK} -->\nb\n"
