"""Print every value glued by an executed notebook (name = value), for notes and reviews.

Usage: python tools/glued.py executed/01_embedded_default.ipynb [...]
"""

from __future__ import annotations

import sys

import nbformat


def glued(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for cell in nbformat.read(path, as_version=4).cells:
        for o in cell.get("outputs", []):
            name = o.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                text = o["data"].get("application/papermill.record/text/plain")
                out[name] = text if text is not None else "<figure/other>"
    return out


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(f"== {p}")
        for k, v in glued(p).items():
            print(f"{k} = {v}")
