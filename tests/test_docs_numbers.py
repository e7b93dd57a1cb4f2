"""Every number block in README.md and docs/*.md comes from a registered command and equals the
rendering of its last generated output (docs/numbers/NAME.json). Fast: nothing is rerun."""

import json

import numpy as np
import pytest

from sgdlab.core.errors import ConfigError
from sgdlab.frontends.docs_numbers import SPECS, check_pages, render_record
from sgdlab.frontends.docs_numbers.core import (
    ROOT,
    NumbersError,
    block_owner,
    load_record,
    pages,
    read_blocks,
    replace_block,
)
from sgdlab.frontends.docs_numbers.stats import (
    Stat,
    add_late_levels,
    arm_finals,
    cell,
    compare,
    num,
)
from sgdlab.studies.related.numbers import exact_prefix

pytestmark = pytest.mark.study("diag_net", "relu_nets", "related", "eos", "deep_nets", "mnist1d")


def test_pages_equal_the_rendering_of_the_saved_outputs():
    problems = check_pages(ROOT)
    assert not problems, "\n".join(problems)


def test_every_marked_block_has_a_generating_command_and_a_saved_output():
    owner = block_owner()
    found = {}
    for page in pages(ROOT):
        for b in read_blocks(page.read_text(), page.name):
            assert b in owner, (page.name, b)
            found[b] = page.name
    assert set(found) == set(owner), set(owner) ^ set(found)
    for name in SPECS:
        rec = load_record(ROOT, name)
        assert rec["name"] == name and rec["command"].endswith(f"docs_numbers {name}")
        assert {"sgdlab", "torch", "numpy", "numba"} <= set(rec["versions"]) and rec["generated"]
        # docs/numbers/NAME.md is the rendering as written into the pages
        md = (ROOT / "docs" / "numbers" / f"{name}.md").read_text()
        for b, body in render_record(rec).items():
            assert f"<!-- numbers:{b} -->\n\n{body}\n\n<!-- /numbers:{b} -->" in md


def test_block_markers_parse_and_replace():
    text = "a\n<!-- numbers:x -->\n\nold\n\n<!-- /numbers:x -->\nb\n"
    assert read_blocks(text) == {"x": "old"}
    new = replace_block(text, "x", "| new |")
    assert read_blocks(new) == {"x": "| new |"} and new.startswith("a\n") and new.endswith("\nb\n")
    assert read_blocks("markers quoted in prose, `<!-- numbers:x -->` ... `<!-- /numbers:x -->`, are not blocks") == {}
    with pytest.raises(NumbersError):
        read_blocks("<!-- numbers:x -->\nno close\n")
    with pytest.raises(NumbersError):
        read_blocks(text + text)  # the same block twice


def test_stats_and_significance():
    a = Stat.of([1.0, 2.0, 3.0, None, 4.0])  # None = diverged
    assert (a.n, a.alive, a.diverged) == (5, 4, 1)
    assert a.median == pytest.approx(np.median([1, 2, 3, 4]))
    assert (a.q25, a.q75) == (pytest.approx(np.percentile([1, 2, 3, 4], 25)), pytest.approx(np.percentile([1, 2, 3, 4], 75)))
    b = Stat.of([10.0, 11.0, 12.0])
    assert compare(a, b) == "lower" and compare(b, a) == "higher"
    assert compare(a, Stat.of([3.0, 3.5, 9.0])).startswith("not significant")
    assert cell(Stat.of([None, None])) == "–" and cell(Stat.of([0.1234])) == "0.123"
    assert num(1.58e-4) == "1.58e-4" and num(160.5) == "160.5" and num(0.0937) == "0.0937"


def test_late_levels_are_medians_over_the_second_half_of_alive_runs():
    """add_late_levels against a per-run loop: median of the finite values at steps >= T/2;
    None for a diverged run (even one finite until late) and for a run with no finite value."""
    from types import SimpleNamespace

    steps = np.arange(0, 101, 10)
    rng = np.random.default_rng(0)
    loss = rng.random((len(steps), 4))
    loss[7, 0] = np.inf  # a transient non-finite value of an alive run is skipped
    loss[6:, 1] = np.nan  # diverged at step 60
    loss[5:, 3] = np.nan  # alive per the summary, but no finite value in T/2..T
    runs = [{"index": i, "arm": "a" if i < 2 else "b", "seed": i % 2} for i in range(4)]
    res = SimpleNamespace(
        steps=steps, metrics={"train_loss": loss}, runs=runs,
        summary={"runs": [{**r, "diverged_at": 60 if r["index"] == 1 else None} for r in runs]},
        config=SimpleNamespace(arms=[SimpleNamespace(name="a"), SimpleNamespace(name="b")]),
        arm=lambda name: np.array([r["index"] for r in runs if r["arm"] == name]))
    got = add_late_levels(res, arm_finals(res, ["train_loss"]))
    late = steps >= 50
    want = [float(np.median([v for v in loss[late, 0] if np.isfinite(v)])), None,
            float(np.median(loss[late, 2])), None]
    assert got["a"]["late_level"] + got["b"]["late_level"] == want


def test_unknown_name_lists_the_registered_ones():
    with pytest.raises(ConfigError, match="diag-net-main"):
        SPECS.get("no-such-numbers")


def test_grid_exactness_helper():
    assert exact_prefix(np.array([0, 1, 2, 3, 5, 6, 9])) == 3
    assert exact_prefix(np.arange(10)) == 9


def test_records_are_plain_json():
    for name in SPECS:
        text = (ROOT / "docs" / "numbers" / f"{name}.json").read_text()
        json.loads(text)  # standard JSON: no NaN / Infinity
        assert "NaN" not in text and "Infinity" not in text


def test_generate_saves_the_record_fills_the_page_and_is_resumable(tmp_path, monkeypatch):
    """End to end on a tiny spec in a temporary root: the record and the page block are written,
    a finished run is reused, and an existing output is not rerun without force."""
    import sgdlab
    from sgdlab.frontends.docs_numbers.core import Spec, generate, write_pages

    cfg = sgdlab.override(sgdlab.load_experiment("linear2-large-step"),
                          ["steps=20", "seeds=2", "snapshots=0", "extra_figures=[]", "eval.points=3"])
    calls = []

    def produce(ctx):
        calls.append(1)
        first = ctx.run("tiny", cfg).final("train_loss")
        again = ctx.run("tiny", cfg).final("train_loss")  # reused, not retrained
        np.testing.assert_array_equal(first, again)
        return {"seeds": "2 seeds (0-1)", "loss": first.tolist()}

    spec = Spec("tiny-test", ("tiny",), "test spec", produce, lambda d: {"tiny": f"loss {d['loss'][0]:.3g}"})
    monkeypatch.setitem(SPECS._items, "tiny-test", spec)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("# x\n\n<!-- numbers:tiny -->\n<!-- /numbers:tiny -->\n")
    rec = generate("tiny-test", root=tmp_path, scratch=tmp_path / "scratch", progress=False)
    assert not write_pages(tmp_path, render_record(rec))
    body = read_blocks((tmp_path / "README.md").read_text())["tiny"]
    assert body == render_record(rec)["tiny"] and body.startswith("loss ")
    assert (tmp_path / "docs" / "numbers" / "tiny-test.json").is_file() and (tmp_path / "scratch" / "tiny-test").is_dir()
    assert generate("tiny-test", root=tmp_path, scratch=tmp_path / "scratch", progress=False) == rec and calls == [1]
