import os

# Busy cores thrash with torch's default threading (several times slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# as the sgdlab command does: sharded runs need MKL's strict reproducibility mode (sgdlab.workflows.cores)
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
# sgdlab's per-user record of the modules a user ran (sgdlab.store.trust): one per test session, never ~.
os.environ.setdefault("SGDLAB_STATE_DIR", __import__("tempfile").mkdtemp(prefix="sgdlab-test-state-"))

import torch

torch.set_num_threads(1)

import importlib.util
import re

import pytest

# Tests of a bundled study (sgdlab/studies/NAME) say so with `pytestmark = pytest.mark.study(...)`;
# without that study's folder they are skipped, and the framework's own tests still run.


def _study_present(name: str) -> bool:
    try:
        return importlib.util.find_spec(f"sgdlab.studies.{name}") is not None
    except ImportError:
        return False


def pytest_configure(config):
    config.addinivalue_line("markers", "study(*names): needs these bundled studies (skipped without them)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers("study"):
            missing = [n for n in mark.args if not _study_present(n)]
            if missing:
                item.add_marker(pytest.mark.skip(reason=f"needs the bundled study {', '.join(missing)}"))


_STUDY_MARK = re.compile(r"^pytestmark = .*pytest\.mark\.study\(([^)]*)\)", re.MULTILINE)


def pytest_ignore_collect(collection_path, config):
    # a study's test module may import the study at its top: without the study it is not collected
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    m = _STUDY_MARK.search(collection_path.read_text(errors="replace"))
    if m and not all(_study_present(n.strip().strip("\"'")) for n in m.group(1).split(",") if n.strip()):
        return True
    return None
