"""Emoji: real images with real names, the data of the book's second embedded model.

The npm package ``emoji-datasource-<style>`` (iamcal/emoji-data, version
:data:`EMOJI_VERSION`) holds ``emoji.json`` (for each emoji its Unicode name, short names,
Unicode category and subcategory) and one 64 px PNG per emoji under ``img/<style>/64/``.
The images are Google's Noto Color Emoji (``google``, Apache-2.0) or Twitter's Twemoji
(``twitter``, CC-BY 4.0); the package's own code and JSON are MIT. ``make emoji-data`` fetches
them with ``npm pack`` into ``$ISOCLIP_DATA`` (default ``~/.cache/isoclip/data``), keeping only
``emoji.json`` and the 64 px images, outside the repository. Nothing is downloaded from
Python: :func:`load_emoji` reads that folder and raises :class:`EmojiDataNotFoundError`
(naming the npm package and the folder) when it is absent.

Which emoji: every entry with an image in the style, except the obsolete ones
(``obsoleted_by``: gendered duplicates kept by Unicode for compatibility) and the
``Component`` category (skin-tone swatches, not emoji of their own): 1,870 emoji in
version 16.0.0. Skin-tone variants are not used.

Images are rendered at the tiny model's resolution (:attr:`EmojiConfig.image_size`, 32 px)
with augmentation: the emoji's side is a random fraction of the image
(:attr:`EmojiConfig.scale`), its position is random inside the image, and the background is a
random colour blended with a second one along a random direction. Never flipped or rotated:
an arrow's direction is its meaning. Every split has its own random streams
``np.random.default_rng([seed, split_id, purpose])``, so the same configuration gives the
same bytes.

Captions: the emoji's Unicode name in lower case (``"grinning face with smiling eyes"``,
``"vatican city flag"``) or, with probability :data:`SHORT_NAME_PROB`, its first short name
with ``_`` and ``-`` read as spaces (``"sweat drops"``), inside a training template
(:data:`TRAIN_TEMPLATES`). The text→text sets use :data:`HELDOUT_TEMPLATES`, which no training
caption uses.

Splits (:class:`EmojiData`): ``train`` (:attr:`EmojiConfig.n_train_per_emoji` augmented
renderings of every emoji, one caption each), ``query`` and ``gallery`` (one rendering of
every emoji each, different draws), ``text_query`` and ``text_gallery`` (one held-out-template
caption of every emoji each, different templates). Labels are the Unicode subcategory: two
emoji are relevant to each other when they share it (``animal-bird``, ``food-fruit``, ...).

Cross-style (:func:`load_cross_style`): the query split in the model's artwork against the
gallery split drawn in the other one (Noto queries, Twemoji gallery), with the gallery's own
random stream, so that each gallery image differs from the same-style gallery image only by
its artwork. An emoji without an image in the other style is dropped from both sides, and
:attr:`CrossStyle.dropped` names it (none in version 16.0.0).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from isoclip.common.cache import cache_root, file_sha256, stable_hash
from isoclip.data.base import ImageDataset, TextDataset

__all__ = ["ARTWORK_NAMES", "EMOJI_STYLES", "EMOJI_VERSION", "HELDOUT_TEMPLATES",
           "TRAIN_TEMPLATES", "CrossStyle", "Emoji", "EmojiConfig", "EmojiData",
           "EmojiDataNotFoundError", "category_slug", "data_dir", "dominant_share",
           "emoji_folder", "load_cross_style", "load_emoji", "other_style", "read_catalogue"]

#: Version of the npm packages the book is built with (``make emoji-data``).
EMOJI_VERSION = "16.0.0"
#: Artwork styles and their licences (the images; emoji.json is MIT).
EMOJI_STYLES: dict[str, str] = {"google": "Apache-2.0 (Noto Color Emoji)",
                                "twitter": "CC-BY 4.0 (Twemoji)"}
#: Short name of each style's artwork (tables, captions).
ARTWORK_NAMES: dict[str, str] = {"google": "Noto", "twitter": "Twemoji"}
#: Version of this module's output for a given configuration and package; part of every name.
RENDER_VERSION = 1

#: Training caption templates (``{name}``: the emoji's name).
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{name}", "an emoji of {name}", "the {name} emoji", "a {name} icon", "a picture of {name}",
    "{name} emoji", "an icon showing {name}",
)
#: Held-out templates: only the text→text evaluation captions use them.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "a drawing of {name}", "the symbol for {name}", "a small image of {name}",
    "{name}, drawn as a sticker", "a cartoon of {name}",
)
#: Zero-shot prompt templates (the training templates: a name test, not a template test).
ZERO_SHOT_TEMPLATES: tuple[str, ...] = ("an emoji of {name}", "{name}")
#: Probability that a training caption uses the emoji's short name instead of its name.
SHORT_NAME_PROB = 0.25

_SPLIT_IDS = {"train": 0, "query": 1, "gallery": 2, "text": 3}
_STREAM_LAYOUT, _STREAM_CAPTIONS = 0, 1
_EXCLUDED_CATEGORIES = ("Component",)


class EmojiDataNotFoundError(FileNotFoundError):
    """The emoji package (or one of its images) is not where the loader looks."""


def data_dir() -> Path:
    """Folder holding the fetched npm packages: ``$ISOCLIP_DATA`` or ``<cache root>/data``."""
    env = os.environ.get("ISOCLIP_DATA")
    return Path(env).expanduser() if env else cache_root() / "data"


def emoji_folder(style: str = "google", root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/emoji-datasource-<style>`` (``root`` default: :func:`data_dir`)."""
    if style not in EMOJI_STYLES:
        raise ValueError(f"style: expected one of {list(EMOJI_STYLES)}, got {style!r}")
    return (data_dir() if root is None else Path(root).expanduser()) / f"emoji-datasource-{style}"


