"""How many processes and threads a run uses, and when its runs may be spread at all
(sgdlab.workflows.cores, Engine.batch_invariant): the default and the thread rule, the BLAS pools,
the BLAS probe, and each run's independence of the runs batched with it."""

import numpy as np
import pytest
from shard_helpers import BLAS_PROBLEM, diag, relu

import sgdlab
from sgdlab.engine.train import Engine
from sgdlab.workflows import cores
from sgdlab.workflows.cores import (
    blas_batch_invariance,
    choose,
    cpu_quota,
    machine_workers,
)
from sgdlab.workflows.executors import shares

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "deep_nets")


def test_default_workers_and_thread_rule():
    cfg = diag()
    par = choose(cfg, 13, None, threads=4, invariant=True)
    assert par.workers == min(machine_workers()[0], 13) and par.threads == 1  # toy path: threads stay off
    assert choose(cfg, 2, 8, invariant=True).workers == 2  # capped by the runs
    # runs not known to be batch-invariant: spread only where the BLAS probe passes
    assert (choose(cfg, 2, 8).workers == 2) == (blas_batch_invariance() is None)
    deep = sgdlab.override(sgdlab.load_experiment("deep-demo-digits"), [])
    assert choose(deep, 10, None, threads=4) == choose(deep, 10, None, threads=4)
    assert choose(deep, 10, None, threads=4).workers == 1 and choose(deep, 10, None, threads=4).threads == 4
    assert shares(4, 1) == [4] and shares(4, 3) == [2, 1, 1] and shares(2, 5) == [1, 1]


def _cgroups(tmp_path, proc: str, files: dict[str, str]):
    """A fake /sys/fs/cgroup (``files``: path under it -> text) and /proc/self/cgroup (``proc``)."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (tmp_path / "proc").write_text(proc)
    return root, tmp_path / "proc"


@pytest.mark.parametrize("proc, files, quota", [
    # a container (its own group at the mount's root): docker --cpus 2, cgroup v2
    ("0::/\n", {"cpu.max": "200000 100000\n"}, 2.0),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    # a host's nested groups: the tightest limit on the way up binds
    ("0::/a/b\n", {"a/cpu.max": "150000 100000", "a/b/cpu.max": "max 100000"}, 1.5),
    ("0::/a/b\n", {"a/cpu.max": "400000 100000", "a/b/cpu.max": "50000 100000"}, 0.5),
    # cgroup v1: the CPU controller's hierarchy; inside a container the mount is the container's group
    ("4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
     {"cpu,cpuacct/cpu.cfs_quota_us": "250000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, 2.5),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ("0::/\n", {"cpu.max": "lots\n"}, None),  # unreadable: no limit assumed
    ("0::/\n", {"cpu.max": "100000 0\n"}, None),  # a zero period: no limit, not a division by zero
    ("", {}, None),
])
def test_the_cpu_quota_of_the_process_control_group(tmp_path, proc, files, quota):
    root, proc_file = _cgroups(tmp_path, proc, files)
    assert cpu_quota(root, proc_file) == quota
    assert cpu_quota(root, tmp_path / "missing") is None  # not Linux, or no /proc


def test_a_cpu_quota_caps_the_default_processes_and_says_so(monkeypatch):
    """A container given 2.5 CPUs on a 16-core host: 2 processes, not 16 taking turns."""
    monkeypatch.setattr(cores, "physical_cores", lambda: 16)
    monkeypatch.setattr(cores, "usable_cpus", lambda: set(range(32)))
    monkeypatch.setattr(cores, "cpu_quota", lambda: 2.5)
    said = "a CPU quota of 2.5 CPU(s) on this process's control group, 16 physical core(s) usable"
    assert machine_workers() == (2, said)
    assert cores.available_cpus() == 2
    par = choose(diag(), 13, None, invariant=True)
    assert par.workers == 2 and "CPU quota of 2.5" in par.reason
    assert choose(diag(), 13, 6, invariant=True).workers == 6  # asked for: given, the run says it takes turns
    monkeypatch.setattr(cores, "cpu_quota", lambda: 0.5)  # less than one CPU: still one process
    assert machine_workers()[0] == 1 and cores.available_cpus() == 1
    monkeypatch.setattr(cores, "cpu_quota", lambda: 64.0)  # a quota above the cores changes nothing
    assert machine_workers() == (16, "16 physical core(s) usable") and cores.available_cpus() == 32


def test_a_run_sizes_the_blas_pools_numpy_loaded_and_gives_them_back():
    """numpy sized its OpenBLAS pool when sgdlab imported it, before the command set
    OMP_NUM_THREADS: a run's thread setting reaches it too, and the caller's comes back after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from sgdlab.workflows.cores import run_threads

    def blas():
        return {d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):  # as on a 2-core machine with nothing set
        before = blas()
        assert before and set(before.values()) == {2}
        with run_threads(1):
            assert set(blas().values()) == {1}
        assert blas() == before


