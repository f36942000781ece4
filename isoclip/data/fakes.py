"""Miniature fake copies of the paper's datasets, in their official layouts (test support).

``make_fake_dataset(name, root)`` writes a few tiny images and the index files of dataset
``name`` under ``root`` exactly where :func:`isoclip.data.load_retrieval_dataset` (and the
official loaders) look for them, so the real-data path can be exercised end to end without
the real data. Content is deterministic in ``seed``: each class (or landmark) has its own base
colour plus per-image noise, saved as JPEG whatever the size.

Sizes, per layout kind (``C = n_classes``, ``K = per_class``):

* CUB: ``C`` classes x ``K`` images (all -> all).
* CoOp split sets and FGVC-Aircraft: ``K`` images per class in each of train / val / test.
* ROxf / RPar: ``C`` landmarks of ``K + 1`` database images; the first image of each landmark
  is also its query, with the other ``K`` alternately easy / hard and the query itself junk.
* Caption sets: ``C`` images in the evaluated split (COCO and Flickr30K also get one image in
  each other Karpathy split), each with ``captions_per_image`` captions (default 5; 10 for
  nocaps, whose validation file has 10 per image).

``make_fake_root(root, names)`` writes several such datasets into one fake ``data_root`` (each
with its own content seed, derived from its name); ``python -m isoclip.data.fakes ROOT NAME...``
does the same from the command line (``make reproduce-fake`` writes the sets its parameter
set lists this way).
"""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from isoclip.data.registry import DatasetInfo, dataset_info

__all__ = ["make_fake_dataset", "make_fake_root"]


def _write_image(path: Path, colour: np.ndarray, rng: np.random.Generator, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = rng.normal(0.0, 20.0, size=(size, size, 3))
    pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="RGB").save(path, format="JPEG", quality=90)


class _Painter:
    """Writes class-coloured noisy JPEGs: ``paint(path, cls)``."""

    def __init__(self, n_classes: int, size: int, seed: int) -> None:
        rng = np.random.default_rng([seed, 0])
        self.colours = rng.uniform(30, 225, size=(n_classes, 3))
        self.rng = np.random.default_rng([seed, 1])
        self.size = size

    def paint(self, path: Path, cls: int) -> None:
        _write_image(path, self.colours[cls], self.rng, self.size)


def _write_text(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def _fake_cub(folder: Path, info: DatasetInfo, paint: _Painter, c: int, k: int) -> None:
    images: list[str]
    classes, images, labels, split = [], [], [], []
    for y in range(c):
        cname = f"{y + 1:03d}.Fake_bird_{y}"
        classes.append(f"{y + 1} {cname}")
        for j in range(k):
            iid = len(images) + 1
            rel = f"{cname}/Fake_bird_{y}_{j:04d}.jpg"
            paint.paint(folder / info.image_dir / rel, y)
            images.append(f"{iid} {rel}")
            labels.append(f"{iid} {y + 1}")
            split.append(f"{iid} {j % 2}")
    _write_text(folder / "classes.txt", classes)
    _write_text(folder / "images.txt", images)
    _write_text(folder / "image_class_labels.txt", labels)
    # read by the official loader, though all -> all does not need it
    _write_text(folder / "train_test_split.txt", split)


def _fake_revisited(folder: Path, info: DatasetInfo, paint: _Painter, c: int, k: int,
                    size: int) -> None:
    imlist: list[str] = []
    qimlist: list[str] = []
    gnd: list[dict[str, Any]] = []
    for y in range(c):
        first = len(imlist)
        for j in range(k + 1):
            imlist.append(f"landmark{y}_{j:06d}")
            paint.paint(folder / info.image_dir / f"{imlist[-1]}.jpg", y)
        others = list(range(first + 1, first + k + 1))
        qimlist.append(imlist[first])
        gnd.append({"bbx": [1.0, 1.0, size - 1.0, size - 1.0], "easy": others[0::2],
                    "hard": others[1::2], "junk": [first]})
    with open(folder / info.index_file, "wb") as f:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, f)


