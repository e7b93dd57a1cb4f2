"""Tables across runs and sweeps: medians over seeds, spread, divergences; CSV/parquet export."""

from __future__ import annotations

import csv
from pathlib import Path

from sgdlab.core.errors import CheckpointError
from sgdlab.spec.references import matching
from sgdlab.store.runs import RunDir
from sgdlab.store.sweeps import INDEX, SweepDir

STATS = ("median", "q25", "q75")
PUBLISHED = "published"  # row key suffix of a reference value (sgdlab.spec.references)


def _references(rd: RunDir) -> dict[str, dict]:
    """The published numbers that the run's recorded config matches (none when unreadable)."""
    try:
        return matching(rd.config_table())
    except CheckpointError:
        return {}


def _arm_rows(summary: dict, source: str, extra: dict | None = None, arm_map: dict | None = None,
              labels: dict | None = None, refs: dict | None = None) -> list[dict]:
    """One row per arm; ``arm_map``: shown arm -> arm in the summary; ``labels``: the arm's label
    at this grid point (it follows the point's values) for the shown name; ``refs``: published
    numbers (``metric -> {"value", ...}``) shown beside the arm's own."""
    rows = []
    names = arm_map or {a: a for a in summary["arms"]}
    labels = labels or {}
    for base_name, name in names.items():
        a = summary["arms"][name]
        row = {"source": source, **(extra or {}), "arm": labels.get(base_name, base_name), "schedule": a["schedule"],
               "n_runs": a["n_runs"], "n_diverged": a["n_diverged"]}
        for metric, s in a["final"].items():
            for st in STATS:
                row[f"{metric}_{st}"] = s[st]
        for metric, ref in (refs or {}).items():
            row[f"{metric}_{PUBLISHED}"] = ref["value"]
        rows.append(row)
    return rows


def rows_of(path: str | Path) -> list[dict]:
    """One row per (grid point, arm) of a sweep, or per arm of a run directory."""
    path = Path(path)
    if (path / INDEX).exists():
        sw = SweepDir(path)
        index = sw.index()
        jobs = {j["id"]: j for j in index["jobs"]}
        rows = []
        for p in sw.points():
            job = jobs[p.job]
            rd = RunDir(path / job["dir"])
            s = rd.summary() if rd.path.exists() else None
            if s is None:
                rows.append({"source": path.name, **p.values, "arm": ", ".join(p.arms), "status": job["status"],
                             "error": job.get("error", "")})
                continue
            rows += _arm_rows(s, path.name, p.values, p.arms, p.labels, _references(rd))
        return rows
    rd = RunDir(path)
    s = rd.summary()
    if s is None:
        rd.runs()  # clear error when it is not a run directory at all
        raise CheckpointError(f"{path} has no summary.json yet; resume it with `sgdlab run --resume {path}`")
    return _arm_rows(s, path.name, refs=_references(rd))


def _fmt(x) -> str:
    if x is None or x == "":
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"
    return str(x)


# Metric columns of a table when none are named: the first summary-table metrics present.
DEFAULT_COLUMNS = 4


def format_rows(rows: list[dict], metrics=None) -> str:
    """Text table: identifying columns, diverged count, median [q25, q75] per metric (``metrics``
    None: the first DEFAULT_COLUMNS of the registry's summary-table metrics that the rows hold)."""
    if not rows:
        return "(no rows)"
    skip = {"schedule", "n_runs", "n_diverged", "status", "error"}
    suffixes = (*STATS, PUBLISHED)
    ident = []
    for r in rows:
        ident += [k for k in r if k not in ident and not any(k.endswith(f"_{s}") for s in suffixes) and k not in skip]
    published = [k.removesuffix(f"_{PUBLISHED}") for r in rows for k in r if k.endswith(f"_{PUBLISHED}")]
    if metrics is None:
        from sgdlab.metrics.registry import METRIC_SPECS

        metrics = [m for m in METRIC_SPECS.table_names() if any(f"{m}_median" in r for r in rows)][:DEFAULT_COLUMNS]
        metrics += [m for m in dict.fromkeys(published) if m not in metrics]  # a published number is always shown
    present = [m for m in metrics if any(f"{m}_median" in r for r in rows)]
    head = ident + ["diverged"]
    for m in present:
        head += [m] + [f"{m} ({PUBLISHED})"] * (m in published)
    table = []
    for r in rows:
        cells = [_fmt(r.get(k, "")) for k in ident]
        cells.append(f"{r['n_diverged']}/{r['n_runs']}" if "n_runs" in r else r.get("status", "?"))
        for m in present:
            med = r.get(f"{m}_median")
            cells.append("-" if med is None else f"{_fmt(med)} [{_fmt(r[f'{m}_q25'])}, {_fmt(r[f'{m}_q75'])}]")
            if m in published:
                cells.append(_fmt(r.get(f"{m}_{PUBLISHED}")))
        table.append(cells)
    w = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    line = lambda c: "  ".join(str(x).ljust(n) for x, n in zip(c, w))
    return "\n".join([line(head), line(["-" * n for n in w])] + [line(c) for c in table])


def export(rows: list[dict], out: str | Path) -> Path:
    """CSV (any name) or parquet (``.parquet``, needs pyarrow)."""
    out = Path(out)
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    if out.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CheckpointError("parquet export needs pyarrow: pip install pyarrow (or write .csv)") from None
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), out)
        return out
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in keys})
    return out
