"""The machinery behind ``python -m sgdlab.frontends.docs_numbers``: registry, running, provenance, pages.

A *numbers spec* (:class:`Spec`) names one set of experiments and how to print them. Running it
(``produce(ctx)``) trains through :func:`sgdlab.run` and returns JSON-able data; ``render(data)``
turns that data into markdown blocks. The data is saved with its provenance in
``docs/numbers/NAME.json`` and the blocks are written into README.md / docs/*.md between markers::

    <!-- numbers:BLOCK -->

    ...generated markdown...

    <!-- /numbers:BLOCK -->

Rendering is a pure function of the saved JSON, so a test can check that every marked block in
the pages equals the rendering of the last generated output without rerunning anything.

Statistics and table formatting: :mod:`.stats`.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sgdlab.core.errors import ConfigError, SgdlabError
from sgdlab.core.registry import Registry
from sgdlab.metrics.registry import METRIC_SPECS

# Repository root of a source checkout (sgdlab/frontends/docs_numbers/core.py -> root).
ROOT = Path(__file__).resolve().parents[3]
NUMBERS_DIR = Path("docs") / "numbers"  # saved outputs, relative to the root
SCRATCH_DIR = Path("runs") / "docs-numbers"  # run directories (git-ignored), for resuming
COMMAND = "python -m sgdlab.frontends.docs_numbers"

# A marker is a line of its own (a marker quoted inside prose or code is not one).
MARKER = re.compile(r"^<!-- numbers:(?P<id>[\w.-]+) -->\n(?P<body>.*?)^<!-- /numbers:(?P=id) -->$",
                    re.DOTALL | re.MULTILINE)
OPEN_MARKER = re.compile(r"^<!-- numbers:([\w.-]+) -->$", re.MULTILINE)
CLOSE_MARKER = re.compile(r"^<!-- /numbers:([\w.-]+) -->$", re.MULTILINE)


class NumbersError(SgdlabError):
    """Pages and generated numbers are out of sync, or a page's markers are malformed."""


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class Spec:
    """One generated set of numbers.

    name: NAME on the command line and of ``docs/numbers/NAME.json``; blocks: the marker ids it
    renders; about: one line for ``--list``; produce(ctx) -> data (JSON-able dict, must hold
    ``"seeds"``: a short text such as ``"32 seeds (0-31)"``); render(data) -> {block: markdown};
    cost: minutes it took on the shared 2-core machine (for ``--list`` and the order of ``--all``).
    """

    name: str
    blocks: tuple[str, ...]
    about: str
    produce: Callable[[Context], dict]
    render: Callable[[dict], dict[str, str]]
    cost: float = 1.0


# Modules whose import registers specs, named by each study (sgdlab.register_docs_numbers): imported
# only when specs are listed or run, so registering costs a study nothing at import.
SPEC_MODULES: list[str] = []


def load_specs() -> None:
    """Import every spec module that the installed studies and plugins named (once each)."""
    import importlib

    from sgdlab.core.plugins import load_entry_points

    load_entry_points()
    for module in SPEC_MODULES:
        importlib.import_module(module)


class _SpecRegistry(Registry):
    """The specs, complete on first read: listing or looking one up loads the spec modules."""

    def get(self, name):
        load_specs()
        return super().get(name)

    def names(self) -> list[str]:
        load_specs()
        return super().names()

    def __contains__(self, name: object) -> bool:
        load_specs()
        return super().__contains__(name)


SPECS: Registry[Spec] = _SpecRegistry("docs numbers")


def register(spec: Spec) -> Spec:
    SPECS.add(spec.name, spec)
    return spec


def block_owner() -> dict[str, str]:
    """block id -> NAME of the spec rendering it (ids are unique across specs)."""
    out: dict[str, str] = {}
    for name in SPECS:
        for b in SPECS.get(name).blocks:
            if b in out:
                raise ValueError(f"block {b!r} rendered by both {out[b]!r} and {name!r}")
            out[b] = name
    return out


# --------------------------------------------------------------------------- running

