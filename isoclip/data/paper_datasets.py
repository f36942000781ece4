"""Readers for the paper's retrieval datasets in their official on-disk layouts.

Each reader turns one dataset folder into a :class:`RetrievalData` (query and gallery
containers, plus the revisited ground truth for Oxford/Paris). The folder names, file names
and parsing rules follow the official loaders of Cross the Gap (``miccunifi/Cross-the-Gap``
``src/datasets/``), which IsoCLIP (``simomagi/IsoCLIP``) imports unchanged, so an existing copy
of the data works as is. The table of datasets, their splits and sources lives in
:mod:`isoclip.data.registry`; the public entry point is
:func:`isoclip.data.registry.load_retrieval_dataset`.

Every problem with the data on disk (missing folder or file, unparsable or inconsistent
content) raises :class:`DatasetNotFoundError` (a ``FileNotFoundError``) whose message names
the dataset, the expected layout under ``data_root``, and where the official data comes from;
:class:`DatasetFormatError` is its subclass for files that exist but cannot be used.
"""

from __future__ import annotations

import csv
import json
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from isoclip.common.types import Modality
from isoclip.data.base import ImageDataset, TextDataset

Layout = Literal["cub", "revisited", "coop_split", "fgvc_aircraft", "coco_karpathy",
                 "flickr30k_csv", "nocaps_json"]
SplitData = ImageDataset | TextDataset
#: One revisited query: int64 index arrays ``easy``/``hard``/``junk`` into the gallery and the
#: float64 query box ``bbx`` = [x1, y1, x2, y2] in pixels of the query image.
GroundTruth = dict[str, np.ndarray]


@dataclass(frozen=True)
class DatasetInfo:
    """How one paper dataset is laid out, split and sourced.

    Attributes:
        name: registry name (the official ``--dataset_name``), e.g. ``"oxford_pets"``.
        modality: ``"image"`` (image-image retrieval) or ``"text"`` (caption-caption).
        layout: which reader parses the folder (one per dataset kind).
        query_split, gallery_split: the official split names (``RETRIEVAL_SPLTS``).
        same_split: the query set is the gallery set; each query is removed from its own
            gallery at evaluation time (CUB all→all).
        dirs: candidate dataset folders relative to ``data_root``, the official one first.
        files: entries that must exist inside the folder (a trailing ``/`` marks a folder).
        source: where the official data comes from (text only, nothing is downloaded).
        official_loader: the official loader file this layout follows.
        image_dir: folder (inside the dataset folder) that image paths are relative to.
        index_file: the main annotation file, if the layout has one: the CoOp
            ``split_zhou_*.json``, the revisitop ``gnd_*.pkl`` or the caption JSON.
    """

    name: str
    modality: Modality
    layout: Layout
    query_split: str
    gallery_split: str
    same_split: bool
    dirs: tuple[str, ...]
    files: tuple[str, ...]
    source: str
    official_loader: str
    image_dir: str = ""
    index_file: str = ""

    def describe_layout(self) -> str:
        """The expected tree under ``data_root``, as indented text for error messages."""
        head = f"  {self.dirs[0]}/"
        if len(self.dirs) > 1:
            head += "   (or " + ", ".join(f"{d}/" for d in self.dirs[1:]) + ")"
        return "\n".join([head] + [f"    {f}" for f in self.files])


class DatasetNotFoundError(FileNotFoundError):
    """A paper dataset is missing or unusable under ``data_root``.

    Attributes:
        dataset: registry name of the dataset.
        data_root: the root that was searched.
        expected_paths: candidate dataset folders (absolute), the official one first.
        expected_files: entries expected inside the dataset folder.
        source: where the official data comes from.
    """

    def __init__(self, info: DatasetInfo, data_root: Path, problem: str) -> None:
        self.dataset = info.name
        self.data_root = data_root
        self.expected_paths = tuple(data_root / d for d in info.dirs)
        self.expected_files = info.files
        self.source = info.source
        super().__init__(
            f"dataset {info.name!r}: {problem}\n"
            f"Expected under data_root={str(data_root)!r} (layout of {info.official_loader}):\n"
            f"{info.describe_layout()}\n"
            f"Official data: {info.source}"
        )


class DatasetFormatError(DatasetNotFoundError):
    """A dataset file exists but is malformed (unparsable, wrong schema, inconsistent)."""


