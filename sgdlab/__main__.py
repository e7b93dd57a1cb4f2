"""The ``sgdlab`` command's process: ``python -m sgdlab ...`` and the ``sgdlab`` script."""

import gc

from sgdlab.frontends.cli import main
from sgdlab.frontends.cli_common import CommandProcess


def entry() -> None:
    """:func:`sgdlab.frontends.cli.main`, after which the process exits without the interpreter's
    last garbage collections over every object torch and matplotlib made (about 0.3 s of every
    command that imported them). Files are still closed and ``atexit`` handlers still run; only
    the cycle collection at exit is skipped. (Not for ``main`` called inside another program:
    freezing would keep that program's garbage for good.)"""
    try:
        main(obj=CommandProcess())  # this process is the command's: its start-up may freeze its imports
    finally:
        gc.freeze()


if __name__ == "__main__":
    entry()
