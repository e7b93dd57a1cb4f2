"""Studies: self-contained investigations built on sgdlab's public registries, the way a user's
plugin would (their models, metrics, figures and docs-numbers specs). Importing a study's package
registers its kinds."""
