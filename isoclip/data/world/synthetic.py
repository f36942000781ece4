"""The embedded default's data: a seeded, procedurally generated image-caption world.

A class is a (shape, colour) pair, the two attributes captions talk about. Everything else
in an image is a nuisance that captions never mention: position, size, rotation, background
tint and pattern (stripes / soft checker / gradient / waves with random frequency and
orientation), a small grey distractor blob, pixel noise, and a hue/saturation/value jitter
that makes a colour a category rather than one RGB value.

Rendering is vectorised numpy: each shape is a signed distance function (SDF) in the
object's own frame, and the pixel coverage ``clip(0.5 - d_px, 0, 1)`` gives anti-aliased
edges at any resolution without supersampling (see :func:`object_coverage`).

Randomness: every split has its own streams ``np.random.default_rng([seed, split_id,
purpose])``, so resizing one split never changes another, and the same config gives
byte-identical images, captions and labels. Nuisance draws are uniform variates multiplied by
``nuisance``, so a nuisance sweep shows the *same* scenes with more or less clutter.

To make a richer world, add entries to :data:`SHAPES` / :data:`COLOURS` (an SDF and
synonyms; a hue and synonyms) and name them in :class:`WorldConfig`. Bump
:data:`GENERATOR_VERSION` whenever the output for an existing config changes: it is part of
every dataset name, hence of every feature/training cache key.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from isoclip.data.base import ImageDataset, TextDataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import (
    BLOB,
    BLOB_GREY,
    BLOB_PROB,
    BLOB_RADIUS,
    COLOURS,
    HELDOUT_TEMPLATES,
    HUE_JITTER,
    MAX_ROTATION,
    NOISE_STD,
    PARTIAL_COLOUR_TEMPLATES,
    PARTIAL_SHAPE_TEMPLATES,
    RADIUS_FRAC,
    RENDER_CHUNK,
    SAT_JITTER,
    SHAPE_EXTENT,
    SHAPES,
    SIZE_JITTER,
    SPLIT_IDS,
    STREAM_CAPTIONS,
    STREAM_LAYOUT,
    STREAM_NOISE,
    STREAM_SCENES,
    TRAIN_TEMPLATES,
    VAL_JITTER,
    ZERO_SHOT_TEMPLATES,
    draw_layout,
    fill_template,
    hsv_to_rgb,
    object_coverage,
    render_background,
)


def _render(cfg: WorldConfig, labels: np.ndarray, split_id: int) -> np.ndarray:
    """Images uint8 [n, S, S, 3] of the given class labels [n] for split ``split_id``."""
    n, size, nu = len(labels), cfg.image_size, cfg.nuisance
    layout = draw_layout(np.random.default_rng([cfg.seed, split_id, STREAM_LAYOUT]), n)
    noise_rng = np.random.default_rng([cfg.seed, split_id, STREAM_NOISE])
    shape_of = labels // len(cfg.colours)
    colour_of = labels % len(cfg.colours)
    specs = [COLOURS[c] for c in cfg.colours]
    proto = np.array([[c.hue, c.saturation, c.value] for c in specs])[colour_of]
    rgb = hsv_to_rgb(proto[:, 0] + nu * HUE_JITTER * layout["col"][:, 0],
                     np.clip(proto[:, 1] + nu * SAT_JITTER * layout["col"][:, 1], 0, 1),
                     np.clip(proto[:, 2] + nu * VAL_JITTER * layout["col"][:, 2], 0, 1))
    radius = size * RADIUS_FRAC * (1.0 + nu * SIZE_JITTER * layout["size"])
    slack = np.maximum(size / 2 - SHAPE_EXTENT * radius - 0.5, 0.0)
    centre = size / 2 + nu * layout["pos"] * slack[:, None]
    angle = nu * MAX_ROTATION * layout["rot"]
    blob_on = layout["blob"] < nu * BLOB_PROB
    blob_r = (size / 32) * (BLOB_RADIUS[0] + layout["blob_r"] * np.diff(BLOB_RADIUS)[0])
    blob_grey = BLOB_GREY[0] + layout["blob_grey"] * np.diff(BLOB_GREY)[0]

    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for lo in range(0, n, RENDER_CHUNK):
        sl = slice(lo, min(lo + RENDER_CHUNK, n))
        m = sl.stop - sl.start
        img = render_background(size, nu, {k: v[sl] for k, v in layout.items()})
        on = np.flatnonzero(blob_on[sl])
        if len(on):  # the blob is behind the object: it never hides the shape
            a = object_coverage(BLOB, size, layout["blob_pos"][sl][on] * size,
                                blob_r[sl][on], np.zeros(len(on)))[..., None]
            grey = blob_grey[sl][on, None, None, None].astype(np.float32)
            img[on] = img[on] * (1 - a) + a * grey
        alpha = np.empty((m, size, size), dtype=np.float32)
        for k, s in enumerate(cfg.shapes):
            i = np.flatnonzero(shape_of[sl] == k)
            if len(i):
                alpha[i] = object_coverage(SHAPES[s], size, centre[sl][i], radius[sl][i],
                                           angle[sl][i])
        a = alpha[..., None]
        img = img * (1 - a) + a * rgb[sl, None, None, :].astype(np.float32)
        if nu > 0:
            img += (nu * NOISE_STD) * noise_rng.standard_normal(img.shape, dtype=np.float32)
        out[sl] = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Captions and splits
# --------------------------------------------------------------------------------------------

def _captions(cfg: WorldConfig, labels: np.ndarray, split_id: int, partial_frac: float
              ) -> list[str]:
    """One caption per label: a training template with random synonyms; a ``partial_frac``
    share names only the shape or only the colour."""
    rng = np.random.default_rng([cfg.seed, split_id, STREAM_CAPTIONS])
    u_partial, u_kind, u_tpl, u_shape, u_colour = rng.uniform(size=(5, len(labels)))
    classes = cfg.classes
    out = []
    for i, label in enumerate(labels.tolist()):
        shape, colour = classes[label]
        s_syn, c_syn = SHAPES[shape].synonyms, COLOURS[colour].synonyms
        s = s_syn[int(u_shape[i] * len(s_syn))]
        c = c_syn[int(u_colour[i] * len(c_syn))]
        if u_partial[i] < partial_frac:
            templates = PARTIAL_SHAPE_TEMPLATES if u_kind[i] < 0.5 else PARTIAL_COLOUR_TEMPLATES
        else:
            templates = TRAIN_TEMPLATES
        out.append(fill_template(templates[int(u_tpl[i] * len(templates))], s, c))
    return out


def _balanced_labels(cfg: WorldConfig, n_per_class: int, split_id: int) -> np.ndarray:
    """Exactly ``n_per_class`` of each class, in a seeded random order; int64 [C·n]."""
    rng = np.random.default_rng([cfg.seed, split_id])
    return rng.permutation(np.repeat(np.arange(len(cfg.classes)), n_per_class))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _image_split(cfg: WorldConfig, split: str, n_per_class: int, partial_frac: float
                 ) -> ImageDataset:
    sid = SPLIT_IDS[split]
    labels = _balanced_labels(cfg, n_per_class, sid)
    ds = ImageDataset(images=_frozen(_render(cfg, labels, sid)), labels=labels,
                      class_names=cfg.class_names, name=cfg.split_name(split),
                      captions=_captions(cfg, labels, sid, partial_frac))
    if ds.labels is not None:  # always: labels were given
        _frozen(ds.labels)
    return ds


def _compositional_split(cfg: WorldConfig, split: str, n_per_class: int,
                         partial_frac: float) -> tuple[ImageDataset, Any]:
    """An image split of a compositional world and its :class:`~.compositional.Scenes`."""
    from isoclip.data.world import compositional as comp

    sid = SPLIT_IDS[split]
    labels = _balanced_labels(cfg, n_per_class, sid)
    scenes = comp.sample_scenes(cfg, labels, np.random.default_rng([cfg.seed, sid, STREAM_SCENES]))
    caps = comp.captions(cfg, scenes, np.random.default_rng([cfg.seed, sid, STREAM_CAPTIONS]),
                         comp.TRAIN_WRAPPERS, partial_frac)
    ds = ImageDataset(images=_frozen(comp.render(cfg, scenes, sid)), labels=labels,
                      class_names=cfg.class_names, name=cfg.split_name(split), captions=caps)
    if ds.labels is not None:  # always: labels were given
        _frozen(ds.labels)
    return ds, scenes


def _compositional_text_splits(cfg: WorldConfig
                               ) -> tuple[TextDataset, TextDataset, Any, Any]:
    """Text query / gallery splits of a compositional world and their scenes."""
    from isoclip.data.world import compositional as comp

    rng = np.random.default_rng([cfg.seed, SPLIT_IDS["text"]])
    nq, ng = cfg.n_text_query_per_class, cfg.n_text_gallery_per_class
    q_texts, g_texts, q_sc, g_sc = comp.text_split_captions(cfg, rng, nq, ng)
    n_cls = len(cfg.classes)
    q = TextDataset(q_texts, np.repeat(np.arange(n_cls), nq), cfg.split_name("text_query"))
    g = TextDataset(g_texts, np.repeat(np.arange(n_cls), ng), cfg.split_name("text_gallery"))
    return q, g, q_sc, g_sc


def _text_splits(cfg: WorldConfig) -> tuple[TextDataset, TextDataset]:
    """Held-out-template captions: per class, a seeded shuffle of all distinct (template,
    shape synonym, colour synonym) captions; queries are its head, the gallery its tail, so
    they never share a string and each is unchanged when only the other's size changes."""
    rng = np.random.default_rng([cfg.seed, SPLIT_IDS["text"]])
    nq, ng = cfg.n_text_query_per_class, cfg.n_text_gallery_per_class
    q_texts: list[str] = []
    g_texts: list[str] = []
    for shape, colour in cfg.classes:
        texts = [fill_template(t, s, c) for t in HELDOUT_TEMPLATES
                 for s in SHAPES[shape].synonyms for c in COLOURS[colour].synonyms]
        perm = rng.permutation(len(texts))
        q_texts += [texts[j] for j in perm[:nq]]
        g_texts += [texts[j] for j in perm[len(perm) - ng:]]
    n_cls = len(cfg.classes)
    q = TextDataset(q_texts, np.repeat(np.arange(n_cls), nq), cfg.split_name("text_query"))
    g = TextDataset(g_texts, np.repeat(np.arange(n_cls), ng), cfg.split_name("text_gallery"))
    return q, g


