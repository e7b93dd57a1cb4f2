"""`sgdlab ...`: the command line, derived from the config dataclasses.

Every config key can be set with ``--set key.path=value``; the top-level scalar fields of
ExperimentConfig (steps, seeds, ...) also get typed flags generated from the dataclass.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from pathlib import Path

# Busy cores thrash with OpenMP's default busy-waiting (several times slower); must be
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from sgdlab.core.errors import SgdlabDeprecationWarning, SgdlabError
from sgdlab.core.exit_codes import BAD_INPUT, FAILED_WORK, INTERRUPTED
from sgdlab.frontends.cli_common import (
    check_csv,
    error_line,
    failed_work,
    imports_option,
    load,
    trust_option,
    workflows_api,
)
from sgdlab.frontends.cli_sweep import sweep_cmd
from sgdlab.frontends.flags import typed_flags

# The options of the ``sgdlab`` group itself (what follows the name in the hint: a value or none).
GROUP_OPTIONS = {"--threads": " N", "--debug": ""}


class _Main(click.Group):
    """The error boundary of every command: sgdlab's own errors, file-system errors and bad
    values print one line (exit 2, or the error's own ``exit_code``); ``--debug`` shows the
    traceback instead."""

    def invoke(self, ctx):
        # MKL (torch's BLAS on x86) otherwise picks code paths by the memory alignment of each row,
        # so a run's numbers would change in the last bits with the runs sharing its batched tensors;
        # strict conditional numerical reproducibility makes them depend on the values only, which
        # spreading runs over processes relies on (sgdlab.workflows.shards). MKL reads it at its first
        # call, so the command sets it before any command imports torch; importing sgdlab as a
        # library changes nothing (sgdlab.workflows.cores checks, and says what to set).
        os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
        try:
            return super().invoke(ctx)
        except click.NoSuchOption as e:
            if e.option_name in GROUP_OPTIONS:  # given after the command: say where it goes
                e.message = (f"{e.option_name} is an option of sgdlab itself, given before the command: "
                             f"sgdlab {e.option_name}{GROUP_OPTIONS[e.option_name]} {ctx.invoked_subcommand} ...")
                e.possibilities = []
            raise
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            sys.exit(INTERRUPTED)
        except (SgdlabError, OSError, ValueError) as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {error_line(e)}", err=True)
            sys.exit(getattr(e, "exit_code", BAD_INPUT))


def _one_line_deprecations() -> None:
    """Show sgdlab's deprecation messages (old config keys, renamed metrics) once each, as
    ``warning: ...`` lines; every other warning as Python shows it."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SgdlabDeprecationWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    warnings.filterwarnings("default", category=SgdlabDeprecationWarning)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sgdlab")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch intra-op threads of deep nets (toy nets always run on 1 per process: more "
                   "slows them down; spread them with `run --workers`)")
@click.option("--debug", is_flag=True, help="show the full traceback of an error")
def main(threads, debug):
    """Study the hidden dynamics of SGD: loss stabilization, sparse features, sharpness."""
    _one_line_deprecations()
    # torch takes its thread count from these when it is imported (commands that only read or
    # write configs never import it); set it directly if something imported it already.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@main.command("run")
@click.argument("experiment", required=False)
@click.option("--out", "-o", type=click.Path(file_okay=False), help="run directory (default runs/NAME-TIME)")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE",
              help="override any config key, e.g. --set arms.0.schedule.lr=0.27 (repeatable)")
@click.option("--resume", type=click.Path(), help="continue a killed run from its last checkpoint")
@click.option("--accept-changed-inputs", is_flag=True,
              help="--resume even though an input file (data, init, module) or runs.json changed since the run "
                   "started (recorded in meta.json)")
@click.option("--overwrite", is_flag=True, help="replace an existing run directory")
@click.option("--progress/--no-progress", default=True, help="progress bar on the terminal")
@click.option("--dry-run", is_flag=True, help="print the resolved config and the runs; train nothing")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="processes the runs are spread over, same results as 1 [default: one per physical core, "
                   "capped by the runs; 1 for deep nets and GPU runs]")
