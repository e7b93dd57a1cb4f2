"""The experiment schema (torch-free): experiments, arms and phases, bundled experiment catalog.

Above data/models/optim/metrics (whose config kinds it composes), below the engine.
"""