class Context:
    """What a spec's ``produce`` gets: runs experiments resumably and copies figures."""

    def __init__(self, name: str, root: Path, scratch: Path, progress: bool = True, workers: int = 1):
        self.name, self.root, self.progress = name, root, progress
        self.workers = workers  # processes each run is sharded over (the same bytes as one process)
        self.scratch = scratch / name
        self.figures: list[str] = []
        self.earlier_seconds = 0.0  # training time spent before this call (reused / resumed runs)

    def log(self, msg: str) -> None:
        print(f"[docs-numbers] {self.name}: {msg}", file=sys.stderr, flush=True)

    def run(self, key: str, cfg):
        """Train ``cfg`` into ``<scratch>/NAME/key`` and return its RunResult. A finished run
        with the same config is reused and an interrupted one resumed, so a killed
        ``--all`` continues where it stopped."""
        from sgdlab.core.config import to_dict
        from sgdlab.workflows import api

        out = self.scratch / key
        clock = self.scratch / f"{key}.timing.json"  # training time across attempts (beside the run dir)
        n_runs = f"{len(cfg.arms)} arms x {cfg.seeds} seeds x {cfg.steps} steps"
        if (out / "config.toml").exists():
            try:
                same = _trained(to_dict(api.load_experiment(out / "config.toml"))) == _trained(to_dict(cfg))
            except SgdlabError:
                same = False
            t = _read_json(clock)
            if same and (out / "summary.json").exists():
                self.log(f"{key}: reusing the finished run in {out}")
                self.earlier_seconds += t.get("elapsed", 0.0)
                return api.load_run(out)
            if same and (out / "checkpoint.pt").exists():
                before = t.get("elapsed", 0.0)
                if t.get("attempt_started"):  # the killed attempt counted until its last checkpoint
                    before += max(0.0, (out / "checkpoint.pt").stat().st_mtime - t["attempt_started"])
                self.log(f"{key}: resuming {out} ({n_runs})")
                try:
                    res = self._timed(key, clock, before, lambda: api.resume(out, progress=self.progress, quiet=True,
                                                                                  workers=self.workers))
                    self.earlier_seconds += before
                    return res
                except SgdlabError as e:  # e.g. a checkpoint torn by a kill: start this run again
                    self.log(f"{key}: cannot resume ({e}); starting it again")
        self.log(f"{key}: running {n_runs}")
        return self._timed(key, clock, 0.0, lambda: api.run(cfg, out, progress=self.progress, quiet=True,
                                                             overwrite=True, workers=self.workers))

    def _timed(self, key: str, clock: Path, before: float, fn):
        start = time.time()
        _atomic_write(clock, json.dumps({"elapsed": before, "attempt_started": start}))
        res = fn()
        elapsed = before + time.time() - start
        _atomic_write(clock, json.dumps({"elapsed": elapsed, "attempt_started": None}))
        self.log(f"{key}: done ({elapsed:.0f} s of training in all)")
        return res

    def figure(self, src: Path, name: str) -> None:
        """Copy a drawn figure to docs/figures/NAME."""
        dst = self.root / "docs" / "figures" / name
        shutil.copyfile(src, dst)
        self.figures.append(str(dst.relative_to(self.root)))
        self.log(f"figure {dst.relative_to(self.root)}")


# Config keys that change what is printed beside a run, not what is trained: a finished run that
# differs only in them is reused.
PRESENTATION_KEYS = ("description", "references", "sweep_grid")


def _trained(table: dict) -> dict:
    return {k: v for k, v in table.items() if k not in PRESENTATION_KEYS}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def versions() -> dict:
    import numba
    import torch

    from sgdlab._version import version
    from sgdlab.store.files import git_revision

    return {"sgdlab": version(), "git": git_revision(), "python": sys.version.split()[0],
            "torch": torch.__version__, "numpy": np.__version__, "numba": numba.__version__}


def provenance(record: dict) -> str:
    """The line under every generated block: command, seeds, versions, date, wall time."""
    v = record["versions"]
    git = f", git {v['git'][:10]}{'-dirty' if str(v['git']).endswith('-dirty') else ''}" if v.get("git") else ""
    return (f"<sub>Generated by `{record['command']}` on {record['generated']} ({record['data']['seeds']}; "
            f"sgdlab {v['sgdlab']}{git}; torch {v['torch']}, numpy {v['numpy']}, numba {v['numba']}; "
            f"{record['wall_seconds']:.0f} s on 2 shared cores).</sub>")


def render_record(record: dict) -> dict[str, str]:
    """All blocks of a saved record, each followed by its provenance line."""
    spec = SPECS.get(record["name"])
    blocks = spec.render(record["data"])
    missing = set(spec.blocks) ^ set(blocks)
    if missing:
        raise NumbersError(f"{spec.name}: render returned blocks {sorted(blocks)}, declared {sorted(spec.blocks)}")
    line = provenance(record)
    return {b: f"{blocks[b].rstrip()}\n\n{line}" for b in spec.blocks}


def record_path(root: Path, name: str) -> Path:
    return root / NUMBERS_DIR / f"{name}.json"


