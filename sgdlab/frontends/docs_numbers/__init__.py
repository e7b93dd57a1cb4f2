"""Every number quoted in README.md and docs/ comes from here: ``python -m sgdlab.frontends.docs_numbers``.

    python -m sgdlab.frontends.docs_numbers --list             # what can be generated, rough cost
    python -m sgdlab.frontends.docs_numbers diag-net-main      # run it, save docs/numbers/diag-net-main.json,
                                                     # rewrite its blocks in the pages
    python -m sgdlab.frontends.docs_numbers --all              # everything (skips outputs that exist)
    python -m sgdlab.frontends.docs_numbers --all --force      # everything, from scratch
    python -m sgdlab.frontends.docs_numbers --render-only      # re-render all blocks from the saved outputs
    python -m sgdlab.frontends.docs_numbers --check            # pages == saved outputs? (what the test checks)

A top-level tool (like the CLI): it trains through :mod:`sgdlab.workflows.api` and imports nothing the
library depends on. The specs live in the studies (``sgdlab/studies/*/numbers.py``), each named by
its study through ``sgdlab.register_docs_numbers`` and imported by :func:`load_specs`.
"""

from __future__ import annotations

from sgdlab.frontends.docs_numbers.core import (
    SPECS,
    Spec,
    check_pages,
    generate,
    load_specs,
    register,
    render_record,
)

__all__ = ["SPECS", "Spec", "check_pages", "generate", "load_specs", "register", "render_record"]