def zero_shot_prompts(world: SyntheticWorld | WorldConfig,
                      templates: Sequence[str] | None = None) -> list[list[str]]:
    """Zero-shot prompts per class: ``templates`` (default :data:`ZERO_SHOT_TEMPLATES`)
    filled with the canonical shape and colour names; ``[n_classes][n_templates]``."""
    cfg = world.config if isinstance(world, SyntheticWorld) else world
    if not isinstance(cfg, WorldConfig):
        raise TypeError(f"world: expected a SyntheticWorld or WorldConfig, got {type(world)}")
    templates = ZERO_SHOT_TEMPLATES if templates is None else tuple(templates)
    if not templates:
        raise ValueError("templates: expected at least one template, got none")
    bad = [t for t in templates if "{shape}" not in t or "{colour}" not in t]
    if bad:
        raise ValueError(f"templates: each must contain '{{shape}}' and '{{colour}}'; not {bad}")
    return [[fill_template(t, s, c) for t in templates] for s, c in cfg.classes]


@dataclass
class SyntheticWorld:
    """A generated world.

    Attributes:
        config: the configuration it was generated from.
        class_names: canonical names ``"<colour> <shape>"``, one per class.
        classes: (shape, colour) per class, same order.
        train: ``C·n_train_per_class`` images [N, S, S, 3] uint8 with one caption each
            (training templates, ``partial_frac`` of them partial).
        query: image queries with full captions (training templates): query→gallery
            retrieval, relevance = same label; also image↔text retrieval.
        gallery: gallery images with full captions (training templates).
        text_query: held-out-template captions (relevance = same label).
        text_gallery: held-out-template captions, disjoint strings from ``text_query``.
        prompts: zero-shot prompts per class (:func:`zero_shot_prompts` defaults).
        scenes: compositional worlds only (else None): split name (``"train"``, ``"query"``,
            ``"gallery"``, ``"text_query"``, ``"text_gallery"``) -> its
            :class:`isoclip.data.world.compositional.Scenes`, row-aligned with the split.

    Arrays are read-only: a world is shared by every caller of :func:`make_world`.
    """

    config: WorldConfig
    class_names: list[str]
    classes: list[tuple[str, str]]
    train: ImageDataset
    query: ImageDataset
    gallery: ImageDataset
    text_query: TextDataset
    text_gallery: TextDataset
    prompts: list[list[str]]
    scenes: Mapping[str, Any] | None = None


