"""Smoke tests of the whole-process benchmarks: every command they would time is executed, with
tiny settings, in this process instead of a fresh one (fast: no interpreter or torch start-up per
command), and the report with its target lines is printed. No timing is asserted: the fake
timings only have to be distinct so that the reports' ratios are defined."""

import contextlib
import importlib.util
import io
import itertools
import runpy
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.study("diag_net")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def in_process(monkeypatch):
    """Replace ``_proc.run_process`` by an in-process runner of the same command line."""
    load("sde")  # puts benchmarks/ on sys.path, so _proc is importable
    import _proc

    clock = itertools.count(1)
    seen = []

    def run(args, env, cwd=None):
        argv = list(args[1:])  # drop the interpreter
        seen.append(argv)
        out = io.StringIO()
        old_argv = sys.argv
        try:
            with contextlib.redirect_stdout(out):
                if argv[:2] == ["-m", "sgdlab"]:
                    from sgdlab.frontends.cli import main

                    main(argv[2:], standalone_mode=False)
                elif argv[0] == "-c":
                    sys.argv = ["-c", *argv[2:]]
                    exec(compile(argv[1], "<snippet>", "exec"), {"__name__": "__main__"})  # noqa: S102 - the benchmark's own snippet
                else:
                    sys.argv = argv
                    runpy.run_path(argv[0], run_name="__main__")
        finally:
            sys.argv = old_argv
        k = next(clock)
        return _proc.Timing(wall=1.0 + 0.01 * k, cpu=1.0 + 0.01 * k, stdout=out.getvalue())

    def together(commands, env, cwd=None):  # one after the other here
        ts = [run(a, env, cwd) for a in commands]
        return _proc.Timing(wall=max(t.wall for t in ts), cpu=sum(t.cpu for t in ts), stdout="".join(t.stdout for t in ts))

    monkeypatch.setattr(_proc, "run_process", run)
    monkeypatch.setattr(_proc, "run_together", together)
    return run, seen


def test_diag_net_benchmark(in_process, capsys):
    run, seen = in_process
    bench = load("diag_net")
    bench.run_process = run
    bench.main(["--quick", "--steps", "30", "--repeats", "1", "--big-seeds", "2", "--eval-points", "3",
                "--eval-head", "2", "--ref-runs", "1", "2"])
    out = capsys.readouterr().out
    for line in ("added run-step", "fixed floor of a run", "end to end, 2 seeds", "`sgdlab --help`"):
        assert line in out
    assert any("diag_net_reference.py" in a[0] for a in seen)


def test_sde_benchmark(in_process, capsys):
    bench = load("sde")
    bench.main(["--quick", "--scale", "0.0005", "--repeats", "1", "--runs", "2"])
    out = capsys.readouterr().out
    assert "whole processes" in out and "in process" in out and "SDE delta=0" in out


def test_sweep_benchmark(in_process, capsys):
    bench = load("sweep")
    bench.main(["--quick", "--steps", "20", "--repeats", "1", "--timed", "1", "--eval-points", "3",
                "--eval-head", "1"])
    out = capsys.readouterr().out
    assert "loop of 64 in-process" in out and "a process per run" in out


