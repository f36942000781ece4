"""Compositional scenes: the richer synthetic world (``WorldConfig(scene="compositional")``).

A scene holds 1 to ``max_objects`` objects. Slot 0 is the *main* object: its (shape, colour)
is the image's class (the retrieval relevance), it is drawn largest and on top, and it has a
size (:data:`SIZES`: small or big) and a fill (:data:`FILLS`: solid, outlined or striped).
Every other object has a random (shape, colour) pair different from the main one, a random
fill (never captioned: a nuisance) and sits on one side of the main object, which gives the
scene's relation (:data:`RELATIONS`: the main object is left of / right of / above / below
the others). The background, blob, colour jitter and pixel noise are the single-object
world's (:mod:`isoclip.data.world.synthetic`), scaled by ``WorldConfig.nuisance``.

A caption always describes the main object, and mentions each optional attribute (its size,
its fill, the relation to the second object, the second object's colour, the number of
objects) independently with probability ``WorldConfig.mention_prob``; a ``partial_frac``
share of training captions names only the main object's shape or only its colour. Every
word is drawn from synonyms. A caption that would not fit in
:data:`isoclip.data.world.primitives.MAX_CAPTION_TOKENS` BPE tokens drops optional parts (count,
then the second object's colour, the relation, the fill, the size) until it fits: a caption
never mentions anything absent from its scene.

Text-text retrieval splits describe random scenes of each class with held-out wrappers
(:data:`HELDOUT_WRAPPERS`), distinct strings between query and gallery.

Randomness follows the single-object world: per split ``default_rng([seed, split_id,
purpose])`` streams (layout, noise, captions), so the same config gives identical bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from open_clip.tokenizer import SimpleTokenizer

    from isoclip.data.world.config import WorldConfig
    from isoclip.data.world.primitives import Sdf

#: Size of the main object: name -> caption synonyms.
SIZES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "small": ("small", "little", "tiny"),
    "big": ("big", "large"),
})
#: Fill of an object: name -> caption synonyms (only the main object's fill is captioned).
FILLS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "solid": ("solid", "filled"),
    "outlined": ("outlined", "hollow"),
    "striped": ("striped", "stripy"),
})
#: Position of the main object relative to the others: name -> caption phrases.
RELATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "left": ("left of", "to the left of"),
    "right": ("right of", "to the right of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
})
#: Number of objects -> caption phrases (used as a ``"<count>: "`` prefix).
COUNTS: Mapping[int, tuple[str, ...]] = MappingProxyType({
    1: ("one shape", "a single object"),
    2: ("two shapes", "two objects"),
    3: ("three shapes", "three objects"),
    4: ("four shapes", "four objects"),
})

#: Sentence wrappers of training (and query/gallery) captions; ``{s}`` is the description.
TRAIN_WRAPPERS: tuple[str, ...] = (
    "{s}.", "a picture of {s}.", "there is {s}.", "an image with {s}.",
    "a drawing of {s}.", "here is {s}.",
)
#: Held-out wrappers of the text-text retrieval splits (never used for training).
HELDOUT_WRAPPERS: tuple[str, ...] = (
    "a photo showing {s}.", "we can spot {s}.", "this scene has {s}.", "look at {s}!",
)

# The main object is always clearly larger than the others (its smallest radius is ~1.6x
# their largest), so the class is visible, not a guess between objects.
_RADIUS = {"small": 0.17, "big": 0.23}  # main object's radius / image size
_OTHER_RADIUS = 0.09                    # other objects' radius / image size
_RADIUS_JITTER = 0.12                   # × (1 ± 0.12 · nuisance)
_NEAR, _FAR = 0.32, 0.78                # main / others' centre along the relation axis
_SIDE = 0.24                            # others' offset across it (3 or more objects)
_POS_JITTER = 0.04                      # ± image size · nuisance
_STROKE = 0.05                          # outline stroke / image size (1.6 px at 32)
_STRIPE_PERIOD = 0.14                   # stripe period / image size (4.5 px at 32)
_STRIPE_DARK = 0.55                     # a dark stripe multiplies the colour by 0.45
_MAX_CAPTION_ATTEMPTS = 50              # distinct text-split captions: draws per wanted one


@dataclass(frozen=True)
class Scenes:
    """What each image (or text-split caption) of a compositional split shows.

    Object slot 0 is the main object (its shape and colour are the class); absent slots are
    -1. All arrays are int64 and read-only.

    Attributes:
        n_objects: [N] number of objects, 1..max_objects.
        shapes: [N, M] index into ``WorldConfig.shapes`` per slot.
        colours: [N, M] index into ``WorldConfig.colours`` per slot.
        fills: [N, M] index into :data:`FILLS` per slot.
        size: [N] index into :data:`SIZES` of the main object.
        relation: [N] index into :data:`RELATIONS` (meaningful when ``n_objects >= 2``).
    """

    n_objects: np.ndarray
    shapes: np.ndarray
    colours: np.ndarray
    fills: np.ndarray
    size: np.ndarray
    relation: np.ndarray

    def __len__(self) -> int:
        return len(self.n_objects)


def sample_scenes(cfg: WorldConfig, labels: np.ndarray, rng: np.random.Generator) -> Scenes:
    """Scenes whose main object has class ``labels[i]`` (shape-major class index)."""
    n, m, n_col = len(labels), cfg.max_objects, len(cfg.colours)
    n_cls = len(cfg.shapes) * n_col
    n_obj = rng.integers(1, m + 1, size=n)
    size = rng.integers(0, len(SIZES), size=n)
    fills = rng.integers(0, len(FILLS), size=(n, m))
    relation = rng.integers(0, len(RELATIONS), size=n)
    other = rng.integers(0, n_cls - 1, size=(n, m))  # any class but the main one
    cls = np.where(other >= labels[:, None], other + 1, other)
    cls[:, 0] = labels
    present = np.arange(m)[None, :] < n_obj[:, None]
    shapes = np.where(present, cls // n_col, -1)
    colours = np.where(present, cls % n_col, -1)
    fills = np.where(present, fills, -1)
    arrays = [n_obj, shapes, colours, fills, size, relation]
    for a in arrays:
        a.flags.writeable = False
    return Scenes(*arrays)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def _object_frame(sdf: Sdf, size: int, centre: np.ndarray, radius: np.ndarray,
                  angle_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance to the edge in px, object-frame x in px), each float32 [n, S, S];
    the geometry of :func:`isoclip.data.world.primitives.object_coverage`."""
    from isoclip.data.world.primitives import object_frame

    x, y, r = object_frame(size, centre, radius, angle_deg)
    return (sdf(x, y) * r).astype(np.float32), (x * r).astype(np.float32)


