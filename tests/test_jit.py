"""Compiled kernels: the compile notice appears once, and caching falls back to a writable place."""

import importlib.util
import os

import numba

from sgdlab.core import _jit

KERNEL_SRC = '''
from numba import njit

@njit(cache=True)
def twice(x):
    return 2 * x
'''


def test_compile_notice_once_then_silent(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "kern_mod.py").write_text(KERNEL_SRC)
    spec = importlib.util.spec_from_file_location("kern_mod", tmp_path / "kern_mod.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(_jit, "_reported", set())
    assert _jit.call_kernel(mod.twice, 3) == 6 and _jit.call_kernel(mod.twice, 4) == 8
    err = capsys.readouterr().err
    assert err.count("compiled the twice kernel") == 1 and str(tmp_path / "cache") in err


def test_unwritable_install_and_home_cache_in_tmp(monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    _jit.ensure_cache_dir(_jit.__file__)
    assert numba.config.CACHE_DIR.endswith("sgdlab-numba-cache")


def test_writable_install_keeps_numbas_default(monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "")
    _jit.ensure_cache_dir(__file__)
    assert numba.config.CACHE_DIR == ""