def _coop_relpath(name: str, cdir: str, split: str, y: int, j: int) -> str:
    """Where an image sits relative to the image folder, mimicking each dataset."""
    if name == "oxford_pets":
        return f"{cdir}_{split}{j}.jpg"
    if name == "oxford_flowers":
        return f"image_{split}_{y:03d}_{j:02d}.jpg"
    if name == "stanford_cars":
        return f"cars_{'test' if split == 'test' else 'train'}/{y:03d}{j:02d}.jpg"
    if name == "sun397":
        return f"{cdir[0]}/{cdir}/sun_{split}{j}.jpg"
    return f"{cdir}/{split}_{j:03d}.jpg"


def _fake_coop(folder: Path, info: DatasetInfo, paint: _Painter, c: int, k: int) -> None:
    image_root = folder / info.image_dir
    split: dict[str, list[list[Any]]] = {}
    for s in ("train", "val", "test"):
        split[s] = []
        for y in range(c):
            cname = f"fake_class_{y}"
            for j in range(k):
                rel = _coop_relpath(info.name, cname, s, y, j)
                paint.paint(image_root / rel, y)
                split[s].append([rel, y, cname])
    _write_json(folder / info.index_file, split)


def _fake_aircraft(folder: Path, info: DatasetInfo, paint: _Painter, c: int, k: int) -> None:
    variants = [f"Fake {y}0{y}-{y}00" for y in range(c)]
    _write_text(folder / "variants.txt", variants)
    for s in ("train", "val", "test"):
        lines = []
        for y, v in enumerate(variants):
            for j in range(k):
                iid = f"{s[:2]}{y:03d}{j:03d}"
                paint.paint(folder / info.image_dir / f"{iid}.jpg", y)
                lines.append(f"{iid} {v}")
        _write_text(folder / f"images_variant_{s}.txt", lines)


def _captions(i: int, n: int) -> list[str]:
    return [f"caption {j} of fake image {i}" for j in range(n)]


def _fake_captions(folder: Path, info: DatasetInfo, c: int, n_caps: int) -> None:
    split = info.query_split.split("_")[0]
    others = [s for s in ("train", "val", "test") if s != split]
    # (file stem, split) of the Karpathy-split sets: c evaluated images, one in each other split
    images = [(f"{split}{i}", split) for i in range(c)] + [(f"{s}0", s) for s in others]
    if info.layout == "coco_karpathy":
        entries = []
        for imgid, (stem, s) in enumerate(images):
            sents = [{"raw": t, "sentid": imgid * n_caps + j, "imgid": imgid,
                      "tokens": t.split()} for j, t in enumerate(_captions(imgid, n_caps))]
            entries.append({"filepath": f"{s}2014", "filename": f"COCO_{stem}.jpg",
                            "imgid": imgid, "split": s, "sentences": sents, "cocoid": imgid})
        _write_json(folder / info.index_file, {"images": entries, "dataset": "coco"})
    elif info.layout == "flickr30k_csv":
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "results.csv", "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter="|", lineterminator="\n")
            w.writerow(["image_name", " comment_number", " comment"])
            for i, (stem, _) in enumerate(images):
                for j, t in enumerate(_captions(i, n_caps)):
                    w.writerow([f"{stem}.jpg", f" {j}", f" {t}"])
        for s in ("train", "val", "test"):
            _write_text(folder / f"karpathy_{s}.txt", [st for st, si in images if si == s])
    else:  # nocaps: val only; annotations interleaved across images (readers group by image_id)
        anns = [{"image_id": i, "id": j * c + i, "caption": _captions(i, n_caps)[j]}
                for j in range(n_caps) for i in range(c)]
        ims = [{"id": i, "file_name": f"{i:04d}.jpg"} for i in range(c)]
        _write_json(folder / info.index_file, {"images": ims, "annotations": anns})