def _geometry(cfg: WorldConfig, sc: Scenes, u: Mapping[str, np.ndarray]
              ) -> tuple[np.ndarray, np.ndarray]:
    """Centres [n, M, 2] (x, y in px, y down) and radii [n, M] of every object slot."""
    from isoclip.data.world.primitives import SHAPE_EXTENT

    n, m, S, nu = len(sc), cfg.max_objects, cfg.image_size, cfg.nuisance
    radius = np.full((n, m), _OTHER_RADIUS * S)
    radius[:, 0] = np.array([_RADIUS[k] for k in SIZES])[sc.size] * S
    radius = radius * (1.0 + nu * _RADIUS_JITTER * u["obj_size"])
    # Relation axis (0 = x, 1 = y) and the main object's side: "left" = main at small x,
    # "above" = main at small y (image rows point down).
    axis = np.where(sc.relation >= 2, 1, 0)
    main_first = np.isin(sc.relation, (0, 2))
    along = np.where(main_first[:, None], [[_NEAR, _FAR]], [[_FAR, _NEAR]]) * S  # [n, 2]
    # Slots 1..M-1 on the far side, spread across the axis; one other object sits centred.
    k = np.arange(1, m)
    n_others = np.maximum(sc.n_objects - 1, 1)[:, None]
    spread = np.where(n_others == 1, 0.0, (k - 1) / np.maximum(n_others - 1, 1) * 2 - 1)
    across = S / 2 + np.concatenate([np.zeros((n, 1)), spread * _SIDE * S], axis=1)
    pos = np.empty((n, m, 2))
    pos[:, :, 0] = np.where(axis[:, None] == 0, along[:, [0] + [1] * (m - 1)], across)
    pos[:, :, 1] = np.where(axis[:, None] == 1, along[:, [0] + [1] * (m - 1)], across)
    # A lone main object is centred (with the single-object world's slack jitter).
    lone = sc.n_objects == 1
    pos[lone, 0, :] = S / 2
    slack = np.maximum(S / 2 - SHAPE_EXTENT * radius[:, 0] - 0.5, 0.0)
    jitter = np.where(lone[:, None], slack[:, None], _POS_JITTER * S)
    pos[:, 0, :] += nu * u["obj_pos"][:, 0, :] * jitter
    pos[:, 1:, :] += nu * u["obj_pos"][:, 1:, :] * _POS_JITTER * S
    return pos, radius