def _missing(folder: Path, style: str, problem: str) -> EmojiDataNotFoundError:
    return EmojiDataNotFoundError(
        f"emoji data ({style}): {problem}\nExpected the npm package emoji-datasource-{style}@"
        f"{EMOJI_VERSION} (images {EMOJI_STYLES[style]}) in {folder}/ with emoji.json and "
        f"img/{style}/64/<code>.png. Fetch it with `make emoji-data` (npm pack "
        f"emoji-datasource-{style}@{EMOJI_VERSION}; its package/ folder extracted to {folder}), "
        "or point ISOCLIP_DATA / EmojiConfig.root at the folder that holds it.")


def category_slug(category: str) -> str:
    """``"Animals & Nature"`` -> ``"animals-nature"`` (the set names' spelling)."""
    return "-".join(w for w in category.lower().replace("&", " ").split())


@dataclass(frozen=True)
class Emoji:
    """One emoji of the catalogue.

    Attributes:
        code: the image's file stem (``"1f600"``).
        name: Unicode name in lower case.
        short_name: first short name with ``_``/``-`` as spaces.
        category, subcategory: Unicode emoji group and subgroup.
    """

    code: str
    name: str
    short_name: str
    category: str
    subcategory: str


def read_catalogue(folder: Path, style: str) -> tuple[list[Emoji], str]:
    """The emoji of ``folder/emoji.json`` with an image in ``style``, without the obsolete
    ones and the ``Component`` category, in the file's ``sort_order``; and the file's sha256.

    Raises:
        EmojiDataNotFoundError: no folder or no emoji.json (names the npm package).
        ValueError: emoji.json is not the package's list of entries.
    """
    path = folder / "emoji.json"
    if not path.is_file():
        raise _missing(folder, style, f"no {path}")
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not the emoji-datasource JSON ({e})") from e
    keys = ("name", "image", "short_names", "category", "subcategory", "sort_order")
    if not isinstance(entries, list) or any(
            not isinstance(e, dict) or any(k not in e for k in keys) for e in entries):
        raise ValueError(f"{path}: expected a list of entries with keys {list(keys)}")
    out = []
    for entry in sorted(entries, key=lambda e: e["sort_order"]):
        if entry.get("obsoleted_by") or entry["category"] in _EXCLUDED_CATEGORIES \
                or not entry.get(f"has_img_{style}", False):
            continue
        short = str(entry["short_names"][0] if entry["short_names"] else entry["name"])
        out.append(Emoji(code=Path(entry["image"]).stem, name=str(entry["name"]).lower(),
                         short_name=short.replace("_", " ").replace("-", " ").lower(),
                         category=str(entry["category"]), subcategory=str(entry["subcategory"])))
    if not out:
        raise ValueError(f"{path}: no usable emoji with an image in style {style!r}")
    return out, file_sha256(path)