def _build_compositional_world(cfg: WorldConfig) -> SyntheticWorld:
    tq, tg, tq_sc, tg_sc = _compositional_text_splits(cfg)
    splits = {name: _compositional_split(cfg, name, n, frac) for name, n, frac in (
        ("train", cfg.n_train_per_class, cfg.partial_frac),
        ("query", cfg.n_query_per_class, 0.0), ("gallery", cfg.n_gallery_per_class, 0.0))}
    scenes = {name: sc for name, (_, sc) in splits.items()}
    scenes.update(text_query=tq_sc, text_gallery=tg_sc)
    return SyntheticWorld(
        config=cfg, class_names=cfg.class_names, classes=cfg.classes,
        train=splits["train"][0], query=splits["query"][0], gallery=splits["gallery"][0],
        text_query=tq, text_gallery=tg, prompts=zero_shot_prompts(cfg),
        scenes=MappingProxyType(scenes))


def _build_world(cfg: WorldConfig) -> SyntheticWorld:
    if cfg.scene == "compositional":
        return _build_compositional_world(cfg)
    text_query, text_gallery = _text_splits(cfg)
    return SyntheticWorld(
        config=cfg, class_names=cfg.class_names, classes=cfg.classes,
        train=_image_split(cfg, "train", cfg.n_train_per_class, cfg.partial_frac),
        query=_image_split(cfg, "query", cfg.n_query_per_class, 0.0),
        gallery=_image_split(cfg, "gallery", cfg.n_gallery_per_class, 0.0),
        text_query=text_query, text_gallery=text_gallery, prompts=zero_shot_prompts(cfg))


