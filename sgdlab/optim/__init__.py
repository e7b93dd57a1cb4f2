from sgdlab.optim import noise, sde  # noqa: F401  (registers the noisy optimizers and the SDE)
