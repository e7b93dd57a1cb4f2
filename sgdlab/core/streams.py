"""Every random stream's id, in one table.

Randomness is counter-based: a draw is a pure function of (run seed, stream id, step or block), so
chunking, batching runs together, sharding them over processes and resuming never change a result.
A stream id separates the sources drawn from one run seed; no two sources share one.

=====================  ====  ===========================================================
stream                 id    drawn by
=====================  ====  ===========================================================
STREAM_INIT            0     models' initial parameters (``np.random.SeedSequence([seed, 0])``)
STREAM_BATCHES         1     optim.samplers: the mini-batch indices of every step
STREAM_NOISE           2     optim.noise: label noise, parameter noise, the SDE's Brownian increments
STREAM_AUGMENT         3     data.augment: random crops and flips per (run, step)
STREAM_CURVATURE       101   metrics.measure: Lanczos start vectors and Monte Carlo batches
=====================  ====  ===========================================================

Within a stream, tags separate sub-sources: the noise tags below (one per noise source) and the
curvature measurement's batch substream (Lanczos uses the bare key).
"""

STREAM_INIT = 0
STREAM_BATCHES = 1
STREAM_NOISE = 2
STREAM_AUGMENT = 3
STREAM_CURVATURE = 101

# Tags within STREAM_NOISE, one per noise source.
TAG_LABEL = 0
TAG_PARAM = 1
TAG_SDE = 2

# Substream of STREAM_CURVATURE for the Monte Carlo batches of one measurement, so that the batches
# drawn do not depend on the random vectors Lanczos used (none when warm-started).
BATCH_SUBSTREAM = 1