def make_fake_dataset(name: str, root: str | Path, *, n_classes: int = 3, per_class: int = 2,
                      image_size: int = 32, captions_per_image: int | None = None,
                      seed: int = 0) -> Path:
    """Write a miniature copy of dataset ``name`` in its official layout under ``root``.

    Args:
        name: a registered dataset (see :func:`isoclip.data.available_datasets`).
        root: the fake ``data_root``; created if needed. Other datasets there are untouched.
        n_classes: classes (landmarks for ROxf/RPar, images of the evaluated split for the
            caption sets).
        per_class: images per class and split (see the module docstring per kind).
        image_size: side of the square JPEGs in pixels.
        captions_per_image: caption sets only; default 5 (10 for ``nocaps_text``).
        seed: content seed (colours and noise).

    Returns:
        The dataset folder written (the official one, e.g. ``root/CoOp/oxford_pets``).

    Raises:
        ValueError: unknown ``name`` or sizes too small for the layout.
    """
    info = dataset_info(name)
    if n_classes < 1 or per_class < 1 or image_size < 2:
        raise ValueError("n_classes and per_class must be >= 1 and image_size >= 2, got "
                         f"{n_classes}, {per_class}, {image_size}")
    if info.layout == "revisited" and per_class < 2:
        raise ValueError(f"{name}: per_class must be >= 2 (each query needs an easy and a hard "
                         "positive)")
    if captions_per_image is not None and captions_per_image < 2:
        raise ValueError("captions_per_image must be >= 2 (one query and at least one gallery "
                         f"caption per image), got {captions_per_image}")
    folder = Path(root) / info.dirs[0]
    folder.mkdir(parents=True, exist_ok=True)
    if info.modality == "text":
        n_caps = captions_per_image or (10 if info.layout == "nocaps_json" else 5)
        _fake_captions(folder, info, n_classes, n_caps)
        return folder
    paint = _Painter(n_classes, image_size, seed)
    if info.layout == "cub":
        _fake_cub(folder, info, paint, n_classes, per_class)
    elif info.layout == "revisited":
        _fake_revisited(folder, info, paint, n_classes, per_class, image_size)
    elif info.layout == "coop_split":
        _fake_coop(folder, info, paint, n_classes, per_class)
    else:
        _fake_aircraft(folder, info, paint, n_classes, per_class)
    return folder


def make_fake_root(root: str | Path, names: Sequence[str], *, n_classes: int = 3,
                   per_class: int = 2, image_size: int = 32, seed: int = 0) -> list[Path]:
    """Write miniature copies of several datasets under one fake ``data_root``.

    Each dataset is :func:`make_fake_dataset` with content seed ``seed + crc32(name) % 10**6``,
    so two sets never share their colours and a set's content does not depend on which other
    sets are written beside it (a narrowed run reads the same miniatures).

    Args:
        root: the fake ``data_root``; created if needed.
        names: registered dataset names (image and caption sets), each written once.
        n_classes, per_class, image_size: as :func:`make_fake_dataset`.
        seed: base content seed.

    Returns:
        The dataset folders written, in the order of ``names`` (repeats dropped).

    Raises:
        ValueError: no name, an unknown name, or sizes too small for a layout; nothing is
            written when a name is unknown.
    """
    unique = list(dict.fromkeys(names))
    if not unique:
        raise ValueError("names: expected at least one dataset name")
    for name in unique:
        dataset_info(name)  # every name checked before anything is written
    return [make_fake_dataset(name, root, n_classes=n_classes, per_class=per_class,
                              image_size=image_size,
                              seed=seed + zlib.crc32(name.encode()) % 10**6)
            for name in unique]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m isoclip.data.fakes ROOT NAME...``: :func:`make_fake_root`."""
    ap = argparse.ArgumentParser(prog="python -m isoclip.data.fakes",
                                 description="Write miniature fake copies of registered "
                                             "datasets in their official layouts under ROOT.")
    ap.add_argument("root", help="the fake data_root (created if needed)")
    ap.add_argument("names", nargs="+", help="registered dataset names, e.g. cub2011 coco_text")
    ap.add_argument("--n-classes", type=int, default=3)
    ap.add_argument("--per-class", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        folders = make_fake_root(args.root, args.names, n_classes=args.n_classes,
                                 per_class=args.per_class, image_size=args.image_size,
                                 seed=args.seed)
    except ValueError as e:
        ap.error(str(e))
    print(f"[fakes] {len(folders)} datasets under {args.root}: "
          + ", ".join(str(Path(f).relative_to(args.root)) for f in folders), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
