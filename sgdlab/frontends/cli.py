"""`sgdlab ...`: the command line, derived from the config dataclasses.

Every config key can be set with ``--set key.path=value``; the top-level scalar fields of
ExperimentConfig (steps, seeds, ...) also get typed flags generated from the dataclass.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import warnings
from pathlib import Path

# Busy cores thrash with OpenMP's default busy-waiting (several times slower); must be
# set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import click

from sgdlab.core.errors import ConfigError, SgdlabDeprecationWarning, SgdlabError
from sgdlab.core.exit_codes import BAD_INPUT, FAILED_WORK, INTERRUPTED
from sgdlab.frontends.flags import typed_flags


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


def _given(param: str) -> bool:
    """Did the user give the current command's option ``param`` (not its default)?"""
    src = click.get_current_context().get_parameter_source(param)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def _failed_work(what: str, items: list[str]) -> None:
    """Exit FAILED_WORK (3) after listing on stderr what failed (everything else was written)."""
    click.echo(f"failed: {what}", err=True)
    for line in items:
        click.echo(f"  {line}", err=True)
    sys.exit(FAILED_WORK)


def _imports_option(fn):
    return click.option("--import", "imports", multiple=True, metavar="MODULE",
                        help="a module name or ./file.py to import first: it registers your own kinds "
                             "(repeatable; recorded in the config as `imports`)")(fn)


def _trust_option(fn):
    return click.option("--trust-imports", is_flag=True,
                        help="import the Python modules a run or sweep directory names even if they are not "
                             "yours (a directory from elsewhere is code, not data; see docs/reliability.md)")(fn)


def _load(experiment, imports, sets=()):
    """The experiment with ``--import`` modules imported first and recorded in ``imports``, then
    ``sets`` applied."""

    from sgdlab.core.plugins import import_modules
    from sgdlab.spec import catalog

    given = import_modules(list(imports), "--import") if imports else ()
    cfg = catalog.load_experiment(experiment)
    if given:
        cfg = dataclasses.replace(cfg, imports=tuple(dict.fromkeys(given + cfg.imports)))
    return catalog.override(cfg, list(sets)) if sets else cfg


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
@_imports_option
@_trust_option
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
            from sgdlab.workflows import api

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
    cfg = _load(experiment, imports, list(sets) + extra)  # a bad config is refused before torch is imported
    if dry_run:
        from sgdlab.workflows import api

        click.echo(dump_toml(cfg))
        eng, _ = api.preflight(cfg)  # every check a run makes before training
        click.echo(f"# {eng.n_runs} runs in {len(eng.groups)} batched group(s), "
                   f"{len(eng.eval_steps)} evaluation steps")
        return
    if out is None:
        import time

        out = Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with Plotter.started() as plotter:  # imports matplotlib on another core while torch is imported
        from sgdlab.workflows import api

        res = api.run(cfg, out, progress=progress, overwrite=overwrite, workers=workers, plotter=plotter)
    click.echo(f"run directory: {res.path}")


@main.command("plot")
@click.argument("run_dir", type=click.Path())
@click.option("--metric", "-m", "metrics", multiple=True,
              help="panels to draw into their own file (default: the config's figure and extra figures)")
@_trust_option
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


def _check_csv(csv_out) -> None:
    """Before any work: the directory of ``--csv`` exists (created if needed) and is writable."""
    if csv_out:
        from sgdlab.store.files import ensure_writable_dir

        ensure_writable_dir(Path(csv_out).parent, "directory of --csv")


@main.command("summary")
@click.argument("run_dir", type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="also export the rows (.csv or .parquet)")
def summary_cmd(run_dir, csv_out):
    """Print the per-arm table of a finished run, or the per-point table of a sweep."""
    from sgdlab.store.runs import RunDir
    from sgdlab.store.summary import format_table, table_columns
    from sgdlab.workflows.sweep import INDEX

    _check_csv(csv_out)
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
@_imports_option
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
        cfg = _load(experiment, imports)
        family = "metric"
    click.echo(format_kinds(describe(family, cfg)))


@main.command("show")
@click.argument("experiment")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--keys", is_flag=True, help="list every settable key of this experiment with its type and value")
@_imports_option
def show_cmd(experiment, sets, keys, imports):
    """Print the resolved config of EXPERIMENT as TOML (save it, edit it, run it)."""
    from sgdlab.core.config import dump_toml, flat_items
    from sgdlab.frontends.kinds import type_text, value_text

    cfg = _load(experiment, imports, sets)
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