def render(cfg: WorldConfig, sc: Scenes, split_id: int) -> np.ndarray:
    """Images uint8 [n, S, S, 3] of the scenes ``sc`` for split ``split_id``."""
    from isoclip.data.world.primitives import (
        BLOB,
        BLOB_GREY,
        BLOB_PROB,
        BLOB_RADIUS,
        COLOURS,
        HUE_JITTER,
        MAX_ROTATION,
        NOISE_STD,
        RENDER_CHUNK,
        SAT_JITTER,
        SHAPES,
        STREAM_LAYOUT,
        STREAM_NOISE,
        VAL_JITTER,
        draw_layout,
        hsv_to_rgb,
        object_coverage,
        render_background,
    )

    n, m, S, nu = len(sc), cfg.max_objects, cfg.image_size, cfg.nuisance
    rng = np.random.default_rng([cfg.seed, split_id, STREAM_LAYOUT])
    layout = draw_layout(rng, n)
    u = {"obj_size": rng.uniform(-1, 1, size=(n, m)), "obj_pos": rng.uniform(-1, 1, (n, m, 2)),
         "obj_rot": rng.uniform(-1, 1, size=(n, m)), "obj_col": rng.uniform(-1, 1, (n, m, 3))}
    noise_rng = np.random.default_rng([cfg.seed, split_id, STREAM_NOISE])
    centre, radius = _geometry(cfg, sc, u)
    angle = nu * MAX_ROTATION * u["obj_rot"]
    proto = np.array([[COLOURS[c].hue, COLOURS[c].saturation, COLOURS[c].value]
                      for c in cfg.colours])[np.maximum(sc.colours, 0)]  # [n, M, 3]
    jit = u["obj_col"]
    rgb = hsv_to_rgb(proto[..., 0] + nu * HUE_JITTER * jit[..., 0],
                     np.clip(proto[..., 1] + nu * SAT_JITTER * jit[..., 1], 0, 1),
                     np.clip(proto[..., 2] + nu * VAL_JITTER * jit[..., 2], 0, 1))  # [n, M, 3]
    blob_on = layout["blob"] < nu * BLOB_PROB
    blob_r = (S / 32) * (BLOB_RADIUS[0] + layout["blob_r"] * np.diff(BLOB_RADIUS)[0])
    blob_grey = BLOB_GREY[0] + layout["blob_grey"] * np.diff(BLOB_GREY)[0]
    stroke, period = _STROKE * S, _STRIPE_PERIOD * S
    fill_names = list(FILLS)

    out = np.empty((n, S, S, 3), dtype=np.uint8)
    for lo in range(0, n, RENDER_CHUNK):
        sl = slice(lo, min(lo + RENDER_CHUNK, n))
        img = render_background(S, nu, {k: v[sl] for k, v in layout.items()})
        on = np.flatnonzero(blob_on[sl])
        if len(on):
            a = object_coverage(BLOB, S, layout["blob_pos"][sl][on] * S, blob_r[sl][on],
                                np.zeros(len(on)))[..., None]
            img[on] = img[on] * (1 - a) + a * blob_grey[sl][on, None, None, None].astype(
                np.float32)
        for slot in reversed(range(m)):  # the main object (slot 0) is drawn last, on top
            for k, shape in enumerate(cfg.shapes):
                i = np.flatnonzero(sc.shapes[sl, slot] == k)
                if not len(i):
                    continue
                g = lo + i
                d, x = _object_frame(SHAPES[shape].sdf, S, centre[g, slot], radius[g, slot],
                                     angle[g, slot])
                alpha = np.clip(0.5 - d, 0.0, 1.0)
                colour = np.broadcast_to(rgb[g, slot, None, None, :].astype(np.float32),
                                         (len(i), S, S, 3)).copy()
                fill = sc.fills[g, slot]
                hollow = np.flatnonzero(fill == fill_names.index("outlined"))
                if len(hollow):
                    alpha[hollow] -= np.clip(0.5 - (d[hollow] + stroke), 0.0, 1.0)
                striped = np.flatnonzero(fill == fill_names.index("striped"))
                if len(striped):
                    wave = 0.5 + 0.5 * np.sin(2 * np.pi * x[striped] / period)
                    colour[striped] *= (1.0 - _STRIPE_DARK * wave)[..., None]
                a = alpha[..., None]
                img[i] = img[i] * (1 - a) + a * colour
        if nu > 0:
            img += (nu * NOISE_STD) * noise_rng.standard_normal(img.shape, dtype=np.float32)
        out[sl] = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _bpe() -> SimpleTokenizer:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


