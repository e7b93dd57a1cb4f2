"""Exceptions with messages that name what is wrong and what is allowed."""

from __future__ import annotations

from sgdlab.core.exit_codes import BAD_INPUT, FAILED_WORK


class SgdlabError(Exception):
    """Base class of every error sgdlab raises on purpose. ``exit_code``: the command line's exit
    code for it (:mod:`sgdlab.core.exit_codes`): bad input, unless a subclass says otherwise."""

    exit_code: int = BAD_INPUT


class WorkFailed(SgdlabError):
    """The command's input was good but its work stopped part-way (a worker process died): what
    was written stays, resumable (exit code ``FAILED_WORK``)."""

    exit_code = FAILED_WORK


class ConfigError(SgdlabError, ValueError):
    """A configuration key, type or value is invalid."""


class DataError(SgdlabError, OSError):
    """A data file is missing, unreadable or corrupt."""


class CheckpointError(SgdlabError, OSError):
    """A run directory or checkpoint is missing or corrupt."""


class SgdlabDeprecationWarning(DeprecationWarning):
    """A name or key of an earlier release, still accepted (the message says what replaces it);
    the CLI prints these as one line ``warning: ...``."""


def choices_message(what: str, got: object, allowed) -> str:
    allowed = sorted(allowed)
    return f"unknown {what} {got!r}; allowed: {', '.join(map(str, allowed))}"
