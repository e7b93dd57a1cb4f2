"""Mini-batch samplers with counter-based randomness.

The batch indices of run ``seed`` at step ``t`` depend only on (seed, t): they are drawn
from a generator keyed by ``SeedSequence([seed, STREAM_BATCHES, block])``. Any range of
steps can therefore be regenerated exactly, which makes resumed runs identical to
uninterrupted ones and makes results independent of how the run is chunked.
"""

from __future__ import annotations

import numpy as np

from sgdlab.core.streams import (  # noqa: F401  (re-exported)
    STREAM_AUGMENT,
    STREAM_BATCHES,
    STREAM_INIT,
    STREAM_NOISE,
)

# Steps per block of pre-drawn batches (with replacement); any value works, this one
# keeps a block of batch-1 indices at 8 KiB.
BLOCK = 1024

# Above this many examples, drawing a batch without repeats by argsort of n keys per
# step costs more than numpy's per-step choice().
ARGSORT_MAX_N = 4096


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


class Sampler:
    """Draws batch indices; ``indices(seed, t0, t1)`` -> int64 array (t1 - t0, b)."""

    full = False
    stochastic = True

    def __init__(self, n: int, batch_size: int):
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be in [1, n={n}], got {batch_size}")
        self.n, self.b = n, batch_size

    def indices(self, seed: int, t0: int, t1: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def batch(self, seeds, t0: int, t1: int) -> np.ndarray:
        """Indices for several runs: (R, t1 - t0, b); runs sharing a seed share the draws."""
        uniq, inv = np.unique(np.asarray(seeds, dtype=np.int64), return_inverse=True)
        return np.stack([self.indices(int(s), t0, t1) for s in uniq])[inv]


class WithReplacement(Sampler):
    """Each step draws b distinct examples uniformly, independently of every other step."""

    def __init__(self, n: int, batch_size: int):
        super().__init__(n, batch_size)
        self._last: dict[int, tuple[int, np.ndarray]] = {}  # seed -> (block, indices): chunks reuse it

    def _block(self, seed: int, blk: int) -> np.ndarray:
        hit = self._last.get(seed)
        if hit is not None and hit[0] == blk:
            return hit[1]
        a = self._draw(seed, blk)
        self._last[seed] = (blk, a)
        return a

    def _draw(self, seed: int, blk: int) -> np.ndarray:
        rng = _rng(seed, STREAM_BATCHES, blk)
        if self.b == 1:
            return rng.integers(0, self.n, size=(BLOCK, 1))
        if self.n <= ARGSORT_MAX_N:
            return np.argsort(rng.random((BLOCK, self.n)), axis=1)[:, : self.b]
        return np.stack([rng.choice(self.n, self.b, replace=False) for _ in range(BLOCK)])

    def indices(self, seed, t0, t1):
        out = [self._block(seed, blk) for blk in range(t0 // BLOCK, (t1 - 1) // BLOCK + 1)] if t1 > t0 else []
        if not out:
            return np.empty((0, self.b), dtype=np.int64)
        a = np.concatenate(out)
        off = (t0 // BLOCK) * BLOCK
        return a[t0 - off: t1 - off].astype(np.int64)


class WithoutReplacement(Sampler):
    """Random reshuffling: each epoch is a fresh permutation cut into n // b batches
    (the last n mod b examples of a permutation are not used in that epoch)."""

    @property
    def steps_per_epoch(self) -> int:
        return self.n // self.b

    def indices(self, seed, t0, t1):
        spe = self.steps_per_epoch
        rows = []
        for e in range(t0 // spe, (t1 - 1) // spe + 1) if t1 > t0 else []:
            perm = _rng(seed, STREAM_BATCHES, e).permutation(self.n)[: spe * self.b].reshape(spe, self.b)
            lo, hi = max(t0 - e * spe, 0), min(t1 - e * spe, spe)
            rows.append(perm[lo:hi])
        return np.concatenate(rows).astype(np.int64) if rows else np.empty((0, self.b), dtype=np.int64)


class FullBatch(Sampler):
    """Gradient descent: every step uses all n examples; no randomness."""

    full = True
    stochastic = False

    def __init__(self, n: int):
        super().__init__(n, n)

    def indices(self, seed, t0, t1):
        raise TypeError("FullBatch has no indices; use the whole training set")
