"""``python -m sgdlab.frontends.docs_numbers [NAME ...] [--all] [--list] [--force] [--render-only] [--check]``."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Two busy cores thrash with OpenMP busy-waiting and default threading (measured 2-6x slower).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def main(argv: list[str] | None = None) -> int:
    from sgdlab.core.errors import SgdlabError
    from sgdlab.frontends.docs_numbers import SPECS
    from sgdlab.frontends.docs_numbers.core import (
        COMMAND,
        ROOT,
        check_pages,
        generate,
        load_record,
        render_record,
        write_pages,
        write_rendered,
    )

    p = argparse.ArgumentParser(prog=COMMAND, description="Regenerate the numbers quoted in README.md and docs/.")
    p.add_argument("names", nargs="*", metavar="NAME", help="specs to generate (see --list)")
    p.add_argument("--all", action="store_true", help="every spec, cheapest first")
    p.add_argument("--list", action="store_true", help="list the specs and exit")
    p.add_argument("--force", action="store_true", help="rerun even when docs/numbers/NAME.json exists")
    p.add_argument("--render-only", action="store_true",
                   help="never run: re-render the blocks of NAME (or all) from the saved outputs")
    p.add_argument("--check", action="store_true", help="exit 1 if a page disagrees with the saved outputs")
    p.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    p.add_argument("--scratch", type=Path, default=None, help="run directories (default: ROOT/runs/docs-numbers)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--workers", type=int, default=1,
                   help="processes each run is spread over (the same numbers as one process; default 1)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    specs = sorted(SPECS, key=lambda n: SPECS.get(n).cost)
    try:
        if a.list:
            for n in specs:
                s = SPECS.get(n)
                have = "saved" if (a.root / "docs" / "numbers" / f"{n}.json").is_file() else "not generated"
                print(f"{n:28s} ~{s.cost:5.1f} min  {have:13s}  {s.about}")
            return 0
        if a.check:
            problems = check_pages(a.root)
            print("\n".join(problems) if problems else "pages in sync with docs/numbers/")
            return 1 if problems else 0
        names = specs if (a.all or (a.render_only and not a.names)) else a.names
        if not names:
            p.error("give NAMEs, --all, --list, --render-only or --check")
        for n in names:
            SPECS.get(n)  # unknown names fail before anything runs
        t0 = time.monotonic()
        for i, n in enumerate(names, 1):
            print(f"[docs-numbers] [{i}/{len(names)}] {n} (~{SPECS.get(n).cost:.1f} min)", file=sys.stderr, flush=True)
            if a.render_only:
                if not (a.root / "docs" / "numbers" / f"{n}.json").is_file():
                    print(f"[docs-numbers] {n}: no saved output yet, skipped (run `{COMMAND} {n}`)", file=sys.stderr)
                    continue
                record = load_record(a.root, n)
                blocks = write_rendered(a.root, record)
            else:
                record = generate(n, a.root, a.scratch, force=a.force, progress=not a.no_progress,
                                  workers=max(1, a.workers))
                blocks = render_record(record)
            missing = write_pages(a.root, blocks)
            for b in missing:
                print(f"[docs-numbers] warning: no page has markers for block {b!r} "
                      f"(add <!-- numbers:{b} --> ... <!-- /numbers:{b} -->)", file=sys.stderr)
        print(f"[docs-numbers] {len(names)} spec(s) in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        problems = check_pages(a.root)
        if problems:
            print("[docs-numbers] pages not yet in sync:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 0
    except SgdlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