@dataclass(frozen=True, eq=False)
class RetrievalData:
    """Query and gallery of one retrieval benchmark, ready for feature extraction.

    Relevance is "same label" (class for image sets, source image for caption sets), except
    for the revisited Oxford/Paris sets, where it is given by ``gnd`` and the labels are all 0.

    Attributes:
        name: registry name.
        query, gallery: the two sides; for ``same_split`` they are the same object.
        same_split: query i is gallery item i and must be removed from its own ranking.
        query_split, gallery_split: official split names.
        folder: the dataset folder that was read.
        gnd: revisited Oxford/Paris only: one :data:`GroundTruth` per query (indices into
            ``gallery``; distractors appended to the gallery are never relevant); else None.
        calibration: unlabelled image-caption pairs of the set's domain, drawn from the
            training data of the model it is evaluated with (the embedded sets of
            :mod:`isoclip.data.suites`; the label-free agreement rule chooses a band on them);
            None when the set has none (the paper's datasets).
    """

    name: str
    query: SplitData
    gallery: SplitData
    same_split: bool
    query_split: str
    gallery_split: str
    folder: Path
    gnd: list[GroundTruth] | None = None
    calibration: ImageDataset | None = None

    def __post_init__(self) -> None:
        if self.same_split and self.query is not self.gallery:
            raise ValueError("same_split=True needs the query and gallery to be one container")
        if self.gnd is not None and len(self.gnd) != len(self.query):
            raise ValueError(f"gnd: expected {len(self.query)} entries (one per query), "
                             f"got {len(self.gnd)}")


@dataclass(frozen=True)
class ReadContext:
    """One read of one dataset folder: file access that fails with the dataset's errors.

    Attributes:
        info: the dataset's registry entry.
        data_root: the root passed by the caller.
        folder: the dataset folder found under ``data_root``.
        verify_images: check that every listed image file exists.
    """

    info: DatasetInfo
    data_root: Path
    folder: Path
    verify_images: bool

    def missing(self, problem: str) -> DatasetNotFoundError:
        """The error for something absent (folder, file, image)."""
        return DatasetNotFoundError(self.info, self.data_root, problem)

    def malformed(self, path: Path, problem: str) -> DatasetFormatError:
        """The error for file ``path`` that exists but cannot be used."""
        return DatasetFormatError(self.info, self.data_root, f"malformed {path}: {problem}")

    def path(self, rel: str) -> Path:
        """``folder / rel``, which must exist."""
        p = self.folder / rel
        if not p.exists():
            raise self.missing(f"missing {'folder' if rel.endswith('/') else 'file'} {p}")
        return p

    def read_text(self, rel: str) -> tuple[Path, str]:
        """``(path, UTF-8 content)`` of ``folder / rel``."""
        p = self.path(rel)
        try:
            return p, p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise self.malformed(p, f"not UTF-8 text ({e})") from e

    def read_json(self, rel: str) -> tuple[Path, Any]:
        """``(path, parsed JSON)`` of ``folder / rel``."""
        p, text = self.read_text(rel)
        try:
            return p, json.loads(text)
        except json.JSONDecodeError as e:
            raise self.malformed(p, f"invalid JSON ({e})") from e

    def read_fields(self, rel: str) -> tuple[Path, list[tuple[int, list[str]]]]:
        """Non-blank lines as ``(line number, [first word, rest of line])``."""
        p, text = self.read_text(rel)
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            if len(parts) != 2:
                raise self.malformed(p, f"line {n}: expected '<id> <value>', got {line!r}")
            rows.append((n, parts))
        return p, rows

    def images(self, paths: Sequence[Path]) -> list[Path]:
        """``paths``, after checking (if ``verify_images``) that each file exists."""
        if self.verify_images:
            absent = [p for p in paths if not p.is_file()]
            if absent:
                shown = ", ".join(str(p) for p in absent[:3])
                raise self.missing(f"{len(absent)} of {len(paths)} listed images are missing "
                                   f"(first: {shown})")
        return list(paths)


def _expect(ok: bool, ctx: ReadContext, path: Path, problem: str) -> None:
    if not ok:
        raise ctx.malformed(path, problem)


def _dense_class_names(ctx: ReadContext, path: Path, names: Mapping[int, str]) -> list[str]:
    """``names`` {label: name} as a list, checking the labels are exactly 0..C-1."""
    labels = sorted(names)
    _expect(labels == list(range(len(names))), ctx, path,
            f"class labels must be 0..{len(names) - 1} without gaps, got {labels[:10]}"
            + (" ..." if len(labels) > 10 else ""))
    return [names[i] for i in range(len(names))]