def test_deep_nets_benchmark(in_process, capsys):
    bench = load("deep_nets")
    bench.main(["--widths", "1", "--steps", "2", "--eval-images", "8", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "eval/train" in out and "below the issue's 50" in out


def test_scaling_benchmark(in_process, capsys, tmp_path):
    _, seen = in_process
    bench = load("scaling")
    page = tmp_path / "page.md"
    page.write_text(f"before\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    bench.main(["--steps", "30", "--seeds", "4", "--repeats", "1", "--cores", "2", "--write-docs", "--docs", str(page)])
    out = capsys.readouterr().out
    assert "| diag-net | 2 |" in out and "not measured" in out
    # the ReLU sweep spreads where the BLAS probe passes; elsewhere the table says it used one process
    assert "| relu sweep | 2 |" in out or ("| relu sweep | 2 asked, 1 used |" in out and "Fewer processes" in out)
    assert "**no**" not in out  # 2 processes wrote the same metrics as 1
    text = page.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text and "| diag-net | 1 |" in text
    assert any("--workers" in a and "2" in a for a in seen)
    # the reference: the seeds split by hand over 2 one-process runs
    assert "| 2 + 2 seeds | 2 |" in out
    assert sorted(a[a.index("--first-seed") + 1] for a in seen if "--first-seed" in a) == ["0", "2"]
    # the training alone: all seeds in one process, then the halves side by side (first seeds 0 and 2)
    assert "| all seeds in 1 process |" in out and "the second core's yield |" in out
    assert [a[-3:] for a in seen if a[0] == "-c" and "first_seed" in a[1]] == [["30", "4", "0"], ["30", "2", "0"], ["30", "2", "2"]]


def test_scaling_benchmark_lean(in_process, capsys):
    """--lean: only the commands' rows and the target lines, nothing else run; the process counts
    take turns, in reverse order in the second repeat (a drift within a repeat favours none)."""
    _, seen = in_process
    load("scaling").main(["--steps", "30", "--seeds", "4", "--repeats", "2", "--cores", "2", "--only", "diag-net", "--lean"])
    out = capsys.readouterr().out
    assert "| diag-net | 2 |" in out and "2 processes on the 64-seed main job" in out and "of 2 at least 1.7x" in out
    assert "reference" not in out and "yield" not in out and "torch threads" not in out
    assert not any("--first-seed" in a for a in seen) and not any(a[0] == "-c" for a in seen)
    assert [a[a.index("--workers") + 1] for a in seen if a[2:4] == ["run", "diag-net"] and "--workers" in a] == ["1", "2", "2", "1"]
    assert "`python benchmarks/scaling.py --steps 30 --seeds 4 --repeats 2 --cores 2 --only diag-net --lean`" in out


def test_shard_phases_benchmark(capsys):
    """Real processes (its child script times sgdlab's own functions, so it must keep running as
    they change): every phase row, for 1 and 2 processes, the caller's wait and Amdahl's bound."""
    load("shard_phases").main(["--steps", "2001", "--repeats", "1"])
    out = capsys.readouterr().out
    for phase in ("start-up", "| training: first 2 evaluation steps", "| training: the rest |", "| figure |",
                  "exit", "whole process"):
        assert phase in out
    assert "waited on its worker" in out and "summed over the processes" in out
    assert "cuts of the pieces per 2-process run" in out or "never cut again" in out
    assert "2 processes: at most" in out and "16 processes: at most" in out and "needs W >= 44 S" in out


def test_startup_benchmark(capsys):
    """Real processes (the command's own process is what it measures): both sides of both rows and
    the collector passes, read back from the command's process."""
    load("startup").main(["--repeats", "1"])
    out = capsys.readouterr().out
    for row in ("import torch, numba: collector on", "... collector paused", "without the pause",
                "as the command runs (paused)", "collector passes (the sgdlab process)"):
        assert row in out


def test_shard_phases_bounds_from_known_phases():
    """Amdahl's lines from known phases: S = 2 s, W = 14 s (whole 16 s). 2 processes: at most
    16 / (2 + 7) = 1.78x; 1.7x needs 2 + 14 / y <= 16 / 1.7, i.e. y >= 14 / 7.41 = 1.89. With S
    longer than the whole / 1.7 no yield reaches it."""
    bounds = load("shard_phases").bounds
    text = bounds([{"training: the rest": 14.0}], [16.0])
    assert "serial S = 2.00 s" in text and "W = 14.00 s" in text and "2 processes: at most 1.78x" in text
    assert "1.7x on 2 processes needs them to train W at least 1.89 times as fast as one process" in text
    assert "1.7x on 2 processes: out of reach" in bounds([{"training: the rest": 1.0}], [10.0])


def test_machine_line_names_the_cpu():
    """Batches from CPUs of other models are not comparable: the line names the model."""
    load("shard_phases")  # puts benchmarks/ on the path, where the benchmarks import _proc from
    proc = importlib.import_module("_proc")
    assert proc.machine_line(1).startswith(proc.cpu_model() + ",") and proc.cpu_model()


def test_shard_phases_balance_summary():
    """The balance line from known stretches: the first (the set-up) left out; the sides differ
    by +10%, -10%, +5% of their stretches, the sign flipping at both of the two steps."""
    balance = load("shard_phases").balance
    run = {"periods": [[1.0, 0.2, 0.1, 0.9], [1.0, 0.5, 0.1, 0.5], [2.0, 0.8, 0.2, 1.2], [1.0, 0.4, 0.1, 0.45]],
           "recut": 0.05}
    line = balance([run])
    assert "per 2-process run: 4 [4, 4], taking 0.05 [0.05, 0.05] s" in line
    assert "10.0 [5.0, 10.0] %" in line and "flipping in 2 of 2 consecutive stretches" in line
    assert balance([{"periods": [[1.0, 0.5, 0.0, 0.5]], "recut": 0.0}]).startswith("the pieces were never cut")


def test_dry_run_benchmark(tmp_path, capsys, monkeypatch):
    bench = load("dry_run")
    monkeypatch.setattr(bench, "DOCS", tmp_path / "reliability.md")
    (tmp_path / "reliability.md").write_text(f"before\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    assert bench.main(["--repeats", "1", "--write-docs"]) == 0
    text = (tmp_path / "reliability.md").read_text()
    assert "old" not in text and text.count("| met |") + text.count("| NOT met |") == len(bench.GRIDS)
    assert "10000 points in 10000 batched job(s)" in text and "error: grid range" in text
