from . import noise, sde  # noqa: E402,F401  (registers the noisy optimizers and the SDE)
