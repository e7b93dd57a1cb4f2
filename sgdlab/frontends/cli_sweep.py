"""``sgdlab sweep``: an experiment over a grid, its compatible points batched into jobs, the jobs
run by an executor (in this process, a process pool, Ray or SLURM)."""

from __future__ import annotations

from pathlib import Path

import click

from sgdlab.core.errors import ConfigError
from sgdlab.core.exit_codes import FAILED_WORK
from sgdlab.frontends.cli_common import (
    failed_work,
    given,
    imports_option,
    load,
    naming_file,
    trust_option,
)


@click.command("sweep")
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
@click.option("--workers", type=click.IntRange(min=1),
              help="processes (in-process: each job's runs spread over them, as `sgdlab run --workers`; pool: jobs "
                   "side by side, with fewer jobs than workers each job's runs spread over the rest) / CPUs of a "
                   "local Ray cluster (--ray)  [default: one per physical core, within the CPU quota]")
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
@imports_option
@trust_option
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
    if executor == "slurm" and given("workers"):
        click.echo("warning: --workers is for the in-process, pool and ray executors; slurm tasks take --cpus each",
                   err=True)
    elif address and given("workers"):
        click.echo(f"warning: --workers sets the CPUs of a local Ray cluster (--ray); the cluster at {address} shares "
                   "out its own", err=True)
    slurm_table = None
    if resume:
        if experiment or grids or sets or sweep_file or imports:
            raise click.UsageError("--resume takes only the sweep directory: the plan is read from it")
        sw = Sweep(resume)
        sw.index()
    else:
        axes = [parse_axis(g) for g in grids]
        sets = list(sets)
        with naming_file(sweep_file, "sweep file"):  # every error about what the file sets names it
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
            base = load(experiment, imports)
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
                if executor in ("inprocess", "pool", "ray"):
                    click.echo(_sharing(executor, workers, len(jobs), address))
                click.echo(f"{len(points)} points in {len(jobs)} batched job(s)")
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
        failed_work(f"{len(failed)} of {len(index['jobs'])} job(s) of the sweep (exit code {FAILED_WORK})",
                     [_job_line(index, j) for j in failed])


def _job_line(index: dict, job: dict) -> str:
    """``job N (points: ...): error`` of a failed or unfinished sweep job."""
    labels = [", ".join(f"{k}={v}" for k, v in p["values"].items()) for p in index["points"] if p["job"] == job["id"]]
    return f"job {job['id']} ({job['dir']}; points: {'; '.join(labels)}): {job.get('error') or job['status']}"


def _sharing(executor: str, workers: int | None, jobs: int, address: str | None) -> str:
    """How the executor will use the machine's cores (``workers`` None: the default), or share the
    Ray cluster's CPUs, among the jobs."""
    from sgdlab.workflows.cores import machine_workers
    from sgdlab.workflows.executors import shares

    if workers is None:
        workers, why = machine_workers()
        why = f" ({why})"
    else:
        why = ""
    if executor == "inprocess":
        return (f"in process: 1 job at a time, each job's runs spread over up to {workers} process(es)"
                + (f"{why}, as `sgdlab run` chooses (a deep net's job: one process)" if why else
                   f", as `sgdlab run --workers {workers}`"))
    if executor == "ray" and address:
        return (f"Ray cluster at {address}: its CPUs are shared out among the {jobs} job(s) when the sweep starts "
                "(with fewer jobs than CPUs each job's task requests several, up to the largest node's)")
    per = shares(workers, jobs)
    if executor == "pool":
        return (f"pool of {workers} process(es){why}: {len(per)} job(s) at a time"
                + (f", each job's runs spread over up to {max(per)} processes (a deep net's job: that many "
                   "threads in one)" if max(per) > 1 else ""))
    return (f"local Ray cluster of {workers} CPU(s){why}: {len(per)} job(s) at a time"
            + (f", each job's task given up to {max(per)} CPUs (a toy job's runs spread over that many processes, "
               "a deep net's on that many threads)" if max(per) > 1 else ""))