def n_tokens(text: str) -> int:
    """BPE tokens of ``text`` in open_clip's tokenizer (without start/end tokens)."""
    return len(_bpe().encode(text))


_N_VARIATES = 16

#: Optional caption parts, in the order they are dropped when a caption is too long.
_DROP_ORDER = ("count", "other_colour", "relation", "fill", "size")


def _pick(options: tuple[str, ...], v: float) -> str:
    return options[min(int(v * len(options)), len(options) - 1)]


def _describe(cfg: WorldConfig, sc: Scenes, i: int, v: np.ndarray, wrappers: tuple[str, ...],
              partial_frac: float) -> str:
    """One caption of scene ``i`` from its uniform variates ``v`` [:data:`_N_VARIATES`]:
    0-1 partial caption and its kind, 2-6 whether size / fill / relation / other colour /
    count are mentioned, 7-14 synonym choices, 15 the wrapper."""
    from isoclip.data.world.primitives import ARTICLE, COLOURS, MAX_CAPTION_TOKENS, SHAPES

    p = cfg.mention_prob
    shape = cfg.shapes[sc.shapes[i, 0]]
    colour = cfg.colours[sc.colours[i, 0]]
    n_obj = int(sc.n_objects[i])
    kind = "full"
    if v[0] < partial_frac:
        kind = "shape" if v[1] < 0.5 else "colour"
    parts = {"size": v[2] < p, "fill": v[3] < p, "relation": n_obj >= 2 and v[4] < p,
             "other_colour": v[5] < p, "count": v[6] < p}
    shape_word = _pick(SHAPES[shape].synonyms, v[7])
    colour_word = _pick(COLOURS[colour].synonyms, v[8])
    size_word = _pick(SIZES[list(SIZES)[sc.size[i]]], v[9])
    fill_word = _pick(FILLS[list(FILLS)[sc.fills[i, 0]]], v[10])
    rel_word = _pick(RELATIONS[list(RELATIONS)[sc.relation[i]]], v[11])
    count_word = _pick(COUNTS[n_obj], v[12])
    o_shape_word = o_colour_word = ""
    if n_obj >= 2:
        o_shape = cfg.shapes[sc.shapes[i, 1]]
        o_colour = cfg.colours[sc.colours[i, 1]]
        o_shape_word = _pick(SHAPES[o_shape].synonyms, v[13])
        o_colour_word = _pick(COLOURS[o_colour].synonyms, v[14])

    def build(wrapper: str) -> str:
        words = ["a"]
        if parts["size"]:
            words.append(size_word)
        if parts["fill"]:
            words.append(fill_word)
        if kind != "shape":
            words.append(colour_word)
        words.append(shape_word if kind != "colour" else "object")
        if parts["relation"]:
            words += [rel_word, "a"]
            if parts["other_colour"]:
                words.append(o_colour_word)
            words.append(o_shape_word)
        text = wrapper.format(s=" ".join(words))
        if parts["count"]:
            text = f"{count_word}: {text}"
        return ARTICLE.sub("an ", text)

    wrapper = _pick(wrappers, v[15])
    text = build(wrapper)
    for part in _DROP_ORDER:
        if n_tokens(text) <= MAX_CAPTION_TOKENS:
            return text
        parts[part] = False
        text = build(wrapper)
    if n_tokens(text) > MAX_CAPTION_TOKENS:
        text = build(min(wrappers, key=len))
    return text


