"""The one engine: trains every run of an experiment (arms x seeds) in batched groups."""
