"""Evaluation sets of the embedded models, registered beside the paper's datasets.

IsoCLIP evaluates one CLIP trained on everything on fine-grained datasets: CUB holds birds
only, Cars cars only, and relevance is the species or the model inside that domain (the
paper's retrieval tables, Sec. 5). The embedded default has the same structure once its world
is cut the same way, so each cut is a small dataset of its own, named like ``cub2011`` and
accepted wherever a chapter takes a ``datasets`` list:

* ``synthetic/world``: the whole synthetic world, query images -> gallery images (text:
  held-out-template captions -> held-out-template captions), relevance = class
  (shape, colour): the book's protocol before the suite existed.
* ``synthetic/shape=<shape>``: the items of one shape; relevance = their colour.
* ``synthetic/colour=<colour>``: the items of one colour; relevance = their shape.

A set is a :class:`~isoclip.data.paper_datasets.RetrievalData` whose query and gallery are
row subsets of the world's splits (same pixels, same captions, same labels; a label still
names the full class) and whose ``calibration`` holds the training pairs of the same domain
(unlabelled image-caption pairs for the agreement rule, drawn from the model's own training
data and never from the evaluation splits).

Suites are names that expand to several sets (:func:`expand_datasets`):

* ``synthetic-shapes``, ``synthetic-colours``: one set per shape / per colour;
* ``synthetic-fine-grained``: both families (the average the chapters report, as the paper
  averages over its fine-grained datasets);
* ``synthetic``: ``synthetic/world`` followed by ``synthetic-fine-grained``.

The emoji model's sets (:mod:`isoclip.data.emoji`; relevance = Unicode subcategory):

* ``emoji/all``: every emoji, query renderings -> gallery renderings (text: one held-out
  caption of each emoji -> another);
* ``emoji/category=<slug>``: the emoji of one Unicode category (``animals-nature``,
  ``food-drink``, ``objects``, ...);
* ``emoji/cross-style``: image→image only, the query renderings in the model's artwork (Noto)
  against the gallery renderings drawn in the other one (Twemoji, same augmentation draws:
  :func:`isoclip.data.emoji.load_cross_style`); a whole-set row of its own, in no suite (its
  gallery is not a part of ``emoji/all``'s, so the chapters that slice ``emoji/all``'s features
  ask for it by name). Text→text does not depend on the artwork: the set has no text side;
* suites ``emoji-fine-grained`` (the categories whose largest subcategory holds at most half
  of them: not ``flags``, where a random ranking already scores about 90 mAP) and ``emoji``
  (``emoji/all`` followed by them).

Names depend on the world's configuration only through its shapes and colours: every world
has ``synthetic/world``, and ``synthetic/shape=circle`` exists in a world that has circles.
The emoji sets depend on the package's categories.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isoclip.common.types import Modality, check_modality
from isoclip.data.base import ImageDataset, TextDataset
from isoclip.data.paper_datasets import RetrievalData
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import SyntheticWorld, make_world

__all__ = ["CROSS_STYLE", "STYLE_FACET", "SUITES", "EmbeddedSet", "embedded_set", "embedded_sets", "expand_datasets",
           "is_embedded", "load_embedded_set", "register_family", "rows_in_whole", "set_rows",
           "suite_members", "whole_set"]

#: The emoji model's cross-style set and its facet (the artwork of the gallery).
CROSS_STYLE, STYLE_FACET = "emoji/cross-style", "style"

#: Facets of the synthetic world: the ``world.classes`` position held fixed, and what is left
#: to be relevant inside the set.
_SYNTHETIC_FACETS: dict[str, tuple[int, str]] = {"shape": (0, "colour"), "colour": (1, "shape")}


@dataclass(frozen=True)
class EmbeddedSet:
    """One registered evaluation set of an embedded model.

    Attributes:
        name: registry name, e.g. ``"synthetic/shape=circle"``.
        family: the embedded data it is cut from: ``"synthetic"`` (the default model's world)
            or ``"emoji"`` (the emoji model's images and names).
        facet: what is held fixed (``"shape"``, ``"colour"``, ``"category"``), or ``""`` for
            a whole set (``synthetic/world``).
        value: the fixed value (``"circle"``), ``""`` for a whole set.
        relevance: what makes two items relevant inside the set (``"colour"``, ...).
        fine_grained: one domain of the data (the analogue of CUB's birds), as opposed to
            the whole set.
        modalities: the tasks the set has (``emoji/cross-style``: images only).
    """

    name: str
    family: str
    facet: str
    value: str
    relevance: str
    fine_grained: bool
    modalities: tuple[str, ...] = ("image", "text")

    @property
    def label(self) -> str:
        """Short row label for tables: ``"shape = circle"``, ``"whole world"``."""
        return f"{self.facet} = {self.value}" if self.facet else "whole " + (
            "world" if self.family == "synthetic" else "set")


def _synthetic_sets(world: WorldConfig) -> list[EmbeddedSet]:
    out = [EmbeddedSet("synthetic/world", "synthetic", "", "", "class (shape, colour)", False)]
    for facet, (_, relevance) in _SYNTHETIC_FACETS.items():
        values = world.shapes if facet == "shape" else world.colours
        out += [EmbeddedSet(f"synthetic/{facet}={v}", "synthetic", facet, v, relevance, True)
                for v in values]
    return out


#: Suite name -> (family, predicate on a set, description).
SUITES: dict[str, tuple[str, Callable[[EmbeddedSet], bool], str]] = {
    "synthetic": ("synthetic", lambda s: True,
                  "synthetic/world then every fine-grained slice of the world"),
    "synthetic-fine-grained": ("synthetic", lambda s: s.fine_grained,
                               ("one set per shape (relevance = colour) and per colour "
                                "(relevance = shape)")),
    "synthetic-shapes": ("synthetic", lambda s: s.facet == "shape",
                         "one set per shape (relevance = colour)"),
    "synthetic-colours": ("synthetic", lambda s: s.facet == "colour",
                          "one set per colour (relevance = shape)"),
    "emoji": ("emoji", lambda s: s.facet == "" or s.fine_grained,
              "emoji/all then every fine-grained category (not emoji/cross-style)"),
    "emoji-fine-grained": ("emoji", lambda s: s.fine_grained,
                           "one set per Unicode category (relevance = subcategory)"),
}

#: Loaders and set lists of each family (the emoji family registers itself here).
_FAMILIES: dict[str, tuple[Callable[..., list[EmbeddedSet]], Callable[..., RetrievalData]]] = {}


def _family_of(name: str) -> str | None:
    head = name.split("/", 1)[0]
    return head if "/" in name and head in _FAMILIES else None


def embedded_sets(family: str | None = None, *, world: WorldConfig | None = None,
                  emoji: Any = None) -> list[EmbeddedSet]:
    """The registered embedded sets (of one ``family``, or all), in table order.

    Args:
        family: ``"synthetic"``, ``"emoji"`` or None (all; the emoji sets only when their
            data are present, see :mod:`isoclip.data.emoji`).
        world: the synthetic world's configuration (default: the book's).
        emoji: the emoji data's configuration (default: the book's).

    Raises:
        ValueError: unknown family.
    """
    if family is not None and family not in _FAMILIES:
        raise ValueError(f"family: expected one of {sorted(_FAMILIES)} or None, got {family!r}")
    out: list[EmbeddedSet] = []
    for fam, (lister, _) in _FAMILIES.items():
        if family is None or fam == family:
            out += lister(world=world, emoji=emoji, strict=family is not None)
    return out


def is_embedded(name: str) -> bool:
    """Whether ``name`` is an embedded set or suite name (``"synthetic/..."``, ``"emoji/..."``,
    or a key of :data:`SUITES`), whatever the configuration."""
    return name in SUITES or _family_of(name) is not None


def embedded_set(name: str, *, world: WorldConfig | None = None, emoji: Any = None
                 ) -> EmbeddedSet:
    """The registry entry of embedded set ``name``.

    Raises:
        ValueError: not a registered set of this configuration (the message lists them).
    """
    fam = _family_of(name)
    if fam is None:
        raise ValueError(f"dataset {name!r}: not an embedded set (names start with "
                         f"{', '.join(f'{f}/' for f in _FAMILIES)})")
    sets = embedded_sets(fam, world=world, emoji=emoji)
    for s in sets:
        if s.name == name:
            return s
    raise ValueError(f"dataset {name!r}: no such {fam} set in this configuration; registered: "
                     f"{', '.join(s.name for s in sets)}")


def suite_members(suite: str, *, world: WorldConfig | None = None, emoji: Any = None
                  ) -> list[str]:
    """The set names a suite expands to (see :data:`SUITES`).

    Raises:
        ValueError: unknown suite (the message lists them).
    """
    if suite not in SUITES:
        raise ValueError(f"suite {suite!r}: unknown; suites: {', '.join(SUITES)}")
    family, keep, _ = SUITES[suite]
    return [s.name for s in embedded_sets(family, world=world, emoji=emoji) if keep(s)]


def expand_datasets(names: str | Iterable[str], *, world: WorldConfig | None = None,
                    emoji: Any = None, known: Callable[[str], bool] | None = None) -> list[str]:
    """A chapter's ``datasets`` list with every suite replaced by its sets, in order, without
    repeats. Set names and other names (e.g. the paper's ``"cub2011"``) pass through.

    Args:
        names: one name or a list of names.
        world, emoji: configurations of the embedded data (their sets depend on them).
        known: if given, every name that is neither a suite nor an embedded set must satisfy
            it (the registry passes its paper-dataset check).

    Raises:
        ValueError: an empty list, an embedded set that this configuration lacks, or a name
            ``known`` rejects.
        TypeError: a non-string entry.
    """
    items = [names] if isinstance(names, str) else list(names)
    if not items:
        raise ValueError("datasets: expected at least one dataset or suite name, got none")
    out: list[str] = []
    for n in items:
        if not isinstance(n, str):
            raise TypeError(f"datasets: expected names (str), got {type(n).__name__} {n!r}")
        if n in SUITES:
            expanded = suite_members(n, world=world, emoji=emoji)
        elif _family_of(n) is not None:
            expanded = [embedded_set(n, world=world, emoji=emoji).name]
        else:
            if known is not None and not known(n):
                raise ValueError(f"datasets: unknown name {n!r}")
            expanded = [n]
        out += [e for e in expanded if e not in out]
    return out


def load_embedded_set(name: str, modality: Modality = "image", *,
                      world: WorldConfig | None = None, emoji: Any = None) -> RetrievalData:
    """The query and gallery of embedded set ``name`` for ``modality`` retrieval.

    Args:
        name: a set name (see :func:`embedded_sets`), not a suite.
        modality: ``"image"`` (images -> images) or ``"text"`` (captions -> captions).
        world, emoji: configurations of the embedded data.

    Returns:
        A :class:`RetrievalData`: query and gallery (query -> gallery, never the same split),
        relevance = same label, and ``calibration`` = the domain's training pairs.

    Raises:
        ValueError: a suite name (expand it first), an unknown set, a bad ``modality``, or
            a task the set does not have (``emoji/cross-style`` is image→image only).
    """
    check_modality("modality", modality)
    if name in SUITES:
        raise ValueError(f"dataset {name!r} is a suite of several sets; expand it with "
                         "expand_datasets() and load each set")
    info = embedded_set(name, world=world, emoji=emoji)
    if modality not in info.modalities:
        why = ("; text→text does not depend on the artwork (see emoji/all)"
               if info.facet == STYLE_FACET else "")
        raise ValueError(f"dataset {name!r}: no {modality} side (its tasks: "
                         f"{', '.join(info.modalities)}){why}")
    return _FAMILIES[info.family][1](info, modality, world=world, emoji=emoji)


# ---------------------------------------------------------------------------------------------
# the synthetic family


def _slice_rows(world: SyntheticWorld, labels: np.ndarray | None, facet: str, value: str
                ) -> np.ndarray:
    if labels is None:
        raise ValueError(f"a {facet} slice needs the class of every item (labels is None)")
    factor = _SYNTHETIC_FACETS[facet][0]
    keep = np.array([c[factor] == value for c in world.classes])
    return np.flatnonzero(keep[np.asarray(labels)])


def _split(ds: ImageDataset | TextDataset, world: SyntheticWorld, info: EmbeddedSet
           ) -> Any:
    if not info.facet:
        return ds
    rows = _slice_rows(world, ds.labels, info.facet, info.value)
    return ds.subset(rows, f"{ds.name}[{info.facet}={info.value}]")


def _load_synthetic(info: EmbeddedSet, modality: Modality, *, world: WorldConfig | None = None,
                    **_: Any) -> RetrievalData:
    w = make_world(WorldConfig() if world is None else world)
    q, g = (w.query, w.gallery) if modality == "image" else (w.text_query, w.text_gallery)
    return RetrievalData(
        name=info.name, query=_split(q, w, info), gallery=_split(g, w, info), same_split=False,
        query_split="query" if modality == "image" else "text_query",
        gallery_split="gallery" if modality == "image" else "text_gallery", folder=Path("."),
        calibration=_split(w.train, w, info))


def _list_synthetic(*, world: WorldConfig | None = None, **_: Any) -> list[EmbeddedSet]:
    return _synthetic_sets(WorldConfig() if world is None else world)


def register_family(family: str, lister: Callable[..., list[EmbeddedSet]],
                    loader: Callable[..., RetrievalData]) -> None:
    """Register the sets of an embedded ``family`` (names ``"<family>/..."``).

    ``lister(world=..., emoji=..., strict=...)`` returns its sets (``strict``: raise when its
    data are absent instead of returning none); ``loader(info, modality, world=...,
    emoji=...)`` loads one.
    """
    _FAMILIES[family] = (lister, loader)


register_family("synthetic", _list_synthetic, _load_synthetic)


# ---------------------------------------------------------------------------------------------
# the emoji family


def _list_emoji(*, emoji: Any = None, strict: bool = True, **_: Any) -> list[EmbeddedSet]:
    from isoclip.data import emoji as em

    cfg = em.EmojiConfig() if emoji is None else emoji
    try:
        cat, _sha = em.read_catalogue(cfg.folder, cfg.style)
    except em.EmojiDataNotFoundError:
        if strict:
            raise
        return []
    out = [EmbeddedSet("emoji/all", "emoji", "", "", "subcategory", False)]
    for c in dict.fromkeys(e.category for e in cat):
        out.append(EmbeddedSet(f"emoji/category={em.category_slug(c)}", "emoji", "category", c,
                               "subcategory",
                               em.dominant_share(cat, c) <= em.MAX_DOMINANT_SHARE))
    styles = f"{em.ARTWORK_NAMES[cfg.style]} → {em.ARTWORK_NAMES[em.other_style(cfg.style)]}"
    out.append(EmbeddedSet(CROSS_STYLE, "emoji", STYLE_FACET, styles, "subcategory", False,
                           modalities=("image",)))
    return out


def _load_emoji(info: EmbeddedSet, modality: Modality, *, emoji: Any = None, **_: Any
                ) -> RetrievalData:
    from isoclip.data import emoji as em

    data = em.load_emoji(emoji)
    if info.facet == STYLE_FACET:
        cross = em.load_cross_style(emoji)
        return RetrievalData(
            name=info.name, query=cross.query, gallery=cross.gallery, same_split=False,
            query_split="query", gallery_split=f"gallery ({cross.gallery_style})",
            folder=data.config.folder, calibration=data.train)
    splits = ("query", "gallery") if modality == "image" else ("text_query", "text_gallery")
    parts = {}
    for split in (*splits, "train"):
        ds = getattr(data, split)
        parts[split] = ds if not info.facet else ds.subset(
            data.category_rows(split, info.value), f"{ds.name}[category={info.value}]")
    return RetrievalData(
        name=info.name, query=parts[splits[0]], gallery=parts[splits[1]], same_split=False,
        query_split=splits[0], gallery_split=splits[1], folder=data.config.folder,
        calibration=parts["train"])


register_family("emoji", _list_emoji, _load_emoji)


def set_rows(names: Sequence[str], *, world: WorldConfig | None = None, emoji: Any = None
             ) -> list[EmbeddedSet]:
    """The registry entries of several embedded set names (table rows), in order."""
    return [embedded_set(n, world=world, emoji=emoji) for n in names]


#: The whole set of each family (the set every slice is cut from).
_WHOLE = {"synthetic": "synthetic/world", "emoji": "emoji/all"}


def whole_set(name: str) -> str:
    """The whole set an embedded set is cut from (``synthetic/world``, ``emoji/all``); the
    name itself for a whole set or a paper dataset. ``emoji/cross-style``'s is ``emoji/all``:
    its queries (and their OTI inversions) are ``emoji/all``'s, its gallery is its own."""
    fam = _family_of(name)
    return _WHOLE.get(fam, name) if fam is not None else name


def rows_in_whole(name: str, modality: Modality = "image", *, world: WorldConfig | None = None,
                  emoji: Any = None) -> dict[str, np.ndarray]:
    """Where the rows of set ``name`` sit in its whole set (:func:`whole_set`): ``"query"``,
    ``"gallery"``, ``"calibration"`` -> int64 row indices into the whole set's query, gallery
    and calibration containers (``arange`` for the whole set itself), so that features
    extracted once for the whole set serve every slice. A set with a gallery of its own
    (``emoji/cross-style``: another artwork) has no ``"gallery"`` key.

    Raises:
        ValueError: not an embedded set.
    """
    info = embedded_set(name, world=world, emoji=emoji)
    if info.family == "synthetic":
        w = make_world(WorldConfig() if world is None else world)
        q, g = (w.query, w.gallery) if modality == "image" else (w.text_query, w.text_gallery)
        parts = {"query": q, "gallery": g, "calibration": w.train}
        if not info.facet:
            return {k: np.arange(len(v)) for k, v in parts.items()}
        return {k: _slice_rows(w, v.labels, info.facet, info.value) for k, v in parts.items()}
    from isoclip.data import emoji as em

    data = em.load_emoji(emoji)
    splits = ("query", "gallery") if modality == "image" else ("text_query", "text_gallery")
    names = dict(zip(("query", "gallery", "calibration"), (*splits, "train")))
    if info.facet == STYLE_FACET:
        load_embedded_set(name, modality, emoji=emoji)  # the modality check
        return {"query": em.load_cross_style(emoji).rows.copy(),
                "calibration": np.arange(len(data.train))}
    if not info.facet:
        return {k: np.arange(len(getattr(data, v))) for k, v in names.items()}
    return {k: data.category_rows(v, info.value) for k, v in names.items()}
