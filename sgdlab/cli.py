"""`sgdlab ...`: the command line, derived from the config dataclasses.

Every config key can be set with ``--set key.path=value``; the top-level scalar fields of
ExperimentConfig (steps, seeds, ...) also get typed flags generated from the dataclass.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path

# Two busy cores thrash with OpenMP's default busy-waiting (measured 2-6x slower); must be
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click  # noqa: E402

from .errors import SgdlabError  # noqa: E402


def _scalar_fields():
    from .experiment import ExperimentConfig

    hints = typing.get_type_hints(ExperimentConfig)
    out = []
    for f in dataclasses.fields(ExperimentConfig):
        tp = hints[f.name]
        if tp in (int, float, str, bool) or typing.get_origin(tp) is typing.Literal:
            out.append((f.name, tp))
    return out


def _typed_flags(fn):
    """Add one option per top-level scalar ExperimentConfig field (e.g. --steps, --seeds)."""
    for name, tp in reversed(_scalar_fields()):
        flag = "--" + name.replace("_", "-")
        if name in {"name", "description"}:
            continue
        if tp is bool:
            fn = click.option(flag + "/--no-" + name.replace("_", "-"), name, default=None,
                              help=f"override {name}")(fn)
        elif typing.get_origin(tp) is typing.Literal:
            fn = click.option(flag, name, type=click.Choice(typing.get_args(tp)), default=None,
                              help=f"override {name}")(fn)
        else:
            fn = click.option(flag, name, type=tp, default=None, help=f"override {name}")(fn)
    return fn


def _fail(e: Exception):
    click.echo(f"error: {e}", err=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sgdlab")
@click.option("--threads", type=int, default=1, show_default=True,
              help="torch intra-op threads (toy nets run fastest on 1; raise it for deep nets)")
def main(threads):
    """Study the hidden dynamics of SGD: loss stabilization, sparse features, sharpness."""
    import torch

    torch.set_num_threads(max(1, threads))


@main.command("run")
@click.argument("experiment", required=False)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="run directory (default runs/NAME-TIME)")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE",
              help="override any config key, e.g. --set arms.0.schedule.lr=0.27 (repeatable)")
@click.option("--resume", type=click.Path(), help="continue a killed run from its last checkpoint")
@click.option("--overwrite", is_flag=True, help="replace an existing run directory")
@click.option("--progress/--no-progress", default=True, help="progress bar on the terminal")
@click.option("--dry-run", is_flag=True, help="print the resolved config and the runs; train nothing")
@_typed_flags
def run_cmd(experiment, out, sets, resume, overwrite, progress, dry_run, **typed):
    """Run EXPERIMENT (a bundled name, see `sgdlab list`, or a .toml file)."""
    from . import api
    from .config import dump_toml, toml_value

    try:
        if resume:
            if experiment or sets or any(v is not None for v in typed.values()):
                raise click.UsageError("--resume takes only the run directory: the config is read from it")
            api.resume(resume, progress=progress)
            return
        if not experiment:
            raise click.UsageError(f"name an experiment: one of {', '.join(api.list_experiments())}")
        cfg = api.load_experiment(experiment)
        extra = [f"{k}={toml_value(v)}" for k, v in typed.items() if v is not None]
        cfg = api.override(cfg, list(sets) + extra)
        if dry_run:
            from .train import Engine

            click.echo(dump_toml(cfg))
            eng = Engine(cfg)
            click.echo(f"# {eng.n_runs} runs in {len(eng.groups)} batched group(s), "
                       f"{len(eng.eval_steps)} evaluation steps")
            return
        if out is None:
            import time

            out = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        res = api.run(cfg, out, progress=progress, overwrite=overwrite)
        click.echo(f"run directory: {res.path}")
    except KeyboardInterrupt:
        sys.exit(130)
    except SgdlabError as e:
        _fail(e)


@main.command("plot")
@click.argument("run_dir", type=click.Path())
@click.option("--metric", "-m", "metrics", multiple=True, help="panels to draw (default: the config's figure)")
def plot_cmd(run_dir, metrics):
    """Redraw the figures of RUN_DIR from disk."""
    from .plots import plot_run

    try:
        for p in plot_run(run_dir, tuple(metrics) or None):
            click.echo(str(p))
    except SgdlabError as e:
        _fail(e)


@main.command("summary")
@click.argument("run_dir", type=click.Path())
def summary_cmd(run_dir):
    """Print the per-arm table of a finished run."""
    from .runs import RunDir
    from .summary import format_table

    try:
        rd = RunDir(run_dir)
        rd.runs()  # raises a clear error if this is not a run directory at all
        s = rd.summary()
        if s is None:
            raise SgdlabError(f"{run_dir} has no summary.json yet (unfinished?); resume it with "
                              f"`sgdlab run --resume {run_dir}`")
        click.echo(format_table(s))
    except SgdlabError as e:
        _fail(e)


@main.command("list")
def list_cmd():
    """List the bundled experiments."""
    from . import api

    for name in api.list_experiments():
        cfg = api.load_experiment(name)
        click.echo(f"{name:28s} {cfg.description}")


@main.command("show")
@click.argument("experiment")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--keys", is_flag=True, help="list every settable key with its type and default")
def show_cmd(experiment, sets, keys):
    """Print the resolved config of EXPERIMENT as TOML (save it, edit it, run it)."""
    from . import api
    from .config import dump_toml, flat_fields, typing_repr
    from .experiment import ExperimentConfig

    try:
        cfg = api.override(api.load_experiment(experiment), list(sets))
        if keys:
            for name, tp, default in flat_fields(ExperimentConfig):
                click.echo(f"{name:32s} {typing_repr(tp):40s} default={default!r}")
            click.echo("arms.N.optimizer / arms.N.schedule / data / model: tables with a 'kind'; "
                       "see `sgdlab show NAME` for their keys")
            return
        click.echo(dump_toml(cfg), nl=False)
    except SgdlabError as e:
        _fail(e)


if __name__ == "__main__":  # pragma: no cover
    main()
