"""Exceptions with messages that name what is wrong and what is allowed."""

from __future__ import annotations


class SgdlabError(Exception):
    """Base class of every error sgdlab raises on purpose."""


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