@dataclass(frozen=True)
class EmojiConfig:
    """Everything that determines the emoji data (hashable: a memo key).

    Attributes:
        style: artwork, ``"google"`` (Noto) or ``"twitter"`` (Twemoji).
        root: folder holding ``emoji-datasource-<style>/`` (None: :func:`data_dir`); not
            part of the data's names (the bytes are).
        image_size: side of the rendered images in pixels (the tiny model's 32).
        n_train_per_emoji: augmented training renderings (and captions) per emoji.
        scale: range of the emoji's side as a fraction of ``image_size``.
        seed: seed of every split's random streams.
    """

    style: str = "google"
    root: str | None = None
    image_size: int = 32
    n_train_per_emoji: int = 8
    scale: tuple[float, float] = (0.55, 0.95)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.style not in EMOJI_STYLES:
            raise ValueError(f"EmojiConfig.style: expected one of {list(EMOJI_STYLES)}, got "
                             f"{self.style!r}")
        for name, lo in (("image_size", 8), ("n_train_per_emoji", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"EmojiConfig.{name}: expected an int >= {lo}, got {v!r}")
        scale = tuple(float(x) for x in self.scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"EmojiConfig.scale: expected (lo, hi) with 0 < lo <= hi <= 1, "
                             f"got {self.scale!r}")
        object.__setattr__(self, "scale", scale)

    @property
    def folder(self) -> Path:
        return emoji_folder(self.style, self.root)


@dataclass
class EmojiData:
    """The rendered emoji data of one configuration (the synthetic world's counterpart: the
    same split attributes, so every study helper takes either).

    Attributes:
        config: its configuration.
        emoji: the catalogue (row ``i`` of ``emoji_of[split]`` indexes it).
        class_names: the subcategories (labels of every split index them).
        categories: category of each subcategory, same order.
        train, query, gallery: images [N, S, S, 3] uint8 with captions; labels = subcategory.
        text_query, text_gallery: held-out-template captions; labels = subcategory.
        emoji_of: split name -> [N] int64 index into ``emoji`` of each row.
        name_prompts: zero-shot prompts per emoji (:data:`ZERO_SHOT_TEMPLATES`): naming an
            image among every emoji name (labels: ``emoji_of``).
        prompts: None: the labels (subcategories) have no prompts of their own.
    """

    config: EmojiConfig
    emoji: list[Emoji]
    class_names: list[str]
    categories: list[str]
    train: ImageDataset
    query: ImageDataset
    gallery: ImageDataset
    text_query: TextDataset
    text_gallery: TextDataset
    emoji_of: dict[str, np.ndarray]
    name_prompts: list[list[str]]
    prompts: None = None

    def category_rows(self, split: str, category: str) -> np.ndarray:
        """[n] rows of ``split`` whose emoji is in ``category`` (its slug or its name)."""
        idx = self.emoji_of[split]
        cats = np.array([category in (e.category, category_slug(e.category)) for e in self.emoji])
        return np.flatnonzero(cats[idx])


def _load_sprite(folder: Path, style: str, e: Emoji) -> Image.Image:
    """The emoji's 64 px image with premultiplied alpha (PIL mode ``RGBa``)."""
    path = folder / "img" / style / "64" / f"{e.code}.png"
    if not path.is_file():
        raise _missing(folder, style, f"emoji {e.name!r} ({e.code}): missing image {path}")
    with Image.open(path) as im:
        return im.convert("RGBA").convert("RGBa")


def _render(cfg: EmojiConfig, sprites: Sequence[Image.Image] | Mapping[int, Image.Image],
            which: np.ndarray, split_id: int, keep: np.ndarray | None = None) -> np.ndarray:
    """uint8 [n, S, S, 3]: emoji ``which`` [n] drawn with the split's augmentation stream
    (``sprites[k]``: the image of emoji ``k``). ``keep`` [m]: draw only these rows of
    ``which``, each with the stream's draws of its row (the same size, position and background
    as in the full rendering), giving [m, S, S, 3]."""
    rng = np.random.default_rng([cfg.seed, split_id, _STREAM_LAYOUT])
    u = rng.uniform(size=(len(which), 11))
    if keep is not None:
        u, which = u[keep], which[keep]
    n, size = len(which), cfg.image_size
    side = np.rint(size * (cfg.scale[0] + u[:, 0] * (cfg.scale[1] - cfg.scale[0]))).astype(int)
    side = np.clip(side, 1, size)
    x0 = np.floor(u[:, 1] * (size - side + 1)).astype(int)
    y0 = np.floor(u[:, 2] * (size - side + 1)).astype(int)
    c1, c2 = u[:, 3:6], u[:, 6:9]  # two background colours (RGB in [0, 1])
    theta = 2 * np.pi * u[:, 9]
    blend = u[:, 10]  # 0: plain c1; 1: full gradient to c2
    grid = ((np.arange(size) + 0.5) / size - 0.5).astype(np.float32)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    resized: dict[tuple[int, int], np.ndarray] = {}
    for lo in range(0, n, 512):
        sl = slice(lo, min(lo + 512, n))
        cos, sin = np.cos(theta[sl])[:, None, None], np.sin(theta[sl])[:, None, None]
        t = np.clip(0.5 + cos * grid[None, None, :] + sin * grid[None, :, None], 0, 1)
        t = (blend[sl, None, None] * t)[..., None]
        bg = (c1[sl, None, None] * (1 - t) + c2[sl, None, None] * t).astype(np.float32)
        for j, i in enumerate(range(sl.start, sl.stop)):
            key = (int(which[i]), int(side[i]))
            if key not in resized:  # premultiplied (RGBa): resampling never bleeds colour
                resized[key] = np.asarray(sprites[key[0]].resize((key[1], key[1]),
                                                                 Image.Resampling.LANCZOS),
                                          dtype=np.float32) / 255.0
            sp = resized[key]
            ys, xs = slice(y0[i], y0[i] + side[i]), slice(x0[i], x0[i] + side[i])
            bg[j, ys, xs] = bg[j, ys, xs] * (1 - sp[..., 3:4]) + sp[..., :3]
        out[sl] = np.rint(np.clip(bg, 0, 1) * 255).astype(np.uint8)
    return out


def _captions(cfg: EmojiConfig, emoji: list[Emoji], which: np.ndarray, split_id: int
              ) -> list[str]:
    rng = np.random.default_rng([cfg.seed, split_id, _STREAM_CAPTIONS])
    u_tpl, u_short = rng.uniform(size=(2, len(which)))
    out = []
    for i, k in enumerate(which.tolist()):
        e = emoji[k]
        name = e.short_name if u_short[i] < SHORT_NAME_PROB else e.name
        out.append(TRAIN_TEMPLATES[int(u_tpl[i] * len(TRAIN_TEMPLATES))].format(name=name))
    return out


def _text_splits(cfg: EmojiConfig, emoji: list[Emoji], labels: np.ndarray, prefix: str
                 ) -> tuple[TextDataset, TextDataset]:
    """Per emoji two distinct held-out templates (seeded): the first for the query caption,
    the second for the gallery caption."""
    rng = np.random.default_rng([cfg.seed, _SPLIT_IDS["text"]])
    pairs = np.stack([rng.permutation(len(HELDOUT_TEMPLATES))[:2] for _ in emoji])
    q = [HELDOUT_TEMPLATES[a].format(name=e.name) for e, (a, _) in zip(emoji, pairs)]
    g = [HELDOUT_TEMPLATES[b].format(name=e.name) for e, (_, b) in zip(emoji, pairs)]
    return (TextDataset(q, labels, f"{prefix}/text_query"),
            TextDataset(g, labels, f"{prefix}/text_gallery"))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _build(cfg: EmojiConfig) -> EmojiData:
    folder = cfg.folder
    if not folder.is_dir():
        raise _missing(folder, cfg.style, f"no folder {folder}")
    emoji, sha = read_catalogue(folder, cfg.style)
    sprites = [_load_sprite(folder, cfg.style, e) for e in emoji]
    subcats = list(dict.fromkeys(e.subcategory for e in emoji))
    categories = [next(e.category for e in emoji if e.subcategory == s) for s in subcats]
    sub_of = np.array([subcats.index(e.subcategory) for e in emoji], dtype=np.int64)
    key = {k: v for k, v in asdict(cfg).items() if k != "root"}
    prefix = f"emoji-{stable_hash({'render': RENDER_VERSION, 'catalogue': sha, **key})[:12]}"
    n_e = len(emoji)
    which = {"train": np.repeat(np.arange(n_e), cfg.n_train_per_emoji),
             "query": np.arange(n_e), "gallery": np.arange(n_e)}
    splits = {}
    for split, w in which.items():
        sid = _SPLIT_IDS[split]
        ds = ImageDataset(images=_frozen(_render(cfg, sprites, w, sid)), labels=sub_of[w],
                          class_names=subcats, name=f"{prefix}/{split}",
                          captions=_captions(cfg, emoji, w, sid))
        if ds.labels is not None:  # always: labels were given
            _frozen(ds.labels)
        splits[split] = ds
    tq, tg = _text_splits(cfg, emoji, sub_of, prefix)
    return EmojiData(
        config=cfg, emoji=emoji, class_names=subcats, categories=categories,
        train=splits["train"], query=splits["query"], gallery=splits["gallery"],
        text_query=tq, text_gallery=tg,
        emoji_of={**{k: _frozen(v) for k, v in which.items()},
                  "text_query": np.arange(n_e), "text_gallery": np.arange(n_e)},
        name_prompts=[[t.format(name=e.name) for t in ZERO_SHOT_TEMPLATES] for e in emoji])


@functools.lru_cache(maxsize=2)
def _cached(cfg: EmojiConfig) -> EmojiData:
    return _build(cfg)


def load_emoji(cfg: EmojiConfig | None = None, *, cache: bool = True) -> EmojiData:
    """Read and render the emoji data of ``cfg`` (same configuration and package: same bytes).

    Raises:
        EmojiDataNotFoundError: the package folder, emoji.json or an emoji's PNG is missing
            (the message names the npm package, the folder and the missing file).
        ValueError: a malformed emoji.json.
    """
    cfg = EmojiConfig() if cfg is None else cfg
    if not isinstance(cfg, EmojiConfig):
        raise TypeError(f"cfg: expected an EmojiConfig, got {type(cfg).__name__}")
    return _cached(cfg) if cache else _build(cfg)


def other_style(style: str) -> str:
    """The artwork a cross-style gallery is drawn in: the other one of :data:`EMOJI_STYLES`."""
    if style not in EMOJI_STYLES:
        raise ValueError(f"style: expected one of {list(EMOJI_STYLES)}, got {style!r}")
    return next(s for s in EMOJI_STYLES if s != style)


@dataclass
class CrossStyle:
    """Query renderings in one artwork, gallery renderings in the other.

    Attributes:
        query_style, gallery_style: the two artworks (``"google"``, ``"twitter"``).
        query: [n, S, S, 3] the query split of :func:`load_emoji` (query style), rows ``rows``.
        gallery: [n, S, S, 3] the gallery split's renderings (same sizes, positions and
            backgrounds, same captions and labels) of the same emoji in the gallery style;
            row ``i`` of query and gallery is the same emoji.
        rows: [n] int64 rows of the whole query (and gallery) split, i.e. indices into
            :attr:`EmojiData.emoji`, of the emoji kept.
        dropped: the emoji of the query style without an image in the gallery style (left
            out of both sides).
    """

    query_style: str
    gallery_style: str
    query: ImageDataset
    gallery: ImageDataset
    rows: np.ndarray
    dropped: list[Emoji]


def _build_cross_style(cfg: EmojiConfig) -> CrossStyle:
    data = load_emoji(cfg)
    other = replace(cfg, style=other_style(cfg.style))
    folder = other.folder
    if not folder.is_dir():
        raise _missing(folder, other.style, f"no folder {folder}")
    theirs, sha = read_catalogue(folder, other.style)
    have = {e.code for e in theirs}
    rows = np.array([i for i, e in enumerate(data.emoji) if e.code in have], dtype=np.int64)
    dropped = [e for e in data.emoji if e.code not in have]
    if not len(rows):
        raise ValueError(f"{folder}: none of the {len(data.emoji)} emoji has a {other.style} "
                         "image")
    sprites = {int(i): _load_sprite(folder, other.style, data.emoji[i]) for i in rows}
    whole = data.gallery
    images = _render(cfg, sprites, np.asarray(data.emoji_of["gallery"]), _SPLIT_IDS["gallery"],
                     keep=rows)
    tag = stable_hash({"render": RENDER_VERSION, "gallery_catalogue": sha,
                       "rows": rows.tolist()})[:12]
    sub = whole.subset(rows, f"{whole.name}[{other.style} {tag}]")  # labels and captions
    gallery = ImageDataset(images=_frozen(images), labels=sub.labels,
                           class_names=sub.class_names, name=sub.name, captions=sub.captions)
    query = data.query if len(rows) == len(data.emoji) else data.query.subset(
        rows, f"{data.query.name}[{other.style} {tag}]")
    return CrossStyle(query_style=cfg.style, gallery_style=other.style, query=query,
                      gallery=gallery, rows=_frozen(rows), dropped=dropped)


@functools.lru_cache(maxsize=2)
def _cached_cross(cfg: EmojiConfig) -> CrossStyle:
    return _build_cross_style(cfg)


def load_cross_style(cfg: EmojiConfig | None = None) -> CrossStyle:
    """The cross-style set of ``cfg``'s data: :func:`load_emoji`'s query split in ``cfg.style``
    against its gallery split drawn in :func:`other_style` (same augmentation draws).

    Raises:
        EmojiDataNotFoundError: either package, its emoji.json or an emoji's PNG is missing
            (names the npm package, the folder and the file).
        ValueError: no emoji has an image in the other style.
    """
    cfg = EmojiConfig() if cfg is None else cfg
    if not isinstance(cfg, EmojiConfig):
        raise TypeError(f"cfg: expected an EmojiConfig, got {type(cfg).__name__}")
    return _cached_cross(cfg)


def dominant_share(emoji: list[Emoji], category: str) -> float:
    """Share of ``category``'s emoji in its largest subcategory (near 1: almost every item is
    relevant to every query, a set without room to measure retrieval)."""
    subs = [e.subcategory for e in emoji if e.category == category]
    return max(subs.count(s) for s in set(subs)) / len(subs)


#: A category is a fine-grained set when its largest subcategory holds at most this share of
#: it (Flags fails: 259 of its 270 emoji are country flags).
MAX_DOMINANT_SHARE = 0.5


def describe(cfg: EmojiConfig) -> dict[str, Any]:
    """The configuration as shown in the book (without the local folder)."""
    return {k: v for k, v in asdict(cfg).items() if k != "root"}
