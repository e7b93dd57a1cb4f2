"""What the commands of ``sgdlab`` share: one-line errors, exit codes for failed work, the
``--import`` and ``--trust-imports`` options, loading an experiment with the user's modules, the
workflows API imported for a start-up without needless collector passes, and checks made before
any work."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from pathlib import Path

import click

from sgdlab.core.errors import ConfigError, SgdlabError
from sgdlab.core.exit_codes import FAILED_WORK
from sgdlab.core.startup import collector_paused


class CommandProcess:
    """The click context's ``obj`` in the ``sgdlab`` command's own process
    (``sgdlab.__main__.entry``): only there may start-up freeze what it imported
    (:func:`sgdlab.core.startup.collector_paused`); a program that calls ``main`` itself keeps its
    garbage collectable."""


def workflows_api():
    """``sgdlab.workflows.api`` (torch and the engine), imported with the cycle collector paused;
    in the command's own process what is alive then is frozen out of later passes."""
    ctx = click.get_current_context(silent=True)
    with collector_paused(freeze=ctx is not None and isinstance(ctx.find_root().obj, CommandProcess)):
        from sgdlab.workflows import api
    return api


def error_line(e: BaseException) -> str:
    """One line saying what is wrong (and, for file errors, where)."""
    if isinstance(e, OSError) and not isinstance(e, SgdlabError) and e.strerror:
        where = f": {e.filename!r}" if e.filename else ""
        return f"{e.strerror}{where}"
    text = " ".join(str(e).split())
    if not isinstance(e, SgdlabError):  # a library's bare text ("array must not contain infs or NaNs") says too little
        return (f"{type(e).__name__}: {text or '(no message)'} (raised outside sgdlab's input checks; "
                f"--debug shows where)")
    return text or type(e).__name__


def given(param: str) -> bool:
    """Did the user give the current command's option ``param`` (not its default)?"""
    src = click.get_current_context().get_parameter_source(param)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def failed_work(what: str, items: list[str]) -> None:
    """Exit FAILED_WORK (3) after listing on stderr what failed (everything else was written)."""
    click.echo(f"failed: {what}", err=True)
    for line in items:
        click.echo(f"  {line}", err=True)
    sys.exit(FAILED_WORK)


def imports_option(fn):
    return click.option("--import", "imports", multiple=True, metavar="MODULE",
                        help="a module name or ./file.py to import first: it registers your own kinds "
                             "(repeatable; recorded in the config as `imports`)")(fn)


def trust_option(fn):
    return click.option("--trust-imports", is_flag=True,
                        help="import the Python modules a run or sweep directory names even if they are not "
                             "yours (a directory from elsewhere is code, not data; see docs/reliability.md)")(fn)


def load(experiment, imports, sets=()):
    """The experiment with ``--import`` modules imported first and recorded in ``imports``, then
    ``sets`` applied."""

    from sgdlab.core.plugins import import_modules
    from sgdlab.spec import catalog

    given = import_modules(list(imports), "--import") if imports else ()
    cfg = catalog.load_experiment(experiment)
    if given:
        cfg = dataclasses.replace(cfg, imports=tuple(dict.fromkeys(given + cfg.imports)))
    return catalog.override(cfg, list(sets)) if sets else cfg


def check_csv(csv_out) -> None:
    """Before any work: the directory of ``--csv`` exists (created if needed) and is writable."""
    if csv_out:
        from sgdlab.store.files import ensure_writable_dir

        ensure_writable_dir(Path(csv_out).parent, "directory of --csv")


@contextlib.contextmanager
def naming_file(path, what: str):
    """Re-raise a ConfigError that does not name ``path`` prefixed with it (a value the file set
    fails deep inside a config: the user must learn which file it came from)."""
    try:
        yield
    except ConfigError as e:
        if path is None or repr(str(path)) in str(e):
            raise
        raise ConfigError(f"{what} {str(path)!r}: {e}") from e