@imports_option
@trust_option
@typed_flags
def run_cmd(experiment, out, sets, resume, accept_changed_inputs, overwrite, progress, dry_run, workers, imports,
            trust_imports, **typed):
    """Run EXPERIMENT (a bundled name, see `sgdlab list`, or a .toml file)."""
    from sgdlab.core.config import dump_toml, toml_value
    from sgdlab.workflows.plotter import Plotter

    if resume:
        if experiment or sets or imports or any(v is not None for v in typed.values()):
            raise click.UsageError("--resume takes only the run directory: the config (and its imports) "
                                   "is read from it")
        with Plotter.started() as plotter:  # imports matplotlib on another core while torch is imported
            api = workflows_api()
            api.resume(resume, progress=progress, workers=workers, trust_imports=trust_imports,
                       accept_changed_inputs=accept_changed_inputs, plotter=plotter)
        return
    if accept_changed_inputs or trust_imports:
        raise click.UsageError("--accept-changed-inputs and --trust-imports go with --resume (a config you run "
                               "yourself imports its modules)")
    if not experiment:
        from sgdlab.spec.catalog import list_experiments

        raise click.UsageError(f"name an experiment: one of {', '.join(list_experiments())}")
    extra = [f"{k}={toml_value(v)}" for k, v in typed.items() if v is not None]
    cfg = load(experiment, imports, list(sets) + extra)  # a bad config is refused before torch is imported
    if dry_run:
        api = workflows_api()
        click.echo(dump_toml(cfg))
        eng, _ = api.preflight(cfg)  # every check a run makes before training
        click.echo(f"# {eng.n_runs} runs in {len(eng.groups)} batched group(s), "
                   f"{len(eng.eval_steps)} evaluation steps")
        return
    if out is None:
        import time

        out = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with Plotter.started() as plotter:  # imports matplotlib on another core while torch is imported
        api = workflows_api()
        res = api.run(cfg, out, progress=progress, overwrite=overwrite, workers=workers, plotter=plotter)
    click.echo(f"run directory: {res.path}")


@main.command("plot")
@click.argument("run_dir", type=click.Path())
@click.option("--metric", "-m", "metrics", multiple=True,
              help="panels to draw into their own file (default: the config's figure and extra figures)")
@trust_option
def plot_cmd(run_dir, metrics, trust_imports):
    """Redraw the figures of RUN_DIR (a run or a sweep directory) from disk."""
    from sgdlab.plots import plot_run
    from sgdlab.workflows.sweep import INDEX

    if (Path(run_dir) / INDEX).exists():
        from sgdlab.plots.sweep import plot_sweep

        for p in plot_sweep(run_dir, tuple(metrics) or None):
            click.echo(str(p))
        return
    for p in plot_run(run_dir, tuple(metrics) or None, trust_imports=trust_imports):
        click.echo(str(p))


@main.command("summary")
@click.argument("run_dir", type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="also export the rows (.csv or .parquet)")
def summary_cmd(run_dir, csv_out):
    """Print the per-arm table of a finished run, or the per-point table of a sweep."""
    from sgdlab.store.runs import RunDir
    from sgdlab.store.summary import format_table, table_columns
    from sgdlab.workflows.sweep import INDEX

    check_csv(csv_out)
    if (Path(run_dir) / INDEX).exists() or csv_out:
        from sgdlab.workflows.compare import export, format_rows, rows_of

        rows = rows_of(run_dir)
        click.echo(format_rows(rows))
        if csv_out:
            click.echo(f"wrote {export(rows, csv_out)}")
        return
    rd = RunDir(run_dir)
    rd.runs()  # raises a clear error if this is not a run directory at all
    s = rd.summary()
    if s is None:
        raise SgdlabError(f"{run_dir} has no summary.json yet (unfinished?); resume it with "
                          f"`sgdlab run --resume {run_dir}`")
    from sgdlab.spec.references import matching

    click.echo(format_table(s, table_columns(rd.config_table()), matching(rd.config_table())))


@main.command("list")
def list_cmd():
    """List the bundled experiments."""
    from sgdlab.spec.catalog import describe_experiments

    for name, description in describe_experiments():
        click.echo(f"{name:28s} {description}")


@main.command("kinds")
@click.argument("family", required=False, metavar="[FAMILY]")
@click.option("--for", "experiment", metavar="EXPERIMENT",
              help="metric: list exactly the metrics this experiment can log (builds its data and model)")
@imports_option
def kinds_cmd(family, experiment, imports):
    """List every registered kind (data, model, optimizer, schedule, metric, figure, executor) with its
    keys, types, defaults and a one-line description; your own kinds too after --import."""
    from sgdlab.core.plugins import import_modules
    from sgdlab.frontends.kinds import describe, format_kinds

    if imports:
        import_modules(list(imports), "--import")
    cfg = None
    if experiment:
        if family not in (None, "metric"):
            raise click.UsageError("--for applies to the metric family")
        cfg = load(experiment, imports)
        family = "metric"
    click.echo(format_kinds(describe(family, cfg)))


