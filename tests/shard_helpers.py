"""What the tests of spread runs share (test_shards, test_cores, test_shard_pieces): small
experiments on the diagonal net's kernels and on the torch path, and whether this machine's BLAS
gives a run the same bits whatever runs share its products."""

import sgdlab
from sgdlab.workflows.cores import blas_batch_invariance

# Small diag-net: 4 SGD arms x 3 seeds + GD, a diverging arm (lr 0.4 on this data), checkpoints at
# every evaluation; and a ReLU teacher-student net on the torch path.
DIAG = ["steps=1500", "seeds=3", "data.n=20", "data.d=30", "data.r=3", "data.n_test=100", "eval.grid='linear'",
        "eval.points=12", "checkpoint_seconds=1e-9", "arms.1.schedule.lr=0.4", "arms.2.schedule.lr=0.4",
        "arms.3.schedule.lr=0.8", "snapshots=2"]
RELU = ["steps=300", "seeds=3", "eval.points=8", "checkpoint_seconds=1e-9"]
# Experiments off the diagonal net's kernels (torch paths, a user's metric) are spread over
# processes only where torch's BLAS gives a run the same bits whatever runs share its products.
BLAS_PROBLEM = blas_batch_invariance()


def diag(*extra):
    return sgdlab.override(sgdlab.load_experiment("diag-net"), DIAG + list(extra))


def relu(*extra):
    return sgdlab.override(sgdlab.load_experiment("relu-teacher-student"), RELU + list(extra))