@contextlib.contextmanager
def _naming_file(path, what: str):
    """Re-raise a ConfigError that does not name ``path`` prefixed with it (a value the file set
    fails deep inside a config: the user must learn which file it came from)."""
    try:
        yield
    except ConfigError as e:
        if path is None or repr(str(path)) in str(e):
            raise
        raise ConfigError(f"{what} {str(path)!r}: {e}") from e


@main.command("sweep")
@click.argument("experiment", required=False)
@click.option("--grid", "-g", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="an axis: values, or linspace/logspace/uniform/loguniform(lo, hi, n[, seed]) (repeatable)")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE", help="override for every point")
@click.option("--seeds", type=click.IntRange(min=1), help="seeds per arm (shortcut for --set seeds=N)")
@click.option("--steps", type=click.IntRange(min=1), help="steps of every run (shortcut for --set steps=N)")
@click.option("--file", "sweep_file", type=click.Path(dir_okay=False),
              help="sweep TOML: experiment, seeds, steps, set = [...], [grid] key = [values] or 'logspace(...)'")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="sweep directory (default sweeps/NAME-TIME)")
@click.option("--resume", type=click.Path(), help="re-run only the unfinished jobs of a sweep")
@click.option("--executor", default=None, metavar="NAME",
              help="where jobs run: inprocess (default), pool, ray (implied by --ray/--address), slurm (one "
                   "array job), or one registered with sgdlab.register_executor")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="processes / Ray CPUs (pool: jobs side by side; with fewer jobs than workers each job's runs "
                   "are spread over the rest)")
@click.option("--ray", "use_ray", is_flag=True, help="start a local Ray cluster for the jobs")
@click.option("--address", help="join an existing Ray cluster at this address")
@click.option("--dry-run", is_flag=True, help="print the plan (points -> batched jobs); run nothing")
@click.option("--partition", help="slurm: partition of the array job")
@click.option("--time", "time_min", type=click.IntRange(min=1),
              help="slurm: wall-clock minutes per job (requeued and resumed at the limit)")
@click.option("--cpus", type=click.IntRange(min=1),
              help="slurm: CPUs per job (deep nets: torch threads; toy models: one process each over the job's runs)")
