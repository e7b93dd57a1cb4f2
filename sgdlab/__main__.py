"""`python -m sgdlab ...` is the `sgdlab` command."""

from sgdlab.frontends.cli import entry

entry()
