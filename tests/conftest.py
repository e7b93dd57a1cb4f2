import os

# Two busy cores thrash with torch's default threading (measured 2-6x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# sgdlab's per-user record of the modules a user ran (sgdlab.trust): one per test session, never ~.
os.environ.setdefault("SGDLAB_STATE_DIR", __import__("tempfile").mkdtemp(prefix="sgdlab-test-state-"))

import torch

torch.set_num_threads(1)