# ---------------------------------------------------------------------------------------------
# CUB-200-2011 (Cross-the-Gap src/datasets/cub.py): all -> all


def read_cub(ctx: ReadContext) -> RetrievalData:
    """CUB_200_2011: ``images.txt`` order, labels from ``image_class_labels.txt`` (1-based in
    the file, 0-based here), names from ``classes.txt`` (``"001.Black_footed_Albatross"``
    becomes ``"Black footed Albatross"``)."""
    cls_path, cls_rows = ctx.read_fields("classes.txt")
    names: dict[int, str] = {}
    for n, (cid, raw) in cls_rows:
        _expect(cid.isdigit(), ctx, cls_path, f"line {n}: class id {cid!r} is not an integer")
        names[int(cid) - 1] = raw.split(".", 1)[-1].replace("_", " ")
    class_names = _dense_class_names(ctx, cls_path, names)

    lab_path, lab_rows = ctx.read_fields("image_class_labels.txt")
    label_of: dict[str, int] = {}
    for n, (iid, lab) in lab_rows:
        _expect(lab.isdigit() and 1 <= int(lab) <= len(class_names), ctx, lab_path,
                f"line {n}: label {lab!r} is not in 1..{len(class_names)} (classes.txt)")
        label_of[iid] = int(lab) - 1

    _, img_rows = ctx.read_fields("images.txt")
    missing = [iid for _, (iid, _) in img_rows if iid not in label_of]
    _expect(not missing, ctx, lab_path, f"no label for image ids {missing[:5]} of images.txt")
    image_dir = ctx.path(ctx.info.image_dir + "/")
    paths = ctx.images([image_dir / rel for _, (_, rel) in img_rows])
    labels = np.array([label_of[iid] for _, (iid, _) in img_rows], dtype=np.int64)
    data = ImageDataset(paths, labels, class_names, name=f"{ctx.info.name}/all")
    return RetrievalData(ctx.info.name, data, data, True, "all", "all", ctx.folder)


# ---------------------------------------------------------------------------------------------
# Revisited Oxford / Paris (Cross-the-Gap src/datasets/roxford_rparis.py, revisitop layout)


def _gnd_entry(ctx: ReadContext, path: Path, qi: int, entry: Any, n_db: int) -> GroundTruth:
    _expect(isinstance(entry, Mapping), ctx, path, f"gnd[{qi}] is not a dict")
    out: GroundTruth = {}
    for key, dtype in (("easy", np.int64), ("hard", np.int64), ("junk", np.int64),
                       ("bbx", np.float64)):
        _expect(key in entry, ctx, path, f"gnd[{qi}] has no {key!r}")
        try:
            out[key] = np.asarray(entry[key], dtype=dtype).reshape(-1)
        except (TypeError, ValueError) as e:
            raise ctx.malformed(path, f"gnd[{qi}][{key!r}] is not numeric ({e})") from e
    for key in ("easy", "hard", "junk"):
        idx = out[key]
        _expect(idx.size == 0 or (idx.min() >= 0 and idx.max() < n_db), ctx, path,
                f"gnd[{qi}][{key!r}] indexes outside imlist (size {n_db})")
    _expect(out["bbx"].shape == (4,), ctx, path, f"gnd[{qi}]['bbx'] must be [x1, y1, x2, y2]")
    return out


def _crop(path: Path, box: np.ndarray) -> Image.Image:
    x1, y1, x2, y2 = (float(v) for v in box)  # [4], checked by the gnd reader
    with Image.open(path) as im:
        return im.convert("RGB").crop((x1, y1, x2, y2))


_PLAIN = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str",
          "bytes", "bytearray")
