"""The exit codes of the ``sgdlab`` command line, one meaning each (documented in
docs/reliability.md and the README's command-line section).

* 0 (``OK``): the command did everything it was asked;
* 1 (``CRASH``): an unexpected internal error (a bug: please report the ``--debug`` traceback);
* 2 (``BAD_INPUT``): bad input (a config, a file, an option, a run directory): one ``error:`` line,
  nothing already written is lost; click's own usage errors exit 2 too;
* 3 (``FAILED_WORK``): the command ran, but part of its work failed: a sweep with failed jobs, a
  ``compare`` that shows failed or unfinished jobs, a ``window`` that found no stabilizing step
  size for any seed, a run whose worker process died (resumable); what failed is listed on
  stderr and everything else was written;
* 130: interrupted (Ctrl-C); resumable.
"""

from __future__ import annotations

OK = 0
CRASH = 1
BAD_INPUT = 2
FAILED_WORK = 3
INTERRUPTED = 130

__all__ = ["BAD_INPUT", "CRASH", "FAILED_WORK", "INTERRUPTED", "OK"]
