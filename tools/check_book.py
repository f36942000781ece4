"""Open every page of the built book in headless Chromium and check what a reader would see.

For each document in ``_toc.yml``, at a 1280 px and a 400 px wide window:

- the page loads from disk with no request leaving the machine;
- every figure has a non-zero rendered size and no image is shown twice on one page;
- no page shows a Python traceback, an error output or stray stderr (warnings, logging);
- math renders (MathJax served locally);
- no table is wider than its container unless it sits in its own horizontally scrolling box;
- no paragraph ends mid-sentence (what a MyST comment line, one starting with ``%``, leaves
  behind when it swallows the rest of a sentence);
- no caption writes a subscript as plain text (``Ψ_i``, ``σ_j``: math belongs in ``$...$``);
- no internal words: issue numbers, or names of files that are not in the repository;
- every chapter (a document of a numbered part) shows code: the library calls that compute it.

Full-page screenshots at both widths go to ``_build/screenshots/<width>/<document>.png``
for a human to look at. Exit status 1 lists every failure.

Usage: python tools/check_book.py [_build/html] [--screenshots DIR | --no-screenshots]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
WIDTHS = (1280, 400)

#: A paragraph that ends with none of these (after trailing spaces) ends mid-sentence.
SENTENCE_END = tuple(".:!?;)]}…\"'”’»") + ("\u00a0",)
#: Issue / ticket references that have no place in a book.
ISSUE_WORDS = re.compile(r"\b(?:issues?|tickets?)\s*#?\d+\b|\(#\d+\)", re.IGNORECASE)
#: File names a reader would look for in the repository (external data files such as
#: ``dataset_coco.json`` are not matched: they are named by the datasets' own layouts).
FILE_NAMES = re.compile(r"(?<![\w./-])((?:[\w-]+/)*[\w.-]+\.(?:md|py|ipynb|ya?ml|toml|cfg|bib))"
                        r"(?![\w/])")
#: A subscript written as text: a letter (Latin or Greek) + "_" + a letter or digit.
RAW_SUBSCRIPT = re.compile(r"[A-Za-zΑ-Ωα-ωϕϵ]_[A-Za-z0-9{]")
#: The page's own content (not the header's launch or download menus).
ARTICLE = "main article"

# The JavaScript measurements; each returns plain JSON.
JS_TABLES = """() => {
  const article = document.querySelector('main article') || document.querySelector('main');
  const limit = article.getBoundingClientRect().right + 1;
  const out = [];
  document.querySelectorAll('main table').forEach((t, i) => {
    const r = t.getBoundingClientRect();
    if (r.width === 0) return;
    let box = null;
    for (let e = t.parentElement; e && e !== article; e = e.parentElement) {
      const ox = getComputedStyle(e).overflowX;
      if (ox === 'auto' || ox === 'scroll') { box = e; break; }
    }
    const boxRight = box ? box.getBoundingClientRect().right : null;
    out.push({i, right: r.right, width: r.width, limit, boxRight,
              caption: (t.querySelector('caption') || {}).innerText || ''});
  });
  return out;
}"""
JS_PARAGRAPHS = """() => {
  const skip = 'figure, figcaption, table, li, dt, dd, .admonition-title, nav, header, footer,'
             + ' .cell_input, pre, .toctree-wrapper, .bd-sidebar, .prev-next-area';
  // a sentence may run on into an equation, a list, a code block or a figure; only a paragraph
  // followed by another paragraph, a heading or nothing must end it
  const next = p => {
    let n = p.nextElementSibling;
    while (n && n.tagName === 'SPAN' && !n.innerText.trim()) n = n.nextElementSibling;
    return n;
  };
  return Array.from(document.querySelectorAll('main article p'))
    .filter(p => !p.closest(skip) && p.innerText.trim().length > 0)
    .filter(p => { const n = next(p); return !n || /^(P|H[1-6]|SECTION)$/.test(n.tagName); })
    .map(p => p.innerText.trim());
}"""
JS_CAPTIONS = """() => {
  const sel = 'main figcaption, main table caption, main .isoclip-table-caption';
  return Array.from(document.querySelectorAll(sel)).map(c => {
    const k = c.cloneNode(true);
    k.querySelectorAll('mjx-container, .math, code, script').forEach(e => e.remove());
    return k.textContent.replace(/\\s+/g, ' ').trim();
  });
}"""
JS_TEXT = """() => {
  const m = (document.querySelector('main article') || document.querySelector('main')).cloneNode(true);
  m.querySelectorAll('mjx-container, script, style').forEach(e => e.remove());
  return m.textContent;
}"""


def toc_documents(toc_path: Path) -> list[str]:
    toc = yaml.safe_load(toc_path.read_text())
    docs = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for e in entries or []:
            if "file" in e:
                docs.append(e["file"])
            walk(e.get("sections", []))
            walk(e.get("chapters", []))

    for part in toc.get("parts", []):
        walk(part.get("chapters", []))
    walk(toc.get("chapters", []))
    return docs


def numbered_documents(toc_path: Path) -> set[str]:
    """The documents of the numbered parts of ``_toc.yml``: the book's chapters."""
    toc = yaml.safe_load(toc_path.read_text())
    out: set[str] = set()

    def walk(entries: list[dict]) -> None:
        for e in entries or []:
            if "file" in e:
                out.add(e["file"])
            walk(e.get("sections", []))

    for part in toc.get("parts", []):
        if part.get("numbered"):
            walk(part.get("chapters", []))
    return out


