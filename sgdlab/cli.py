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

import click

from .errors import SgdlabError


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
    """Redraw the figures of RUN_DIR (a run or a sweep directory) from disk."""
    from .plots import plot_run
    from .sweep import INDEX

    try:
        if (Path(run_dir) / INDEX).exists():
            from .plots.sweep import plot_sweep

            for p in plot_sweep(run_dir, tuple(metrics) or ("train_loss", "test_loss")):
                click.echo(str(p))
            return
        for p in plot_run(run_dir, tuple(metrics) or None):
            click.echo(str(p))
    except SgdlabError as e:
        _fail(e)


@main.command("summary")
@click.argument("run_dir", type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="also export the rows (.csv or .parquet)")
def summary_cmd(run_dir, csv_out):
    """Print the per-arm table of a finished run, or the per-point table of a sweep."""
    from .runs import RunDir
    from .summary import format_table
    from .sweep import INDEX

    try:
        if (Path(run_dir) / INDEX).exists() or csv_out:
            from .compare import export, format_rows, rows_of

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


@main.command("sweep")
@click.argument("experiment", required=False)
@click.option("--grid", "-g", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="an axis: values, or linspace/logspace/uniform/loguniform(lo, hi, n[, seed]) (repeatable)")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE", help="override for every point")
@click.option("--seeds", type=int, help="seeds per arm (shortcut for --set seeds=N)")
@click.option("--file", "sweep_file", type=click.Path(dir_okay=False),
              help="sweep TOML: experiment, seeds, set = [...], [grid] key = [values] or 'logspace(...)'")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="sweep directory (default sweeps/NAME-TIME)")
@click.option("--resume", type=click.Path(file_okay=False), help="re-run only the unfinished jobs of a sweep")
@click.option("--executor", type=click.Choice(["inprocess", "pool", "ray", "slurm"]), default=None,
              help="where jobs run (default in-process; --ray/--address imply ray; slurm: one array job)")
@click.option("--workers", type=int, default=2, show_default=True, help="processes / Ray CPUs")
@click.option("--ray", "use_ray", is_flag=True, help="start a local Ray cluster for the jobs")
@click.option("--address", help="join an existing Ray cluster at this address")
@click.option("--dry-run", is_flag=True, help="print the plan (points -> batched jobs); run nothing")
@click.option("--partition", help="slurm: partition of the array job")
@click.option("--time", "time_min", type=int, help="slurm: wall-clock minutes per job (requeued and resumed at the limit)")
@click.option("--cpus", type=int, help="slurm: CPUs per job (= torch threads)")
@click.option("--gpus", type=int, help="slurm: GPUs per job (default: 1 if the config's device is cuda)")
@click.option("--mem", type=float, help="slurm: GB of memory per job")
def sweep_cmd(experiment, grids, sets, seeds, sweep_file, out, resume, executor, workers, use_ray, address, dry_run,
              partition, time_min, cpus, gpus, mem):
    """Run EXPERIMENT over a grid; compatible points are batched into one job."""
    import time
    import tomllib

    from . import api
    from .compare import format_rows, rows_of
    from .sweep import Sweep, parse_axis, parse_values, plan

    try:
        executor = executor or ("ray" if (use_ray or address) else "inprocess")
        slurm_table = None
        if resume:
            sw = Sweep(resume)
            sw.index()
        else:
            axes = [parse_axis(g) for g in grids]
            sets = list(sets)
            if sweep_file:
                spec = tomllib.loads(Path(sweep_file).read_text())
                unknown = set(spec) - {"experiment", "seeds", "set", "grid", "slurm"}
                if unknown:
                    raise SgdlabError(f"sweep file: unknown key {min(unknown)!r}; allowed: experiment, grid, "
                                      f"seeds, set, slurm")
                slurm_table = spec.get("slurm")
                experiment = experiment or spec.get("experiment")
                seeds = seeds or spec.get("seeds")
                sets = list(spec.get("set", [])) + sets
                for k, v in spec.get("grid", {}).items():
                    axes.append((k, parse_values(v) if isinstance(v, str) else list(v)))
            if not experiment:
                raise click.UsageError("name an experiment (or give --file with experiment = ...)")
            if not axes:
                raise click.UsageError("give at least one --grid KEY=V1,V2,...")
            if seeds:
                sets.append(f"seeds={seeds}")
            base = api.load_experiment(experiment)
            if dry_run:
                points, jobs = plan(base, axes, tuple(sets))
                for j in jobs:
                    members = [p.label for p in points if p.job == j.id]
                    click.echo(f"job {j.id}: {len(j.config.arms)} arms x {j.config.seeds} seeds, "
                               f"points: {'; '.join(members)}")
                click.echo(f"{len(points)} points in {len(jobs)} batched job(s)")
                return
            out = out or Path("sweeps") / f"{base.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            sw = Sweep.create(out, base, axes, sets, experiment=str(experiment))
        slurm = None
        if executor == "slurm":
            from .slurm import resolve_options

            slurm = resolve_options(sw.path, {"partition": partition, "time": time_min, "cpus": cpus, "gpus": gpus,
                                              "mem": mem}, slurm_table)
        sw.execute(executor, workers=workers, address=address, slurm=slurm)
        click.echo(format_rows(rows_of(sw.path)))
        from .plots.sweep import plot_sweep

        for p in plot_sweep(sw.path):
            click.echo(str(p))
        failed = [j for j in sw.index()["jobs"] if j["status"] == "failed"]
        click.echo(f"sweep directory: {sw.path}" + (f" ({len(failed)} job(s) failed; see index.json)" if failed else ""))
    except KeyboardInterrupt:
        sys.exit(130)
    except SgdlabError as e:
        _fail(e)


