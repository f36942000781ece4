"""tools/check_book.py on small hand-made pages: each check fails on a page that breaks it and
the good page passes. Needs Chromium (/usr/bin/chromium, as `make check-book`)."""

from __future__ import annotations

import base64
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_book", ROOT / "tools" / "check_book.py")
check_book = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_book)

pytestmark = pytest.mark.skipif(
    not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()),
    reason="needs Chromium")

# a 2x2 PNG, and a different one
PNG_A = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DA"
                         "wMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==")
PNG_B = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGNgYGD4"
                         "z8DAwMDAwMDAAAAjGQEE4Ns5VAAAAABJRU5ErkJggg==")

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; }} main {{ display: block; }}
article {{ max-width: 700px; margin: 0 auto; padding: 0 10px; }}
</style></head><body><main><div style="display:none"><img src="a.png"></div>
<article>{body}</article></main></body></html>"""

GOOD = """
<div class="cell_input"><pre>import isoclip</pre></div>
<p>A finished sentence with a file that exists: <code>tools/check_book.py</code> and
notebooks/05_spectrum.md.</p>
<p>Another one, which names another project's python/download.py and dataset_coco.json.</p>
<p>A sentence that runs on into an equation,</p><div class="math">x = 1</div><p>and ends.</p>
<figure><img src="a.png" width="50"><figcaption>Spectra of
<span class="math">\\(\\Psi_i\\)</span>, first <code>k_top</code> directions.</figcaption></figure>
<figure><img src="b.png" width="50"><figcaption>Another figure.</figcaption></figure>
<div style="overflow-x:auto;max-width:100%"><table><caption>mAP (%), query set</caption>
<tr>{cells}</tr></table></div>
"""
WIDE_CELLS = "".join(f"<td>column {i} with a long value</td>" for i in range(30))

BAD = {
    "wide_table": f"<p>Text.</p><table><tr>{WIDE_CELLS}</tr></table>",
    "repeated_image": '<p>Text.</p><img src="a.png" width="50"><img src="a.png" width="50">',
    "mid_sentence": "<p>The gain over CLIP is 5</p><p>of CLIP's mAP.</p>",
    "raw_subscript": '<figure><img src="a.png" width="50"><figcaption>Spectra of Ψ_i and '
                     'σ_j/σ_1.</figcaption></figure>',
    "internal_words": "<p>As papers.md says (issue 8), see notebooks/99_missing.md.</p>",
    "no_visible_code": '<p>Text.</p><div class="cell_input">hidden</div>'.replace(
        "<div", "<details><div").replace("</div>", "</div></details>"),
    "raw_subscript_table": '<div class="isoclip-table"><p class="isoclip-table-caption">mAP '
                           'of the band (k_top, k_bottom).</p><table><tr><td>1</td></tr>'
                           '</table></div>',
}
EXPECTED = {
    "wide_table": "not in a scrolling box",
    "repeated_image": "repeats image 0",
    "mid_sentence": "ends mid-sentence",
    "raw_subscript": "subscript as plain text",
    "raw_subscript_table": "subscript as plain text",
    "internal_words": "internal reference 'issue 8'",
    "no_visible_code": "shows no code cell",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    site = tmp_path_factory.mktemp("site")
    (site / "a.png").write_bytes(PNG_A)
    (site / "b.png").write_bytes(PNG_B)
    (site / "good.html").write_text(PAGE.format(body=GOOD.format(cells=WIDE_CELLS)))
    for name, body in BAD.items():
        (site / f"{name}.html").write_text(PAGE.format(body=body))
    shots = tmp_path_factory.mktemp("shots")
    failures = check_book.check(site, ["good", *BAD], screenshots=shots,
                                chapter_docs=["good", "no_visible_code"])
    return failures, shots


def _for(failures, doc):
    return [f for f in failures if f.startswith((f"{doc}:", f"{doc} @"))]


def test_good_page_passes(results):
    failures, _ = results
    assert _for(failures, "good") == []


@pytest.mark.parametrize("doc", sorted(BAD))
def test_each_bad_page_fails_its_check(results, doc):
    failures, _ = results
    mine = _for(failures, doc)
    assert any(EXPECTED[doc] in f for f in mine), mine


def test_internal_file_names_and_wide_table_at_both_widths(results):
    failures, _ = results
    words = "\n".join(_for(failures, "internal_words"))
    assert "'papers.md'" in words and "'notebooks/99_missing.md'" in words
    wide = "\n".join(_for(failures, "wide_table"))
    assert "@1280px" in wide and "@400px" in wide


def test_screenshots_at_both_widths(results):
    _, shots = results
    for width in check_book.WIDTHS:
        for doc in ["good", *BAD]:
            assert (shots / str(width) / f"{doc}.png").stat().st_size > 0


def test_text_helpers():
    assert check_book.mid_sentence(["Done.", "Run this:", "not done", "(see above)"]) == \
        ["not done"]
    assert check_book.raw_subscripts(["σ_j/σ_1 here", "plain text", "the k_top band"]) == \
        ["σ_j/σ_1 here", "the k_top band"]
    files = {"tools/check_book.py", "notebooks/05_spectrum.md", "README.md"}
    assert check_book.unknown_file_names(
        "README.md, papers.md, tools/nope.py, other/project/file.py, tools/check_book.py",
        files, root=Path("/nonexistent")) == ["papers.md", "tools/nope.py"]
    cited = ("Source: the official `metrics.py` (gap). Split files from CoOp DATASETS.md "
             "(github.com/KaiyangZhou/CoOp). See notes.md for more.")
    assert check_book.unknown_file_names(cited, files, root=Path("/nonexistent")) == \
        ["notes.md"]
