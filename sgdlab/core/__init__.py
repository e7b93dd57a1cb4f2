"""Layer 0, the config system: errors, registries, frozen configs, plugin loading, random-stream ids.

Imports nothing else of sgdlab. Every layer above builds its kinds on `Registry` and `Choice`.
"""
