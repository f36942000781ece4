"""Open every page of the built book in headless Chromium and check what a reader would see.

For each document in ``_toc.yml``: the page loads from disk with no request leaving the machine,
every figure has a non-zero rendered size, no page shows a Python traceback, an error
output or stray stderr (warnings, logging), and math renders (MathJax served locally). Exit status 1 lists every failure.

Usage: python tools/check_book.py [_build/html]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


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


def check(html_dir: Path) -> list[str]:
    failures: list[str] = []
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        external: list[str] = []
        page.on("request", lambda r: external.append(r.url)
                if not r.url.startswith(("file://", "data:", "about:")) else None)
        for doc in toc_documents(ROOT / "_toc.yml"):
            f = html_dir / f"{doc}.html"
            if not f.is_file():
                failures.append(f"{doc}: {f} was not built")
                continue
            external.clear()
            page.goto(f.resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(300)
            text = page.inner_text("body")
            if "Traceback (most recent call last)" in text or page.locator(".output.traceback").count():
                failures.append(f"{doc}: shows a Python traceback")
            if page.locator("div.output.error").count():
                failures.append(f"{doc}: shows an error output")
            if page.locator("div.output.stderr").count():
                first = page.locator("div.output.stderr").first.inner_text()[:200]
                failures.append(f"{doc}: shows stderr output (warnings/logging): {first!r}")
            figures = page.locator("main figure")
            for i in range(figures.count()):
                fig = figures.nth(i)
                if fig.locator("img, svg, table").count() == 0:
                    failures.append(f"{doc}: figure {i} ({fig.get_attribute('id')}) is empty "
                                    "(no image or table)")
            imgs = page.locator("main img")
            n_imgs = imgs.count()
            for i in range(n_imgs):
                box = imgs.nth(i).evaluate(
                    "e => [e.complete, e.naturalWidth, e.getBoundingClientRect().width]")
                if not (box[0] and box[1] > 0 and box[2] > 0):
                    failures.append(f"{doc}: image {i} has zero size or did not load ({box})")
            if "$" in page.inner_text("main") and page.locator("mjx-container").count() == 0 \
                    and page.locator(".math").count():
                failures.append(f"{doc}: math did not render (MathJax not loaded)")
            if external:
                failures.append(f"{doc}: requested the network: {sorted(set(external))[:3]}")
            print(f"[check-book] {doc}: {n_imgs} figure(s), {len(text)} chars", flush=True)
        browser.close()
    return failures


def main() -> int:
    html_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html")
    failures = check(html_dir)
    for msg in failures:
        print(f"[check-book] FAIL {msg}")
    print(f"[check-book] {'FAILED' if failures else 'all pages OK'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