@click.option("--gpus", type=click.IntRange(min=0), help="slurm: GPUs per job (default: 1 if the config's device is cuda)")
@click.option("--mem", type=click.FloatRange(min=0), help="slurm: GB of memory per job")
@_imports_option
@_trust_option
def sweep_cmd(experiment, grids, sets, seeds, steps, sweep_file, out, resume, executor, workers, use_ray, address,
              dry_run, partition, time_min, cpus, gpus, mem, imports, trust_imports):
    """Run EXPERIMENT over a grid (--grid, --file, or the experiment's own sweep_grid); compatible
    points are batched into one job."""
    import time

    from sgdlab.workflows.compare import format_rows, rows_of
    from sgdlab.workflows.sweep import EXECUTORS, Sweep, parse_axis, parse_values, plan
    from sgdlab.workflows.sweep_file import read_sweep_file

    executor = executor or ("ray" if (use_ray or address) else "inprocess")
    EXECUTORS.get(executor)  # an unknown name fails before anything is planned, listing the valid ones
    if executor in ("inprocess", "slurm") and _given("workers"):
        click.echo(f"warning: --workers is for --executor pool (processes) and ray (CPUs); {executor} "
                   + ("runs one job after the other in this process" if executor == "inprocess"
                      else "tasks take --cpus each"), err=True)
    slurm_table = None
    if resume:
        if experiment or grids or sets or sweep_file or imports:
            raise click.UsageError("--resume takes only the sweep directory: the plan is read from it")
        sw = Sweep(resume)
        sw.index()
    else:
        axes = [parse_axis(g) for g in grids]
        sets = list(sets)
        with _naming_file(sweep_file, "sweep file"):  # every error about what the file sets names it
            if sweep_file:
                spec = read_sweep_file(sweep_file)
                slurm_table = spec.get("slurm")
                experiment = experiment or spec.get("experiment")
                seeds = seeds or spec.get("seeds")
                steps = steps or spec.get("steps")
                sets = [str(x) for x in spec.get("set", [])] + sets
                for k, v in spec.get("grid", {}).items():
                    axes.append((k, parse_values(v) if isinstance(v, str) else list(v)))
            if sweep_file and not (experiment and axes):
                missing = ("no experiment: add experiment = \"NAME\" or name it on the command line" if not experiment
                           else "no [grid] axis: add one, or give --grid")
                raise ConfigError(f"sweep file {sweep_file!r}: {missing}")
            if not experiment:
                raise click.UsageError("name an experiment (or give --file with experiment = ...)")
            sets += [f"seeds={seeds}"] * bool(seeds) + [f"steps={steps}"] * bool(steps)
            base = _load(experiment, imports)
            if not axes:  # the grid the experiment names for itself, if any
                axes = [parse_axis(g) for g in base.sweep_grid]
            if not axes:
                raise click.UsageError("give at least one --grid KEY=V1,V2,... (this experiment names no sweep_grid)")
            if dry_run:
                points, jobs = plan(base, axes, tuple(sets))
                members: dict[int, list[str]] = {}
                for p in points:
                    members.setdefault(p.job, []).append(p.label)
                click.echo("\n".join(f"job {j.id}: {len(j.config.arms)} arms x {j.config.seeds} seeds, "
                                      f"points: {'; '.join(members[j.id])}" for j in jobs))
                click.echo(f"{len(points)} points in {len(jobs)} batched job(s)")
                if executor == "pool":
                    from sgdlab.workflows.executors import shares

                    per = shares(workers, len(jobs))
                    click.echo(f"pool of {workers} process(es): {len(per)} job(s) at a time" +
                               (f", each job's runs spread over up to {max(per)} processes" if max(per) > 1 else ""))
                return
            out = out or Path("sweeps") / f"{base.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            sw = Sweep.create(out, base, axes, sets, experiment=str(experiment))
    slurm = None
    if executor == "slurm":
        from sgdlab.workflows.slurm import resolve_options

        slurm = resolve_options(sw.path, {"partition": partition, "time": time_min, "cpus": cpus, "gpus": gpus,
                                          "mem": mem}, slurm_table)
    sw.execute(executor, workers=workers, address=address, slurm=slurm, trust_imports=trust_imports)
    click.echo(format_rows(rows_of(sw.path)))
    from sgdlab.plots.sweep import plot_sweep

    for p in plot_sweep(sw.path):
        click.echo(str(p))
    index = sw.index()
    failed = [j for j in index["jobs"] if j["status"] == "failed"]
    click.echo(f"sweep directory: {sw.path}" + (f" ({len(failed)} job(s) failed; see index.json)" if failed else ""))
    if failed:
        _failed_work(f"{len(failed)} of {len(index['jobs'])} job(s) of the sweep (exit code {FAILED_WORK})",
                     [_job_line(index, j) for j in failed])


def _job_line(index: dict, job: dict) -> str:
    """``job N (points: ...): error`` of a failed or unfinished sweep job."""
    labels = [", ".join(f"{k}={v}" for k, v in p["values"].items()) for p in index["points"] if p["job"] == job["id"]]
    return f"job {job['id']} ({job['dir']}; points: {'; '.join(labels)}): {job.get('error') or job['status']}"


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

    _check_csv(csv_out)
    rows = [r for d in dirs for r in rows_of(d)]
    click.echo(format_rows(rows, tuple(metrics) or None))
    if csv_out:
        click.echo(f"wrote {export(rows, csv_out)}")
    bad = [r for r in rows if "status" in r]  # a sweep point whose job failed or has not finished
    if bad:
        _failed_work(f"{len(bad)} row(s) have no result (exit code {FAILED_WORK})",
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
@_imports_option
def window_cmd(experiment, sets, arm, lo, hi, points, bisect, tol, out, imports):
    """Find per seed the step sizes where the loss stabilizes (neither converges nor diverges)."""

    from sgdlab.store.files import check_writable_dir
    from sgdlab.workflows.window import (
        check_window_args,
        find_window,
        format_window,
        save_window,
    )

    cfg = _load(experiment, imports, sets)
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
        _failed_work(f"no seed stabilizes anywhere in [{lo:g}, {hi:g}] (exit code {FAILED_WORK}); widen --lo/--hi "
                     f"or check --tol", [f"seed {s}: no window" for s in res.seeds])


if __name__ == "__main__":  # pragma: no cover
    main()