@main.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--to", "backend", type=click.Choice(["tensorboard", "wandb", "mlflow"]), required=True,
              help="writes RUN_DIR/<backend>/ (wandb offline, mlflow local files; the package must be installed)")
def export_cmd(run_dir, backend):
    """Replay a run directory's metrics into TensorBoard, W&B (offline) or MLflow (local)."""
    from .loggers import export

    try:
        click.echo(str(export(run_dir, backend)))
    except SgdlabError as e:
        _fail(e)


@main.command("compare")
@click.argument("dirs", nargs=-1, required=True, type=click.Path())
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="export the rows (.csv or .parquet)")
@click.option("--metric", "-m", "metrics", multiple=True, help="columns (default: losses and l0)")
def compare_cmd(dirs, csv_out, metrics):
    """One table across run and sweep directories (medians and IQR over seeds)."""
    from .compare import export, format_rows, rows_of

    try:
        rows = [r for d in dirs for r in rows_of(d)]
        click.echo(format_rows(rows, tuple(metrics) or ("train_loss", "test_loss", "l0", "l0_robust")))
        if csv_out:
            click.echo(f"wrote {export(rows, csv_out)}")
    except SgdlabError as e:
        _fail(e)


@main.command("window")
@click.argument("experiment")
@click.option("--set", "-s", "sets", multiple=True, metavar="KEY=VALUE")
@click.option("--arm", type=int, default=0, show_default=True, help="whose optimizer is used (index)")
@click.option("--lo", type=float, required=True, help="smallest step size of the grid")
@click.option("--hi", type=float, required=True, help="largest step size of the grid")
@click.option("--points", type=int, default=12, show_default=True, help="log-spaced grid points")
@click.option("--bisect", type=int, default=3, show_default=True, help="bisection rounds per edge")
@click.option("--tol", type=float, default=1e-3, show_default=True,
              help="converged if the late loss level < tol x initial loss")
@click.option("--out", "-o", type=click.Path(file_okay=False), help="where window.json/.png go")
def window_cmd(experiment, sets, arm, lo, hi, points, bisect, tol, out):
    """Find per seed the step sizes where the loss stabilizes (neither converges nor diverges)."""
    import dataclasses

    from . import api
    from .window import find_window, format_window, save_window

    try:
        cfg = api.override(api.load_experiment(experiment), list(sets))
        if not 0 <= arm < len(cfg.arms):
            raise SgdlabError(f"--arm {arm} out of range: the experiment has arms 0..{len(cfg.arms) - 1}")
        cfg = dataclasses.replace(cfg, arms=(cfg.arms[arm],))
        res = find_window(cfg, lo, hi, points=points, bisect=bisect, tol=tol)
        click.echo(format_window(res))
        out = out or Path("runs") / f"{cfg.name}-window"
        for p in save_window(res, out, title=f"{cfg.name}: stabilization window of {cfg.arms[0].optimizer.kind}"):
            click.echo(str(p))
    except SgdlabError as e:
        _fail(e)


if __name__ == "__main__":  # pragma: no cover
    main()
