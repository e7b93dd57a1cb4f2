"""What a user runs: the Python API and run loop, exact inits, windows, comparisons, sweeps with
their executors, and the Monitor for a user's own training loop."""