def repository_files(root: Path = ROOT) -> set[str]:
    """Paths of the repository (git-tracked and untracked-but-not-ignored) relative to ``root``,
    plus the executed notebooks the book is built from."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=root, capture_output=True, text=True, check=True).stdout
        files = set(out.split())
    except (OSError, subprocess.CalledProcessError):
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    files |= {f"executed/{p.stem}.ipynb" for p in (root / "notebooks").glob("[0-9][0-9]_*.md")}
    return files


#: A sentence that says where an outside file comes from cites it: "official `metrics.py`",
#: "CoOp DATASETS.md (github.com/...)".
EXTERNAL_SOURCE = re.compile(r"official|github\.com|://|upstream", re.IGNORECASE)


def _sentence(text: str, start: int, end: int) -> str:
    a = max(text.rfind(". ", 0, start), text.rfind("\n\n", 0, start))
    b = min([i for i in (text.find(". ", end), text.find("\n\n", end)) if i >= 0] or [len(text)])
    return text[a + 1:b]


def unknown_file_names(text: str, files: Iterable[str], root: Path = ROOT) -> list[str]:
    """File names in ``text`` that name nothing in the repository: a bare name must be the
    name of some repository file, a path whose first folder is a top-level folder of the
    repository must exist; other paths (``python/download.py`` of another project) pass, and
    so does a name whose sentence says where it comes from (:data:`EXTERNAL_SOURCE`)."""
    files = set(files)
    names = {f.rsplit("/", 1)[-1] for f in files}
    top = {f.split("/", 1)[0] for f in files if "/" in f}
    bad = []
    for m in FILE_NAMES.finditer(text):
        token = m.group(1).strip(".")
        if EXTERNAL_SOURCE.search(_sentence(text, m.start(), m.end())):
            continue
        if "/" in token:
            if token.split("/", 1)[0] in top and token not in files \
                    and not (root / token).exists():
                bad.append(token)
        elif token not in names and not (root / token).exists():
            bad.append(token)
    return sorted(set(bad))


def mid_sentence(paragraphs: Iterable[str]) -> list[str]:
    """Paragraphs that end without closing punctuation (the tail shown)."""
    return [p[-60:] for p in paragraphs if not p.rstrip().endswith(SENTENCE_END)]


def raw_subscripts(captions: Iterable[str]) -> list[str]:
    """Captions (math and code removed) that still contain a subscript written as text."""
    return [c for c in captions if RAW_SUBSCRIPT.search(c)]


def _image_digest(src: str) -> str:
    url = urlparse(src)
    if url.scheme == "file":
        p = Path(unquote(url.path))
        if p.is_file():
            return hashlib.sha256(p.read_bytes()).hexdigest()
    return src


JS_VISIBLE_CODE = """() => Array.from(document.querySelectorAll('main article .cell_input'))
  .filter(e => !e.closest('details') && e.getBoundingClientRect().height > 0).length"""


def check_page(page: Page, doc: str, width: int, files: set[str],
               chapter: bool = False) -> list[str]:
    """Every check of one loaded page at one window width; the failures. A ``chapter`` must
    also show code (the library calls that compute it), not only folded cells."""
    failures: list[str] = []
    where = f"{doc} @{width}px"
    text = page.inner_text("body")
    if width == WIDTHS[0]:
        if "Traceback (most recent call last)" in text or page.locator(".output.traceback").count():
            failures.append(f"{doc}: shows a Python traceback")
        if page.locator("div.output.error").count():
            failures.append(f"{doc}: shows an error output")
        if page.locator("div.output.stderr").count():
            first = page.locator("div.output.stderr").first.inner_text()[:200]
            failures.append(f"{doc}: shows stderr output (warnings/logging): {first!r}")
        figures = page.locator(ARTICLE + " figure")
        for i in range(figures.count()):
            fig = figures.nth(i)
            if fig.locator("img, svg, table").count() == 0:
                failures.append(f"{doc}: figure {i} ({fig.get_attribute('id')}) is empty "
                                "(no image or table)")
        if "$" in page.inner_text("main") and page.locator("mjx-container").count() == 0 \
                and page.locator(".math").count():
            failures.append(f"{doc}: math did not render (MathJax not loaded)")
        if chapter and page.evaluate(JS_VISIBLE_CODE) == 0:
            failures.append(f"{doc}: a chapter that shows no code cell (every one is hidden or "
                            "folded)")
        for tail in mid_sentence(page.evaluate(JS_PARAGRAPHS)):
            failures.append(f"{doc}: a paragraph ends mid-sentence (a MyST '%' comment line "
                            f"swallowed the rest?): ...{tail!r}")
        for cap in raw_subscripts(page.evaluate(JS_CAPTIONS)):
            failures.append(f"{doc}: caption writes a subscript as plain text (use $x_i$): "
                            f"{cap[:120]!r}")
        main_text = page.evaluate(JS_TEXT)
        for m in ISSUE_WORDS.finditer(main_text):
            failures.append(f"{doc}: internal reference {m.group(0)!r}")
        for name in unknown_file_names(main_text, files):
            failures.append(f"{doc}: names a file that is not in the repository: {name!r}")
        seen: dict[str, int] = {}
        imgs = page.locator(ARTICLE + " img")
        for i in range(imgs.count()):
            img = imgs.nth(i)
            box = img.evaluate(
                "e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width, e.src]")
            if not (box[0] and box[1] > 0 and box[2] > 0):
                failures.append(f"{doc}: image {i} has zero size or did not load ({box[:3]})")
            digest = _image_digest(box[3])
            if digest in seen:
                failures.append(f"{doc}: image {i} repeats image {seen[digest]} "
                                f"({box[3].rsplit('/', 1)[-1]})")
            seen.setdefault(digest, i)
    for t in page.evaluate(JS_TABLES):
        clipped = t["boxRight"] is None or t["boxRight"] > t["limit"] + 1
        if t["right"] > t["limit"] + 1 and clipped:
            what = f"table {t['i']}" + (f" ({t['caption'][:60]!r})" if t["caption"] else "")
            failures.append(f"{where}: {what} is {t['width']:.0f} px wide, wider than its "
                            "container, and not in a scrolling box (clipped)")
    return failures


def _settle(page: Page) -> None:
    """Wait for MathJax (when the page loads it) and fonts, so measures and screenshots see
    the rendered page."""
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")
    page.evaluate("() => document.fonts ? document.fonts.ready.then(() => null) : null")
    page.wait_for_timeout(200)


def check(html_dir: Path, docs: list[str] | None = None, screenshots: Path | None = None,
          chapter_docs: Iterable[str] = ()) -> list[str]:
    """Check ``docs`` (default: every document of ``_toc.yml``, the chapters being those of
    its numbered parts, else ``chapter_docs``) of the built book in ``html_dir``; full-page
    screenshots into ``screenshots/<width>/`` unless None."""
    failures: list[str] = []
    files = repository_files()
    chapters = numbered_documents(ROOT / "_toc.yml") if docs is None else set(chapter_docs)
    docs = docs if docs is not None else toc_documents(ROOT / "_toc.yml")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        for width in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": 900})
            external: list[str] = []
            page.on("request", lambda r, ext=external: ext.append(r.url)
                    if not r.url.startswith(("file://", "data:", "about:")) else None)
            for doc in docs:
                f = html_dir / f"{doc}.html"
                if not f.is_file():
                    if width == WIDTHS[0]:
                        failures.append(f"{doc}: {f} was not built")
                    continue
                external.clear()
                page.goto(f.resolve().as_uri(), wait_until="load")
                _settle(page)
                failures += check_page(page, doc, width, files, chapter=doc in chapters)
                if external and width == WIDTHS[0]:
                    failures.append(f"{doc}: requested the network: {sorted(set(external))[:3]}")
                if screenshots is not None:
                    shot = screenshots / str(width) / f"{doc}.png"
                    shot.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(shot), full_page=True)
                n_imgs = page.locator(ARTICLE + " img").count()
                print(f"[check-book] {doc} @{width}px: {n_imgs} image(s)", flush=True)
            page.close()
        browser.close()
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html_dir", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"),
                    help="folder of the full-page screenshots (<width>/<document>.png)")
    ap.add_argument("--no-screenshots", action="store_true", help="take no screenshots")
    ap.add_argument("--only", nargs="*", help="documents to check (default: all of _toc.yml)")
    args = ap.parse_args(argv)
    shots = None if args.no_screenshots else Path(args.screenshots)
    failures = check(Path(args.html_dir), args.only, shots)
    for msg in failures:
        print(f"[check-book] FAIL {msg}")
    if shots is not None:
        print(f"[check-book] screenshots: {shots}/{{{','.join(map(str, WIDTHS))}}}/")
    print(f"[check-book] {'FAILED' if failures else 'all pages OK'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
