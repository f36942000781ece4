"""Refuse to start an install that cannot fit on the disk, before it half-fills it.

``make venv`` runs this with the system Python (standard library only) before creating
``.venv``: the pinned torch 2.14.1 + torchvision 0.29.1 wheels are CUDA builds, and the virtual
environment with them and the project's dependencies measured 6.4 GB on x86_64. Without the
check, a full disk surfaces as pip's ``OSError: [Errno 28] No space left on device`` half-way
through the install, after the other users of the disk have lost their free space too.

Usage: ``python tools/check_disk.py PATH --need-gb N --what "TEXT"``. Exits 0 when the file
system holding ``PATH`` (or its nearest existing parent) has at least ``N`` GB (10⁹ bytes) free,
else 2 with a message naming the path, the free and needed space. ``ISOCLIP_SKIP_DISK_CHECK=1``
skips the check (a file system that reports its free space wrongly).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

SKIP_ENV = "ISOCLIP_SKIP_DISK_CHECK"


def existing_parent(path: Path) -> Path:
    """``path`` itself, or its nearest parent that exists (the folder about to be created is
    not there yet)."""
    p = path.absolute()
    while not p.exists():
        p = p.parent
    return p


def check(path: Path, need_gb: float, what: str) -> str | None:
    """None when ``need_gb`` GB are free where ``path`` lives, else the error message."""
    where = existing_parent(path)
    free_gb = shutil.disk_usage(where).free / 1e9
    if free_gb >= need_gb:
        return None
    return (f"not enough free disk for {what}: {need_gb:g} GB needed, {free_gb:.1f} GB free "
            f"on the file system of {where}. Free some space (old clones, their .venv folders "
            f"and caches) and re-run; {SKIP_ENV}=1 skips this check.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("path", type=Path, help="where the install goes (need not exist yet)")
    ap.add_argument("--need-gb", type=float, required=True, help="GB (1e9 bytes) needed")
    ap.add_argument("--what", default="the install", help="what needs the space (message)")
    args = ap.parse_args(argv)
    if args.need_gb < 0:
        ap.error(f"--need-gb: expected a number >= 0, got {args.need_gb:g}")
    if os.environ.get(SKIP_ENV) == "1":
        return 0
    message = check(args.path, args.need_gb, args.what)
    if message is None:
        return 0
    print(f"check_disk: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