#: The only globals a ``gnd_*.pkl`` may name: builtin containers and scalars (``__builtin__``
#: in protocol-2 pickles) and what numpy pickles arrays and scalars with (numpy 1 and 2 names).
GND_PICKLE_GLOBALS = frozenset(
    {(m, n) for m in ("builtins", "__builtin__") for n in _PLAIN}
    | {("collections", "OrderedDict"), ("_codecs", "encode"), ("numpy", "ndarray"),
       ("numpy", "dtype")}
    | {(f"numpy.{core}.multiarray", n) for core in ("core", "_core")
       for n in ("_reconstruct", "scalar")}
    | {(f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")})


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _GndUnpickler(pickle.Unpickler):
    """Unpickles plain data only (:data:`GND_PICKLE_GLOBALS`): a pickle naming any other
    global (``os.system``, a class) is refused before anything of it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in GND_PICKLE_GLOBALS:
            raise _RefusedGlobal(f"the pickle calls {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):  # numpy >= 2
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def read_revisited(ctx: ReadContext, crop_queries: bool = False,
                   with_distractors: bool = False) -> RetrievalData:
    """``gnd_<name>.pkl`` (revisitop format: ``imlist``, ``qimlist``, ``gnd``) + ``jpg/``.

    Args:
        crop_queries: crop each query to its ``bbx`` (the standard revisitop protocol). The
            official IsoCLIP/Cross-the-Gap loader does **not** crop, hence the default.
        with_distractors: append every file under ``<data_root>/revisitop1m/jpg/*/`` to the
            gallery, as the official gallery loader does with whatever R1M distractors exist
            on disk (it requires that folder). Off by default: plain ROxf/RPar.
    """
    name = ctx.info.name
    path = ctx.path(ctx.info.index_file)
    try:
        with open(path, "rb") as f:
            cfg = _GndUnpickler(f).load()
    except _RefusedGlobal as e:
        raise ctx.malformed(path, f"refused: {e}. A revisitop ground-truth file holds only "
                                  "lists, dicts, strings, numbers and numpy arrays; this one "
                                  "would run other code, so it was not loaded. Download it "
                                  "again from the official source") from None
    except Exception as e:  # any unpickling failure means the file is unusable
        raise ctx.malformed(path, f"cannot unpickle ({type(e).__name__}: {e})") from e
    _expect(isinstance(cfg, Mapping)
            and all(isinstance(cfg.get(k), (list, tuple)) for k in ("imlist", "qimlist", "gnd")),
            ctx, path, "expected a dict with lists 'imlist', 'qimlist' and 'gnd'")
    imlist, qimlist, gnd_raw = list(cfg["imlist"]), list(cfg["qimlist"]), list(cfg["gnd"])
    _expect(all(isinstance(s, str) for s in imlist + qimlist), ctx, path,
            "'imlist' and 'qimlist' must hold image names (str, no extension)")
    _expect(len(gnd_raw) == len(qimlist), ctx, path,
            f"'gnd' has {len(gnd_raw)} entries for {len(qimlist)} queries")
    gnd = [_gnd_entry(ctx, path, i, e, len(imlist)) for i, e in enumerate(gnd_raw)]

    jpg = ctx.path(ctx.info.image_dir + "/")
    q_paths = ctx.images([jpg / f"{s}.jpg" for s in qimlist])
    g_paths = ctx.images([jpg / f"{s}.jpg" for s in imlist])
    g_name = f"{name}/gallery"
    if with_distractors:
        r1m = ctx.data_root / "revisitop1m" / "jpg"
        if not r1m.is_dir():
            raise ctx.missing(f"with_distractors=True needs the R1M distractors folder {r1m} "
                              "(revisitop1m/jpg/<subfolder>/<image>)")
        g_paths += sorted(p for sub in sorted(r1m.iterdir()) if sub.is_dir()
                          for p in sub.iterdir() if p.is_file())
        g_name += "+revisitop1m"
    query: Sequence[Path] | list[Image.Image] = q_paths
    q_name = f"{name}/query"
    if crop_queries:
        query = [_crop(p, g["bbx"]) for p, g in zip(q_paths, gnd)]
        q_name += "+bbx-crop"
    classes = [name]  # no classes: relevance is in gnd
    q = ImageDataset(query, np.zeros(len(qimlist), np.int64), classes, name=q_name)
    g = ImageDataset(g_paths, np.zeros(len(g_paths), np.int64), classes, name=g_name)
    return RetrievalData(name, q, g, False, "query", "gallery", ctx.folder, gnd)


# ---------------------------------------------------------------------------------------------
# CoOp-split sets (Cross-the-Gap src/datasets/dassl/*.py, OxfordPets.read_split): test -> train


def _class_names(ctx: ReadContext, path: Path,
                 items: Iterable[tuple[Path, int, str]]) -> list[str]:
    """Label -> name over all splits, ``_`` read as a space (as the official loaders do)."""
    names: dict[int, str] = {}
    for _, label, cname in items:
        cname = cname.replace("_", " ")
        _expect(names.setdefault(label, cname) == cname, ctx, path,
                f"label {label} has two class names: {names[label]!r} and {cname!r}")
    return _dense_class_names(ctx, path, names)


def _coop_items(ctx: ReadContext, path: Path, split: Mapping[str, Any], key: str,
                image_dir: Path) -> list[tuple[Path, int, str]]:
    entries = split[key]
    _expect(isinstance(entries, list), ctx, path, f"{key!r} is not a list")
    out = []
    for i, e in enumerate(entries):
        _expect(isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)
                and isinstance(e[1], int) and not isinstance(e[1], bool)
                and isinstance(e[2], str), ctx, path,
                f"{key}[{i}] must be [impath, label, classname], got {e!r}")
        out.append((image_dir / e[0], e[1], e[2]))
    return out


def read_coop_split(ctx: ReadContext) -> RetrievalData:
    """A CoOp ``split_zhou_*.json`` (``{"train"|"val"|"test": [[impath, label, classname]]}``,
    ``impath`` relative to the image folder): query = test, gallery = train."""
    path, split = ctx.read_json(ctx.info.index_file)
    _expect(isinstance(split, dict) and all(k in split for k in ("train", "val", "test")),
            ctx, path, "expected an object with 'train', 'val' and 'test' lists")
    image_dir = ctx.path(ctx.info.image_dir + "/") if ctx.info.image_dir else ctx.folder
    items = {k: _coop_items(ctx, path, split, k, image_dir) for k in ("train", "val", "test")}
    classes = _class_names(ctx, path, items["train"] + items["val"] + items["test"])
    return _image_pair(ctx, items["test"], items["train"], classes)


def _image_pair(ctx: ReadContext, query: list[tuple[Path, int, str]],
                gallery: list[tuple[Path, int, str]], classes: list[str]) -> RetrievalData:
    name, qs, gs = ctx.info.name, ctx.info.query_split, ctx.info.gallery_split

    def make(items: list[tuple[Path, int, str]], split: str) -> ImageDataset:
        paths = ctx.images([p for p, _, _ in items])
        labels = np.array([y for _, y, _ in items], dtype=np.int64)
        return ImageDataset(paths, labels, classes, name=f"{name}/{split}")

    return RetrievalData(name, make(query, qs), make(gallery, gs), False, qs, gs, ctx.folder)


# ---------------------------------------------------------------------------------------------
# FGVC-Aircraft (Cross-the-Gap src/datasets/dassl/fgvc_aircraft.py): no split json, test -> train


def read_fgvc_aircraft(ctx: ReadContext) -> RetrievalData:
    """``variants.txt`` (one class per line, label = line index) and
    ``images_variant_{train,test}.txt`` (``<image id> <variant>``), images ``images/<id>.jpg``."""
    var_path, text = ctx.read_text("variants.txt")
    variants = [v.strip() for v in text.splitlines() if v.strip()]
    _expect(len(set(variants)) == len(variants), ctx, var_path, "duplicate variant names")
    label_of = {v: i for i, v in enumerate(variants)}
    image_dir = ctx.path(ctx.info.image_dir + "/")

    def items(split: str) -> list[tuple[Path, int, str]]:
        path, rows = ctx.read_fields(f"images_variant_{split}.txt")
        out = []
        for n, (iid, variant) in rows:
            _expect(variant in label_of, ctx, path,
                    f"line {n}: variant {variant!r} is not in variants.txt")
            out.append((image_dir / f"{iid}.jpg", label_of[variant], variant))
        return out

    return _image_pair(ctx, items("test"), items("train"), [v.replace("_", " ") for v in variants])


# ---------------------------------------------------------------------------------------------
# Caption sets: query = first caption of each image, gallery = all its other captions;
# label = index of the source image (IsoCLIP src/datasets/{coco,flickr30k,nocaps}_text.py).


def _caption_pair(ctx: ReadContext, per_image: Sequence[Sequence[str]]) -> RetrievalData:
    q_txt: list[str]
    g_txt: list[str]
    q_txt, q_lab, g_txt, g_lab = [], [], [], []
    for i, caps in enumerate(per_image):
        q_txt += caps[:1]
        q_lab += [i] * len(caps[:1])
        g_txt += caps[1:]
        g_lab += [i] * len(caps[1:])
    name, qs, gs = ctx.info.name, ctx.info.query_split, ctx.info.gallery_split
    query = TextDataset(q_txt, np.array(q_lab, np.int64), name=f"{name}/{qs}")
    gallery = TextDataset(g_txt, np.array(g_lab, np.int64), name=f"{name}/{gs}")
    return RetrievalData(name, query, gallery, False, qs, gs, ctx.folder)


def _grouped(pairs: Iterable[tuple[Any, str]]) -> list[list[str]]:
    """Captions grouped by key, keys and captions in order of first appearance."""
    groups: dict[Any, list[str]] = {}
    for key, caption in pairs:
        groups.setdefault(key, []).append(caption)
    return list(groups.values())


def read_coco_karpathy(ctx: ReadContext) -> RetrievalData:
    """Karpathy-format ``dataset_coco_light.json`` (``images[].split``,
    ``images[].sentences[].raw``): the images of the ``test`` split."""
    path, data = ctx.read_json(ctx.info.index_file)
    _expect(isinstance(data, dict) and isinstance(data.get("images"), list), ctx, path,
            "expected an object with an 'images' list (Karpathy format)")
    split = ctx.info.query_split.split("_")[0]
    per_image = []
    for i, im in enumerate(data["images"]):
        _expect(isinstance(im, dict) and isinstance(im.get("split"), str)
                and isinstance(im.get("sentences"), list), ctx, path,
                f"images[{i}] needs 'split' and a 'sentences' list")
        if im["split"] != split:
            continue
        sents = im["sentences"]
        _expect(all(isinstance(s, dict) and isinstance(s.get("raw"), str) for s in sents),
                ctx, path, f"images[{i}].sentences[] need a 'raw' caption")
        per_image.append([s["raw"] for s in sents])
    _expect(bool(per_image), ctx, path, f"no image has split {split!r}")
    return _caption_pair(ctx, per_image)


def read_flickr30k_csv(ctx: ReadContext) -> RetrievalData:
    """``results.csv`` (``image_name| comment_number| comment``, ``|``-separated, one row per
    caption) restricted to the image names (no ``.jpg``) listed in ``karpathy_val.txt``."""
    split = ctx.info.query_split.split("_")[0]
    split_path, text = ctx.read_text(f"karpathy_{split}.txt")
    keep = {s.strip() for s in text.splitlines() if s.strip()}
    _expect(bool(keep), ctx, split_path, "no image names")
    path = ctx.path("results.csv")
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="|"))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ctx.malformed(path, str(e)) from e
    header = [h.strip() for h in rows[0]] if rows else []
    _expect(header == ["image_name", "comment_number", "comment"], ctx, path,
            f"header must be 'image_name| comment_number| comment', got {rows[:1]!r}")
    pairs = []
    for n, row in enumerate(rows[1:], 2):
        if not row or row[0].strip().removesuffix(".jpg") not in keep:
            continue
        _expect(len(row) == 3, ctx, path, f"line {n}: expected 3 '|'-separated fields, got "
                                          f"{'|'.join(row)!r}")
        pairs.append((row[0].strip(), row[2].strip()))
    _expect(bool(pairs), ctx, path, f"no caption of an image listed in {split_path.name}")
    return _caption_pair(ctx, _grouped(pairs))


def read_nocaps_json(ctx: ReadContext) -> RetrievalData:
    """``nocaps_val_4500_captions.json``: ``annotations[]`` with ``image_id`` and ``caption``,
    grouped by image in order of first appearance."""
    path, data = ctx.read_json(ctx.info.index_file)
    _expect(isinstance(data, dict) and isinstance(data.get("annotations"), list), ctx, path,
            "expected an object with an 'annotations' list")
    anns = data["annotations"]
    _expect(bool(anns), ctx, path, "'annotations' is empty")
    for i, a in enumerate(anns):
        _expect(isinstance(a, dict) and "image_id" in a and isinstance(a.get("caption"), str),
                ctx, path, f"annotations[{i}] needs 'image_id' and a 'caption' string")
    return _caption_pair(ctx, _grouped((a["image_id"], a["caption"]) for a in anns))


#: The reader of each layout (all take the context; ``read_revisited`` also its options).
READERS: dict[Layout, Callable[..., RetrievalData]] = {
    "cub": read_cub,
    "revisited": read_revisited,
    "coop_split": read_coop_split,
    "fgvc_aircraft": read_fgvc_aircraft,
    "coco_karpathy": read_coco_karpathy,
    "flickr30k_csv": read_flickr30k_csv,
    "nocaps_json": read_nocaps_json,
}