@main.command("show")
@click.argument("experiment")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--keys", is_flag=True, help="list every settable key of this experiment with its type and value")
@imports_option
def show_cmd(experiment, sets, keys, imports):
    """Print the resolved config of EXPERIMENT as TOML (save it, edit it, run it)."""
    from sgdlab.core.config import dump_toml, flat_items
    from sgdlab.frontends.kinds import type_text, value_text

    cfg = load(experiment, imports, sets)
    if keys:
        items = flat_items(cfg)
        width = max(len(k) for k, _, _ in items)
        for name, tp, value in items:
            click.echo(f"{name:{width}s}  {value_text(value):24s}  {type_text(tp)}")
        click.echo("# set any of these with --set KEY=VALUE; a 'kind' key switches the table to another kind, "
                   "starting from that kind's defaults (sgdlab show NAME --set data.kind=... --keys lists its keys; "
                   "sgdlab kinds lists every kind)")
        click.echo("# a multi-phase arm has arms.N.phases.M.optimizer / .schedule / .steps / .fraction instead of "
                   "arms.N.optimizer and arms.N.schedule")
        return
    click.echo(dump_toml(cfg), nl=False)


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--to", "backend", type=click.Choice(["tensorboard", "wandb", "mlflow"]), required=True,
              help="writes RUN_DIR/<backend>/ (wandb offline, mlflow local files; the package must be installed)")
def export_cmd(run_dir, backend):
    """Replay a run directory's metrics into TensorBoard, W&B (offline) or MLflow (local)."""
    from sgdlab.workflows.api import export_run

    click.echo(str(export_run(run_dir, backend)))


@main.command("compare")
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="export the rows (.csv or .parquet)")
@click.option("--metric", "-m", "metrics", multiple=True, help="columns (default: the first four summary-table metrics present)")
def compare_cmd(dirs, csv_out, metrics):
    """One table across run and sweep directories (medians and IQR over seeds)."""
    from sgdlab.workflows.compare import export, format_rows, rows_of

    check_csv(csv_out)
    rows = [r for d in dirs for r in rows_of(d)]
    click.echo(format_rows(rows, tuple(metrics) or None))
    if csv_out:
        click.echo(f"wrote {export(rows, csv_out)}")
    bad = [r for r in rows if "status" in r]  # a sweep point whose job failed or has not finished
    if bad:
        failed_work(f"{len(bad)} row(s) have no result (exit code {FAILED_WORK})",
                     [f"{r['source']}: {r['arm']}: {r['status']}" + (f" ({r['error']})" if r.get("error") else "")
                      for r in bad])


@main.command("window")
@click.argument("experiment")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--arm", type=int, default=0, show_default=True, help="whose optimizer is used (index)")
@click.option("--lo", type=float, required=True, help="smallest step size of the grid")
@click.option("--hi", type=float, required=True, help="largest step size of the grid")
@click.option("--points", type=click.IntRange(min=2), default=12, show_default=True, help="log-spaced grid points")
@click.option("--bisect", type=click.IntRange(min=0), default=3, show_default=True, help="bisection rounds per edge")
@click.option("--tol", type=float, default=1e-3, show_default=True,
              help="converged if the late loss level < tol x initial loss")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="where window.json/.png go")
@imports_option
def window_cmd(experiment, sets, arm, lo, hi, points, bisect, tol, out, imports):
    """Find per seed the step sizes where the loss stabilizes (neither converges nor diverges)."""

    from sgdlab.store.files import check_writable_dir
    from sgdlab.workflows.window import (
        check_window_args,
        find_window,
        format_window,
        save_window,
    )

    cfg = load(experiment, imports, sets)
    if not 0 <= arm < len(cfg.arms):
        raise SgdlabError(f"--arm {arm} out of range: the experiment has arms 0..{len(cfg.arms) - 1}")
    cfg = dataclasses.replace(cfg, arms=(cfg.arms[arm],))
    check_window_args(cfg, lo, hi, points, bisect)
    out = out or Path("runs") / f"{cfg.name}-window"
    check_writable_dir(out, "--out directory")  # before the work; nothing is created until the result is saved
    res = find_window(cfg, lo, hi, points=points, bisect=bisect, tol=tol)
    click.echo(format_window(res))
    for p in save_window(res, out, title=f"{cfg.name}: stabilization window of {cfg.arms[0].optimizer.kind}"):
        click.echo(str(p))
    import math

    if not any(math.isfinite(x) for x in res.lower):
        failed_work(f"no seed stabilizes anywhere in [{lo:g}, {hi:g}] (exit code {FAILED_WORK}); widen --lo/--hi "
                     f"or check --tol", [f"seed {s}: no window" for s in res.seeds])


if __name__ == "__main__":  # pragma: no cover
    main()


main.add_command(sweep_cmd)