@pytest.mark.parametrize("name", ["label-noise-diag-net", "sde-teacher-student", "linear2-large-step", "relu-1d"])
def test_every_run_is_independent_of_the_runs_batched_with_it(name):
    """Each run alone (a restricted engine per run) gives the bits of the whole batch, on the torch
    paths too (label noise, SDE, ReLU, linear): nothing in a step or a metric mixes runs, and MKL's
    results do not depend on where a run's row sits in memory (MKL_CBWR=AUTO,STRICT). Where the
    BLAS probe fails (a run's last bits depend on its batch), the same numbers to rounding."""
    from sgdlab.workflows.shards import slice_state

    cfg = sgdlab.override(sgdlab.load_experiment(name), ["steps=60", "seeds=2", "eval.points=4"])
    full = Engine(cfg)
    state = full.initial_state()
    alone = [full.restricted([r]) for r in range(full.n_runs)]
    states = [slice_state(full, e.members, state) for e in alone]
    for t in full.eval_steps:
        full.advance_to(state, int(t))
        m = full.evaluate(state)
        for r, (e, s) in enumerate(zip(alone, states)):
            e.advance_to(s, int(t))
            mine = e.evaluate(s)
            assert set(mine) == set(m)
            for k in m:
                if BLAS_PROBLEM is None:
                    np.testing.assert_array_equal(mine[k][r], m[k][r], err_msg=f"{k} of run {r} at step {t}")
                else:
                    np.testing.assert_allclose(mine[k][r], m[k][r], rtol=1e-6, atol=1e-12,
                                               err_msg=f"{k} of run {r} at step {t}")


def test_a_blas_whose_products_depend_on_the_batch_keeps_torch_path_runs_in_one_process(tmp_path, monkeypatch):
    """The probe finds a BLAS that gives a run other last bits when fewer runs share its product
    (as MKL does on some AVX-512 CPUs), and such a run stays in one process, saying why; the
    diagonal net's kernels do not go through such products and are still spread."""
    import torch

    real = torch.matmul

    def by_batch(a, b):  # a product one ulp off when an odd number of rows share it
        out = real(a, b)
        return torch.nextafter(out, torch.full_like(out, torch.inf)) if out.shape[-2] % 2 else out

    monkeypatch.setattr(torch, "matmul", by_batch)
    monkeypatch.setattr(cores, "blas_batch_invariance", cores.blas_batch_invariance.__wrapped__)
    problem = cores.blas_batch_invariance()
    assert problem is not None and "runs alone differ from the same runs among" in problem
    par = choose(relu(), 12, 2)
    assert par.workers == 1 and problem in par.reason
    assert choose(diag(), 13, 2, invariant=True).workers == 2


def test_which_experiments_are_batch_invariant_whatever_the_blas():
    """Only the diagonal net on its kernels with its own metrics: a torch-path step (momentum,
    label noise), curvature, a user's metric or float32 leave it to the BLAS probe."""
    assert Engine(diag()).batch_invariant
    assert Engine(diag("arms.0.optimizer.kind='sde'", "arms.0.optimizer.delta=0.1")).batch_invariant  # its kernel too
    for extra in (["arms.0.optimizer.momentum=0.9"], ["metrics.curvature.every=2", "metrics.names=['sharpness']"],
                  ["dtype='float32'"], ["fused=false"]):
        assert not Engine(diag(*extra)).batch_invariant, extra
    assert not Engine(relu()).batch_invariant
    name = "test_shards_user_metric"
    sgdlab.register_metric(name)(lambda model, params, data: params["u"].sum(1))
    try:
        assert not Engine(diag(f"metrics.names=['train_loss','{name}']")).batch_invariant
    finally:
        from sgdlab.metrics.probes import PROBES
        from sgdlab.metrics.registry import METRIC_SPECS

        METRIC_SPECS.remove(name)
        PROBES._items.pop(name, None)