@functools.lru_cache(maxsize=4)
def _cached_world(cfg: WorldConfig) -> SyntheticWorld:
    return _build_world(cfg)


def make_world(cfg: WorldConfig = WorldConfig(),  # noqa: B008 - frozen, safe to share
               *, cache: bool = True) -> SyntheticWorld:
    """Generate the world of ``cfg`` (same config ⇒ byte-identical data).

    With ``cache`` (default) the last 4 worlds are memoised in memory and the same object
    is returned for an equal config; ``cache=False`` always regenerates.
    """
    if not isinstance(cfg, WorldConfig):
        raise TypeError(f"cfg: expected a WorldConfig, got {type(cfg).__name__}")
    return _cached_world(cfg) if cache else _build_world(cfg)


# --------------------------------------------------------------------------------------------
# What a caption says (semantic features for AlignCLIP's IMSep loss)
# --------------------------------------------------------------------------------------------

def _synonym_patterns() -> list[tuple[re.Pattern[str], int]]:
    """(whole-phrase pattern, attribute index) for every synonym, longest phrase first.

    Attribute indices: shapes of :data:`SHAPES` first, then colours of :data:`COLOURS`.
    """
    entries = [(syn, i) for i, spec in enumerate(SHAPES.values()) for syn in spec.synonyms]
    entries += [(syn, len(SHAPES) + j) for j, spec in enumerate(COLOURS.values())
                for syn in spec.synonyms]
    entries.sort(key=lambda e: -len(e[0]))
    return [(re.compile(rf"(?<![\w-]){re.escape(syn)}(?![\w-])"), i) for syn, i in entries]


def caption_attributes(captions: Sequence[str]) -> np.ndarray:
    """Which shape and colour each caption mentions: float32 multi-hot [N, S + C].

    Columns are the S shapes of :data:`SHAPES` then the C colours of :data:`COLOURS` (every
    registered one, so the columns do not depend on the world). A synonym counts as a whole
    phrase (longest first, a matched span is consumed), so "square block" is one mention of
    *square* and "leafy green" one of *green*. A full caption has two ones, a partial caption
    one. This is exact for captions of this generator, offline and without any model: it is
    what a sentence embedder would have to recover from them.

    Raises:
        ValueError: a caption that mentions no registered shape or colour (the message quotes
            it): these semantics only exist for captions of :mod:`isoclip.data.world.synthetic`.
    """
    patterns = _synonym_patterns()
    out = np.zeros((len(captions), len(SHAPES) + len(COLOURS)), dtype=np.float32)
    for n, caption in enumerate(captions):
        text = caption.lower()
        for pat, i in patterns:
            text, hits = pat.subn(" ", text)
            if hits:
                out[n, i] = 1.0
        if not out[n].any():
            raise ValueError(
                f"captions[{n}] = {caption!r}: mentions no shape or colour of "
                "isoclip.data.world.synthetic (SHAPES / COLOURS synonyms); attribute semantics "
                "exist only for the synthetic world's captions")
    return out