def load_record(root: Path, name: str) -> dict:
    p = record_path(root, name)
    if not p.is_file():
        raise NumbersError(f"no generated output {p.relative_to(root)}; run `{COMMAND} {name}`")
    try:
        return _current_names(json.loads(p.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise NumbersError(f"{p.relative_to(root)} is not readable JSON ({e}); rerun `{COMMAND} {name} --force`") from None


def _current_names(x):
    """A saved record with the deprecated metric names an earlier release wrote as keys renamed
    (sgdlab.metrics.registry): it renders like one generated now."""
    if isinstance(x, dict):
        return METRIC_SPECS.canonical_keys({k: _current_names(v) for k, v in x.items()})
    if isinstance(x, list):
        return [_current_names(v) for v in x]
    return x


def _finite(x):
    """NaN / inf -> None (standard JSON), numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def generate(name: str, root: Path = ROOT, scratch: Path | None = None, force: bool = False,
             progress: bool = True, workers: int = 1) -> dict:
    """Run spec ``name`` (unless its output exists and not ``force``), save and return the record."""
    spec = SPECS.get(name)
    path = record_path(root, name)
    if path.is_file() and not force:
        print(f"[docs-numbers] {name}: output exists ({path.relative_to(root)}), not rerun (--force reruns)",
              file=sys.stderr)
        return load_record(root, name)
    scratch = scratch if scratch is not None else root / SCRATCH_DIR
    ctx = Context(name, root, scratch, progress, workers)
    if force and ctx.scratch.exists():
        shutil.rmtree(ctx.scratch)
    t0 = time.monotonic()
    data = spec.produce(ctx)
    if "seeds" not in data:
        raise ConfigError(f"{name}: produce() must return data with a 'seeds' text")
    record = {"name": name, "command": f"{COMMAND} {name}",
              "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d"),
              "wall_seconds": time.monotonic() - t0 + ctx.earlier_seconds, "versions": versions(),
              "figures": ctx.figures, "data": data}
    record = json.loads(json.dumps(_finite(record), allow_nan=False))  # exactly what is saved
    render_record(record)  # a render error must not leave an output that looks finished
    _atomic_write(path, json.dumps(record, indent=1, allow_nan=False) + "\n")
    write_rendered(root, record)
    return record


def write_rendered(root: Path, record: dict) -> dict[str, str]:
    """docs/numbers/NAME.md: every block of the record, as written into the pages."""
    blocks = render_record(record)
    text = "".join(f"<!-- numbers:{b} -->\n\n{body}\n\n<!-- /numbers:{b} -->\n\n" for b, body in blocks.items())
    _atomic_write(root / NUMBERS_DIR / f"{record['name']}.md", text)
    return blocks


# --------------------------------------------------------------------------- pages

def pages(root: Path = ROOT) -> list[Path]:
    """README.md and docs/*.md: the pages whose marked blocks are generated."""
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def read_blocks(text: str, where: str = "page") -> dict[str, str]:
    """block id -> body (without the blank lines around it). Malformed markers raise."""
    opens, closes = OPEN_MARKER.findall(text), CLOSE_MARKER.findall(text)
    found = {m.group("id"): m.group("body").strip("\n") for m in MARKER.finditer(text)}
    if sorted(opens) != sorted(closes) or len(found) != len(opens):
        raise NumbersError(f"{where}: unbalanced or duplicated numbers markers (open {opens}, close {closes})")
    return found


def replace_block(text: str, block: str, body: str) -> str:
    new = f"<!-- numbers:{block} -->\n\n{body}\n\n<!-- /numbers:{block} -->"
    pat = re.compile(rf"^<!-- numbers:{re.escape(block)} -->\n.*?^<!-- /numbers:{re.escape(block)} -->$",
                     re.DOTALL | re.MULTILINE)
    return pat.sub(lambda _m: new, text, count=1)


def write_pages(root: Path, blocks: dict[str, str]) -> list[str]:
    """Write each block into the page holding its markers; returns the blocks not found."""
    left = dict(blocks)
    for page in pages(root):
        text = page.read_text()
        present = read_blocks(text, str(page.relative_to(root)))
        new = text
        for b in [b for b in left if b in present]:
            new = replace_block(new, b, left.pop(b))
        if new != text:
            _atomic_write(page, new)
    return sorted(left)


def check_pages(root: Path = ROOT) -> list[str]:
    """Problems that make the pages disagree with the saved outputs (empty list: in sync)."""
    owner = block_owner()
    problems, seen, rendered = [], set(), {}
    for page in pages(root):
        rel = str(page.relative_to(root))
        try:
            blocks = read_blocks(page.read_text(), rel)
        except NumbersError as e:
            problems.append(str(e))
            continue
        for b, body in blocks.items():
            if b not in owner:
                problems.append(f"{rel}: block {b!r} has no generating command (registered: "
                                f"{', '.join(sorted(owner))})")
                continue
            if b in seen:
                problems.append(f"{rel}: block {b!r} appears twice")
            seen.add(b)
            name = owner[b]
            if name not in rendered:
                try:
                    rendered[name] = render_record(load_record(root, name))
                except NumbersError as e:
                    problems.append(str(e))
                    rendered[name] = {}
            want = rendered[name].get(b)
            if want is not None and want != body:
                problems.append(f"{rel}: block {b!r} differs from the rendering of {NUMBERS_DIR}/{name}.json; "
                                f"run `{COMMAND} {name} --render-only`")
    for b in sorted(set(owner) - seen):
        problems.append(f"block {b!r} (from `{COMMAND} {owner[b]}`) is in no page")
    return problems