def captions(cfg: WorldConfig, sc: Scenes, rng: np.random.Generator,
             wrappers: tuple[str, ...] = TRAIN_WRAPPERS, partial_frac: float = 0.0
             ) -> list[str]:
    """One caption per scene: random synonyms, each optional attribute mentioned with
    probability ``cfg.mention_prob``, ``partial_frac`` of them shape-only or colour-only."""
    v = rng.uniform(size=(len(sc), _N_VARIATES))
    return [_describe(cfg, sc, i, v[i], wrappers, partial_frac) for i in range(len(sc))]


def text_split_captions(cfg: WorldConfig, rng: np.random.Generator, n_query: int,
                        n_gallery: int) -> tuple[list[str], list[str], Scenes, Scenes]:
    """Held-out-wrapper captions of random scenes: per class, distinct strings; the first
    ``n_query`` go to the query split, the next ``n_gallery`` to the gallery.

    Returns (query texts, gallery texts, their scenes), class-major (``n_query`` per class,
    then the next class).

    Raises:
        ValueError: a class has fewer distinct captions than wanted (naming the fields).
    """
    wanted = n_query + n_gallery
    n_cls = len(cfg.shapes) * len(cfg.colours)
    q_texts: list[str] = []
    g_texts: list[str] = []
    q_rows: list[np.ndarray] = []
    g_rows: list[np.ndarray] = []
    batch = max(2 * wanted, 8)
    all_scenes: list[Scenes] = []
    for c in range(n_cls):
        seen: dict[str, int] = {}
        offset = 0
        scenes_c: list[Scenes] = []
        for _ in range(_MAX_CAPTION_ATTEMPTS):
            if len(seen) >= wanted:
                break
            sc = sample_scenes(cfg, np.full(batch, c), rng)
            scenes_c.append(sc)
            for i, t in enumerate(captions(cfg, sc, rng, HELDOUT_WRAPPERS)):
                if t not in seen and len(seen) < wanted:
                    seen[t] = offset + i
            offset += batch
        if len(seen) < wanted:
            raise ValueError(
                f"WorldConfig.n_text_query_per_class + n_text_gallery_per_class = {wanted}: "
                f"class {c} has only {len(seen)} distinct held-out captions")
        merged = _concat(scenes_c)
        texts, rows = list(seen), np.array(list(seen.values()))
        q_texts += texts[:n_query]
        g_texts += texts[n_query:]
        q_rows.append(rows[:n_query] + sum(len(s) for s in all_scenes))
        g_rows.append(rows[n_query:] + sum(len(s) for s in all_scenes))
        all_scenes.append(merged)
    pool = _concat(all_scenes)
    return (q_texts, g_texts, _take(pool, np.concatenate(q_rows)),
            _take(pool, np.concatenate(g_rows)))


def _concat(parts: list[Scenes]) -> Scenes:
    return Scenes(*[np.concatenate([getattr(p, f) for p in parts])
                    for f in Scenes.__dataclass_fields__])


def _take(sc: Scenes, rows: np.ndarray) -> Scenes:
    arrays = [np.array(getattr(sc, f)[rows]) for f in Scenes.__dataclass_fields__]
    for a in arrays:
        a.flags.writeable = False
    return Scenes(*arrays)

