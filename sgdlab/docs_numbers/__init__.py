"""Every number quoted in README.md and docs/ comes from here: ``python -m sgdlab.docs_numbers``.

    python -m sgdlab.docs_numbers --list             # what can be generated, rough cost
    python -m sgdlab.docs_numbers diag-net-main      # run it, save docs/numbers/diag-net-main.json,
                                                     # rewrite its blocks in the pages
    python -m sgdlab.docs_numbers --all              # everything (skips outputs that exist)
    python -m sgdlab.docs_numbers --all --force      # everything, from scratch
    python -m sgdlab.docs_numbers --render-only      # re-render all blocks from the saved outputs
    python -m sgdlab.docs_numbers --check            # pages == saved outputs? (what the test checks)

A top-level tool (like the CLI): it trains through :mod:`sgdlab.api` and imports nothing the
library depends on. The specs live in topic modules (diag, relu, related, curvature, deep).
"""

from __future__ import annotations

from .core import SPECS, Spec, check_pages, generate, register, render_record

# Importing the topic modules registers their specs, in this order (cheap first: --all order).
from . import diag, relu, related, curvature, deep  # noqa: F401  isort: skip
from ..studies.mnist1d import numbers as _mnist1d_numbers  # noqa: F401  (the MNIST-1D study's specs)

__all__ = ["SPECS", "Spec", "check_pages", "generate", "register", "render_record"]
