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
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from dataclasses import asdict, dataclass
from types import MappingProxyType

import numpy as np

from ..cache import stable_hash
from .base import ImageDataset, TextDataset

#: Version of the generator's output; part of :attr:`WorldConfig.name`.
GENERATOR_VERSION = 1

#: Captions (and prompts) must fit in this many BPE tokens of open_clip's tokenizer: the tiny
#: model's context length is 20 including the start and end tokens.
MAX_CAPTION_TOKENS = 18

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------------
# Shapes: signed distance functions in the object frame (unit ~ object radius, y points up).
# Each shape lies within a disc of radius SHAPE_EXTENT and has a visual area of about 2-2.5.
# --------------------------------------------------------------------------------------------

#: Every shape fits in the disc of this radius (object-frame units); used to keep objects
#: inside the image.
SHAPE_EXTENT = 1.2


def _box(x: np.ndarray, y: np.ndarray, hx: float, hy: float) -> np.ndarray:
    """Exact SDF of the axis-aligned box with half-sides (hx, hy) centred at the origin."""
    qx, qy = np.abs(x) - hx, np.abs(y) - hy
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    return outside + np.minimum(np.maximum(qx, qy), 0.0)


def _polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Exact SDF of a simple polygon (any winding, convex or not); vertices [V, 2]."""
    v = vertices.tolist()  # Python floats keep float32 inputs float32
    d2 = (x - v[0][0]) ** 2 + (y - v[0][1]) ** 2
    inside = np.zeros(x.shape, dtype=bool)
    for i in range(len(v)):
        (vix, viy), (vjx, vjy) = v[i], v[i - 1]
        ex, ey = vjx - vix, vjy - viy
        wx, wy = x - vix, y - viy
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        bx, by = wx - ex * t, wy - ey * t
        d2 = np.minimum(d2, bx * bx + by * by)
        # Even-odd rule: the edge crosses the horizontal ray from (x, y) to +infinity.
        c1, c2, c3 = y >= viy, y < vjy, ex * wy > ey * wx
        inside ^= (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
    return np.where(inside, -1.0, 1.0) * np.sqrt(d2)


def _regular(n: int, radius: float, phase_deg: float = 90.0) -> np.ndarray:
    """Vertices [n, 2] of a regular n-gon with circumradius ``radius``, first vertex at
    ``phase_deg`` (90 = pointing up)."""
    a = np.deg2rad(phase_deg) + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)


def _star_vertices(points: int, outer: float, inner: float) -> np.ndarray:
    """Vertices [2·points, 2] of a star polygon pointing up."""
    a = np.pi / 2 + np.pi * np.arange(2 * points) / points
    r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


_TRIANGLE = _regular(3, 1.2)
_STAR = _star_vertices(5, 1.12, 0.48)


def _sdf_circle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.hypot(x, y) - 0.88


def _sdf_square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _box(x, y, 0.76, 0.76)


def _sdf_triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _TRIANGLE)


def _sdf_star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _STAR)


def _sdf_cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.minimum(_box(x, y, 0.95, 0.32), _box(x, y, 0.32, 0.95))


def _sdf_heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # A square rotated by 45° (tip down) with two discs on its upper edges.
    h, cy = 0.8, -0.12  # half-diagonal of the square, its centre's height
    r = h / math.sqrt(2.0)
    u, v = (x + (y - cy)) / math.sqrt(2.0), ((y - cy) - x) / math.sqrt(2.0)
    square = _box(u, v, r, r)
    left = np.hypot(x + h / 2, y - (cy + h / 2)) - r
    right = np.hypot(x - h / 2, y - (cy + h / 2)) - r
    return np.minimum(square, np.minimum(left, right))


def _sdf_ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(np.hypot(x, y) - 0.68) - 0.3


def _sdf_crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.maximum(np.hypot(x, y) - 0.95, -(np.hypot(x - 0.45, y - 0.25) - 0.72))


@dataclass(frozen=True)
class ShapeSpec:
    """One shape of the world.

    Attributes:
        name: canonical name (the one used in class names and zero-shot prompts).
        synonyms: phrases captions may use for it; ``synonyms[0] == name``. Must not share a
            whole word-sequence with another shape's synonyms or with template words.
        sdf: signed distance function ``(x, y) -> d`` on float32 arrays of equal shape, in
            the object frame (unit ≈ object radius, y up, shape within :data:`SHAPE_EXTENT`).
    """

    name: str
    synonyms: tuple[str, ...]
    sdf: Sdf


@dataclass(frozen=True)
class ColourSpec:
    """One colour of the world, as an HSV prototype that the renderer jitters.

    Attributes:
        name: canonical name (used in class names and zero-shot prompts).
        synonyms: words captions may use for it; ``synonyms[0] == name``.
        hue: prototype hue in degrees [0, 360).
        saturation: prototype saturation in [0, 1].
        value: prototype value (brightness) in [0, 1].
    """

    name: str
    synonyms: tuple[str, ...]
    hue: float
    saturation: float
    value: float


#: The distractor: a disc of radius 1 (its radius in pixels is the object-frame unit).
_BLOB = ShapeSpec("blob", (), lambda x, y: np.hypot(x, y) - 1.0)


def _registry(specs: Sequence[ShapeSpec] | Sequence[ColourSpec]) -> Mapping:
    return MappingProxyType({s.name: s for s in specs})


#: Every shape a world may use (default worlds use the first six). Square and a 45°-rotated
#: square would be ambiguous under rotation, hence no "diamond".
SHAPES: Mapping[str, ShapeSpec] = _registry([
    ShapeSpec("circle", ("circle", "disc", "disk", "round shape"), _sdf_circle),
    ShapeSpec("square", ("square", "box", "square block"), _sdf_square),
    ShapeSpec("triangle", ("triangle", "triangular shape", "wedge"), _sdf_triangle),
    ShapeSpec("star", ("star", "five-pointed star", "star shape"), _sdf_star),
    ShapeSpec("cross", ("cross", "plus sign", "plus shape"), _sdf_cross),
    ShapeSpec("heart", ("heart", "love heart", "heart shape"), _sdf_heart),
    ShapeSpec("ring", ("ring", "donut", "hoop"), _sdf_ring),
    ShapeSpec("crescent", ("crescent", "crescent moon", "sickle"), _sdf_crescent),
])

#: Every colour a world may use (default worlds use the first four). Hues of the defaults
#: are ≥ 55° apart, far beyond the ±10° jitter.
COLOURS: Mapping[str, ColourSpec] = _registry([
    ColourSpec("red", ("red", "crimson", "scarlet", "ruby"), 0.0, 0.85, 0.85),
    ColourSpec("green", ("green", "emerald", "jade", "leafy green"), 125.0, 0.8, 0.75),
    ColourSpec("blue", ("blue", "azure", "cobalt", "sapphire"), 220.0, 0.85, 0.9),
    ColourSpec("yellow", ("yellow", "golden", "lemon", "canary"), 55.0, 0.85, 0.95),
    ColourSpec("orange", ("orange", "tangerine", "amber"), 28.0, 0.9, 0.95),
    ColourSpec("purple", ("purple", "violet", "plum"), 280.0, 0.65, 0.8),
    ColourSpec("cyan", ("cyan", "turquoise", "teal"), 185.0, 0.8, 0.85),
    ColourSpec("pink", ("pink", "rose", "fuchsia"), 325.0, 0.5, 0.95),
])

# --------------------------------------------------------------------------------------------
# Captions. Templates never mention position, size, rotation, background or noise.
# --------------------------------------------------------------------------------------------

#: Full-caption templates of the train split (and of query/gallery captions).
TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}.",
    "a {shape} that is {colour}.",
    "a picture of a {colour} {shape}.",
    "there is a {colour} {shape} in the image.",
    "the {shape} is {colour}.",
    "{colour} {shape}.",
    "a drawing of a {colour} {shape}.",
    "one {colour} {shape}.",
    "this is a {colour} {shape}.",
    "an icon of a {colour} {shape}.",
    "a {colour} coloured {shape}.",
    "i see a {colour} {shape}.",
    "a {shape}, {colour}.",
    "a simple {colour} {shape}.",
    "a {shape} painted {colour}.",
    "look, a {colour} {shape}!",
    "a {colour} {shape} can be seen.",
    "here is a {shape} in {colour}.",
    "a rendering of a {colour} {shape}.",
    "the image contains a {colour} {shape}.",
)

#: Partial-caption templates (train split only): shape only.
PARTIAL_SHAPE_TEMPLATES: tuple[str, ...] = (
    "a {shape}.",
    "a picture of a {shape}.",
    "there is a {shape} in the image.",
    "the image contains a {shape}.",
)

#: Partial-caption templates (train split only): colour only.
PARTIAL_COLOUR_TEMPLATES: tuple[str, ...] = (
    "something {colour}.",
    "a {colour} object.",
    "a picture of something {colour}.",
    "the object is {colour}.",
)

#: Held-out templates: text-text retrieval queries and gallery; never used for training.
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "an image showing a {colour} {shape}.",
    "a {colour} {shape} is shown here.",
    "the {colour} {shape} in this scene.",
    "a sketch of a {shape} coloured {colour}.",
    "somewhere there is a {colour} {shape}.",
    "a {shape} whose colour is {colour}.",
    "we can spot a {colour} {shape}.",
    "my {shape} is {colour}.",
)

#: Default zero-shot prompts (canonical names; disjoint from the caption templates).
ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {colour} {shape}.",
    "a photo of the {colour} {shape}.",
    "a clear photo of a {colour} {shape}.",
)

_ARTICLE = re.compile(r"\ba (?=[aeiou])")


def fill_template(template: str, shape: str = "", colour: str = "") -> str:
    """``template`` with ``{shape}``/``{colour}`` filled and "a" before a vowel made "an"."""
    return _ARTICLE.sub("an ", template.format(shape=shape, colour=colour))


# --------------------------------------------------------------------------------------------
# Rendering constants. Each nuisance amplitude is multiplied by WorldConfig.nuisance.
# --------------------------------------------------------------------------------------------

_RADIUS_FRAC = 0.28      # object radius / image size at nuisance 0
_SIZE_JITTER = 0.35      # radius × (1 ± 0.35)
_MAX_ROTATION = 30.0     # degrees, ±
_HUE_JITTER = 10.0       # degrees, ±
_SAT_JITTER = 0.12       # ±
_VAL_JITTER = 0.15       # ±
_BG_VALUE = 0.5          # background grey at nuisance 0
_BG_VALUE_JITTER = 0.3   # background value 0.5 ± 0.3
_BG_MAX_SAT = 0.25       # background tint saturation in [0, 0.25]: far below objects' ≥ 0.38
_PATTERN_MAX_AMP = 0.35  # background × (1 + amp·pattern), pattern in [-1, 1]
_PATTERNS = ("none", "stripes", "checker", "gradient", "waves")
_BLOB_PROB = 0.6         # probability of a distractor blob
_BLOB_RADIUS = (1.5, 3.5)  # pixels at 32 px, scales with image size
_BLOB_GREY = (0.3, 0.8)  # neutral grey levels (saturation 0: no class colour)
_NOISE_STD = 0.035       # pixel noise std in [0, 1] units
_CHUNK = 1024            # images rendered at once (bounds memory; output independent of it)

_SPLIT_IDS = {"train": 0, "query": 1, "gallery": 2, "text": 3}
_IMAGE_FIELDS = ("image_size", "shapes", "colours", "nuisance", "seed")
#: The WorldConfig fields that determine each split (and so its name).
_SPLIT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "train": _IMAGE_FIELDS + ("n_train_per_class", "partial_frac"),
    "query": _IMAGE_FIELDS + ("n_query_per_class",),
    "gallery": _IMAGE_FIELDS + ("n_gallery_per_class",),
    "text_query": ("shapes", "colours", "seed", "n_text_query_per_class"),
    "text_gallery": ("shapes", "colours", "seed", "n_text_gallery_per_class"),
})
_STREAM_LAYOUT, _STREAM_NOISE, _STREAM_CAPTIONS, _STREAM_SCENES = 0, 1, 2, 3
#: Values of :attr:`WorldConfig.scene`.
SCENES = ("single", "compositional")
#: Fields used only by compositional worlds (and their defaults, required for single ones).
_COMPOSITIONAL_FIELDS = ("max_objects", "mention_prob")
_COMPOSITIONAL_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {"max_objects": 3, "mention_prob": 0.5})


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"WorldConfig.{name}: expected an int >= {minimum}, got bool {value}")
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"WorldConfig.{name}: expected an int >= {minimum}, "
                         f"got {type(value).__name__} {value!r}") from None
    if v < minimum:
        raise ValueError(f"WorldConfig.{name}: expected an int >= {minimum}, got {v}")
    return v


def _as_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"WorldConfig.{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


def _as_names(name: str, value: object, registry: Mapping) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(f"WorldConfig.{name}: expected a sequence of names from "
                         f"{list(registry)}, got {value!r}")
    names = tuple(value)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"WorldConfig.{name}: unknown {unknown}; known: {list(registry)}")
    if len(names) < 2:
        raise ValueError(f"WorldConfig.{name}: expected at least 2 names, got {list(names)}")
    if len(set(names)) != len(names):
        raise ValueError(f"WorldConfig.{name}: duplicate names in {list(names)}")
    return names


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines a synthetic world (hashable: used as a memo key).

    Attributes:
        image_size: side of the square RGB images in pixels (>= 16).
        shapes: shape names from :data:`SHAPES` (>= 2, distinct).
        colours: colour names from :data:`COLOURS` (>= 2, distinct). Classes are all
            (shape, colour) pairs, shape-major: class ``i·len(colours) + j`` is
            (shapes[i], colours[j]).
        n_train_per_class: training image-caption pairs per class (>= 1).
        n_query_per_class: image queries per class (image-image retrieval).
        n_gallery_per_class: gallery images per class.
        n_text_query_per_class: held-out-template caption queries per class.
        n_text_gallery_per_class: held-out-template gallery captions per class; text queries
            and gallery are distinct strings, so their sum is at most the number of distinct
            held-out captions of a class (templates × shape synonyms × colour synonyms).
        nuisance: strength in [0, 1] multiplying every nuisance factor. 0 means: object
            centred, radius ``0.28·image_size``, upright, prototype colour, uniform grey
            background (RGB 128), no blob, no pixel noise.
        partial_frac: fraction of training captions that name only the shape or only the
            colour (half each), in [0, 1].
        seed: non-negative int seeding every split's random streams.
        scene: ``"single"`` (default: one object, captions name its shape and colour) or
            ``"compositional"`` (:mod:`isoclip.data.compositional`: 1 to ``max_objects``
            objects, the main one with a size and a fill, a relation to the others, captions
            mentioning random subsets of these; the class is the main object's shape and
            colour).
        max_objects: compositional only: most objects per scene, in [1, 4].
        mention_prob: compositional only: probability that a caption mentions each optional
            attribute (main object's size and fill, relation, second object's colour, count).

    The compositional fields left at their defaults do not enter :attr:`name` or
    :meth:`split_name`, so single-object worlds keep the names (and caches) they had before
    those fields existed.
    """

    image_size: int = 32
    shapes: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "heart")
    colours: tuple[str, ...] = ("red", "green", "blue", "yellow")
    n_train_per_class: int = 500
    n_query_per_class: int = 40
    n_gallery_per_class: int = 80
    n_text_query_per_class: int = 20
    n_text_gallery_per_class: int = 40
    nuisance: float = 1.0
    partial_frac: float = 0.1
    seed: int = 0
    scene: str = "single"
    max_objects: int = 3
    mention_prob: float = 0.5

    def __post_init__(self) -> None:
        fix = functools.partial(object.__setattr__, self)
        fix("image_size", _as_int("image_size", self.image_size, 16))
        fix("shapes", _as_names("shapes", self.shapes, SHAPES))
        fix("colours", _as_names("colours", self.colours, COLOURS))
        fix("n_train_per_class", _as_int("n_train_per_class", self.n_train_per_class, 1))
        for f in ("n_query_per_class", "n_gallery_per_class", "n_text_query_per_class",
                  "n_text_gallery_per_class"):
            fix(f, _as_int(f, getattr(self, f), 0))
        fix("nuisance", _as_fraction("nuisance", self.nuisance))
        fix("partial_frac", _as_fraction("partial_frac", self.partial_frac))
        fix("seed", _as_int("seed", self.seed, 0))
        if self.scene not in SCENES:
            raise ValueError(f"WorldConfig.scene: expected one of {SCENES}, got {self.scene!r}")
        fix("max_objects", _as_int("max_objects", self.max_objects, 1))
        from .compositional import MAX_OBJECTS
        if self.max_objects > MAX_OBJECTS:
            raise ValueError(f"WorldConfig.max_objects: expected an int in [1, {MAX_OBJECTS}], "
                             f"got {self.max_objects}")
        fix("mention_prob", _as_fraction("mention_prob", self.mention_prob))
        if self.scene == "single":
            for f in _COMPOSITIONAL_FIELDS:
                if getattr(self, f) != _COMPOSITIONAL_DEFAULTS[f]:
                    raise ValueError(f"WorldConfig.{f}: only used with scene='compositional' "
                                     f"(scene is 'single'); got {getattr(self, f)!r}")
            self._check_heldout_budget()

    def _check_heldout_budget(self) -> None:
        available = len(HELDOUT_TEMPLATES) * min(len(SHAPES[s].synonyms) for s in self.shapes) \
            * min(len(COLOURS[c].synonyms) for c in self.colours)
        wanted = self.n_text_query_per_class + self.n_text_gallery_per_class
        if wanted > available:
            raise ValueError(
                f"WorldConfig.n_text_query_per_class + n_text_gallery_per_class: expected at "
                f"most {available} (distinct held-out captions of the poorest class), got "
                f"{self.n_text_query_per_class} + {self.n_text_gallery_per_class} = {wanted}")

    @property
    def classes(self) -> list[tuple[str, str]]:
        """(shape, colour) of every class, shape-major."""
        return [(s, c) for s in self.shapes for c in self.colours]

    @property
    def class_names(self) -> list[str]:
        """Canonical class names, e.g. ``"red circle"``."""
        return [f"{c} {s}" for s, c in self.classes]

    def _key_fields(self, fields: Sequence[str]) -> dict[str, object]:
        """``fields`` plus the compositional ones unless the scene is single-object."""
        out = {f: getattr(self, f) for f in fields}
        if self.scene != "single":
            out.update({f: getattr(self, f) for f in ("scene",) + _COMPOSITIONAL_FIELDS})
        return out

    @property
    def name(self) -> str:
        """``"synthetic-<12 hex>"``: a stable hash of all fields and the generator version."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("scene",) + _COMPOSITIONAL_FIELDS}
        return (f"synthetic-"
                f"{stable_hash({'generator': GENERATOR_VERSION, **self._key_fields(fields)})[:12]}")

    def split_name(self, split: str) -> str:
        """Dataset name ``"synthetic-<12 hex>/<split>"`` of one split.

        The hash covers the generator version and exactly the fields that determine that
        split, so e.g. changing ``n_query_per_class`` keeps the train split's name (and with
        it the trained model's cache key), as it keeps the train split's bytes.
        """
        if split not in _SPLIT_FIELDS:
            raise ValueError(f"split: expected one of {list(_SPLIT_FIELDS)}, got {split!r}")
        fields = self._key_fields(_SPLIT_FIELDS[split])
        return f"synthetic-{stable_hash({'generator': GENERATOR_VERSION, **fields})[:12]}/{split}"


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV (hue in degrees, s and v in [0, 1]) arrays of shape [...] -> RGB [..., 3]."""
    k = (np.array([5.0, 3.0, 1.0]) + (np.asarray(h)[..., None] % 360.0) / 60.0) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    v, s = np.asarray(v)[..., None], np.asarray(s)[..., None]
    return v - v * s * ramp


def object_coverage(shape: ShapeSpec, size: int, centre: np.ndarray, radius: np.ndarray,
                    angle_deg: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of ``n`` objects of one shape on ``size``×``size`` canvases.

    Args:
        shape: the shape to draw.
        size: canvas side in pixels.
        centre: [n, 2] object centres (x, y) in pixels (y down, pixel centres at +0.5).
        radius: [n] object radii in pixels (the shape's unit).
        angle_deg: [n] counter-clockwise rotations in degrees.

    Returns:
        float32 [n, size, size] in [0, 1]: ``clip(0.5 - d, 0, 1)`` with ``d`` the signed
        distance to the shape's edge in pixels (≈ the box-filtered area coverage).
    """
    x, y, r = object_frame(size, centre, radius, angle_deg)
    return np.clip(0.5 - shape.sdf(x, y) * r, 0.0, 1.0).astype(np.float32)


def object_frame(size: int, centre: np.ndarray, radius: np.ndarray, angle_deg: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel of ``n`` canvases in each object's own frame (unit = its radius, y up).

    Args: as :func:`object_coverage`.

    Returns:
        ``(x, y, r)``: float32 [n, size, size] object-frame coordinates and the radii
        broadcast to [n, 1, 1].
    """
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - centre[:, 0, None, None].astype(np.float32)
    dy = grid[None, :, None] - centre[:, 1, None, None].astype(np.float32)
    a = np.deg2rad(angle_deg).astype(np.float32)[:, None, None]
    r = radius.astype(np.float32)[:, None, None]
    cos, sin = np.cos(a), np.sin(a)
    x = (dx * cos - dy * sin) / r       # rotate the canvas by -angle; y flipped to point up
    y = -(dx * sin + dy * cos) / r
    return x, y, r


def _background(size: int, nuisance: float, u: Mapping[str, np.ndarray]) -> np.ndarray:
    """Background [n, size, size, 3] in [0, 1] from the layout variates ``u`` (see _layout)."""
    n = len(u["bg_hue"])
    tint = hsv_to_rgb(u["bg_hue"], nuisance * _BG_MAX_SAT * u["bg_sat"],
                      _BG_VALUE + nuisance * _BG_VALUE_JITTER * u["bg_val"])
    grid = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * (32.0 / size)
    gx, gy = grid[None, None, :], grid[None, :, None]

    def along(theta: np.ndarray) -> np.ndarray:
        """Signed distance from the centre along direction theta [m]: [m, size, size]."""
        return gx * np.cos(theta)[:, None, None] + gy * np.sin(theta)[:, None, None]

    def wave(freq: np.ndarray, theta: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Plane waves [m, size, size]; freq (cycles/px at 32 px), theta, phase: [m]."""
        return np.sin(2 * np.pi * freq[:, None, None] * along(theta) + phase[:, None, None])

    kind = u["pattern"]
    freq = 1 / 16 + u["pat_freq"] * (1 / 4 - 1 / 16)  # periods of 4-16 px at 32 px
    theta, phase = u["pat_theta"], u["pat_phase"]
    pattern = np.zeros((n, size, size), dtype=np.float32)
    for k, name in enumerate(_PATTERNS):
        i = np.flatnonzero(kind == k)
        if not len(i) or name == "none":
            continue
        if name == "stripes":
            pattern[i] = wave(freq[i], theta[i], phase[i])
        elif name == "checker":  # soft checkerboard: product of two orthogonal waves
            pattern[i] = wave(freq[i], theta[i], phase[i]) * wave(freq[i], theta[i] + np.pi / 2,
                                                                  phase[i])
        elif name == "gradient":  # linear ramp across the image
            pattern[i] = np.clip(along(theta[i]) / 16.0, -1.0, 1.0)
        else:  # waves ("smooth noise"): three random plane waves, periods 4-16 px at 32 px
            w = u["wave"][i]  # [m, 3, 3]: (frequency, orientation, phase) variates
            pattern[i] = sum(wave(1 / 16 + w[:, j, 0] * 3 / 16, np.pi * w[:, j, 1],
                                  2 * np.pi * w[:, j, 2]) for j in range(3)) / math.sqrt(3.0)
    amp = (nuisance * _PATTERN_MAX_AMP * u["pat_amp"]).astype(np.float32)[:, None, None, None]
    return tint[:, None, None, :].astype(np.float32) * (1.0 + amp * pattern[..., None])


def _layout(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """All per-image random variates of a split, drawn in a fixed order, in [0,1) or [-1,1)."""
    def sym(*shape: int) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=shape)

    def uni(*shape: int) -> np.ndarray:
        return rng.uniform(0.0, 1.0, size=shape)

    return {
        "pos": sym(n, 2), "size": sym(n), "rot": sym(n), "col": sym(n, 3),
        "bg_hue": uni(n) * 360.0, "bg_sat": uni(n), "bg_val": sym(n),
        "pattern": rng.integers(0, len(_PATTERNS), size=n), "pat_amp": uni(n),
        "pat_freq": uni(n), "pat_theta": uni(n) * np.pi, "pat_phase": uni(n) * 2 * np.pi,
        "wave": uni(n, 3, 3),
        "blob": uni(n), "blob_pos": uni(n, 2), "blob_r": uni(n), "blob_grey": uni(n),
    }


def _render(cfg: WorldConfig, labels: np.ndarray, split_id: int) -> np.ndarray:
    """Images uint8 [n, S, S, 3] of the given class labels [n] for split ``split_id``."""
    n, size, nu = len(labels), cfg.image_size, cfg.nuisance
    layout = _layout(np.random.default_rng([cfg.seed, split_id, _STREAM_LAYOUT]), n)
    noise_rng = np.random.default_rng([cfg.seed, split_id, _STREAM_NOISE])
    shape_of = labels // len(cfg.colours)
    colour_of = labels % len(cfg.colours)
    specs = [COLOURS[c] for c in cfg.colours]
    proto = np.array([[c.hue, c.saturation, c.value] for c in specs])[colour_of]
    rgb = hsv_to_rgb(proto[:, 0] + nu * _HUE_JITTER * layout["col"][:, 0],
                     np.clip(proto[:, 1] + nu * _SAT_JITTER * layout["col"][:, 1], 0, 1),
                     np.clip(proto[:, 2] + nu * _VAL_JITTER * layout["col"][:, 2], 0, 1))
    radius = size * _RADIUS_FRAC * (1.0 + nu * _SIZE_JITTER * layout["size"])
    slack = np.maximum(size / 2 - SHAPE_EXTENT * radius - 0.5, 0.0)
    centre = size / 2 + nu * layout["pos"] * slack[:, None]
    angle = nu * _MAX_ROTATION * layout["rot"]
    blob_on = layout["blob"] < nu * _BLOB_PROB
    blob_r = (size / 32) * (_BLOB_RADIUS[0] + layout["blob_r"] * np.diff(_BLOB_RADIUS)[0])
    blob_grey = _BLOB_GREY[0] + layout["blob_grey"] * np.diff(_BLOB_GREY)[0]

    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for lo in range(0, n, _CHUNK):
        sl = slice(lo, min(lo + _CHUNK, n))
        m = sl.stop - sl.start
        img = _background(size, nu, {k: v[sl] for k, v in layout.items()})
        on = np.flatnonzero(blob_on[sl])
        if len(on):  # the blob is behind the object: it never hides the shape
            a = object_coverage(_BLOB, size, layout["blob_pos"][sl][on] * size,
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
            img += (nu * _NOISE_STD) * noise_rng.standard_normal(img.shape, dtype=np.float32)
        out[sl] = np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------
# Captions and splits
# --------------------------------------------------------------------------------------------

def _captions(cfg: WorldConfig, labels: np.ndarray, split_id: int, partial_frac: float
              ) -> list[str]:
    """One caption per label: a training template with random synonyms; a ``partial_frac``
    share names only the shape or only the colour."""
    rng = np.random.default_rng([cfg.seed, split_id, _STREAM_CAPTIONS])
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
    sid = _SPLIT_IDS[split]
    labels = _balanced_labels(cfg, n_per_class, sid)
    ds = ImageDataset(images=_frozen(_render(cfg, labels, sid)), labels=labels,
                      class_names=cfg.class_names, name=cfg.split_name(split),
                      captions=_captions(cfg, labels, sid, partial_frac))
    _frozen(ds.labels)
    return ds


def _compositional_split(cfg: WorldConfig, split: str, n_per_class: int,
                         partial_frac: float) -> tuple[ImageDataset, Any]:
    """An image split of a compositional world and its :class:`~.compositional.Scenes`."""
    from . import compositional as comp

    sid = _SPLIT_IDS[split]
    labels = _balanced_labels(cfg, n_per_class, sid)
    scenes = comp.sample_scenes(cfg, labels, np.random.default_rng([cfg.seed, sid, _STREAM_SCENES]))
    caps = comp.captions(cfg, scenes, np.random.default_rng([cfg.seed, sid, _STREAM_CAPTIONS]),
                         comp.TRAIN_WRAPPERS, partial_frac)
    ds = ImageDataset(images=_frozen(comp.render(cfg, scenes, sid)), labels=labels,
                      class_names=cfg.class_names, name=cfg.split_name(split), captions=caps)
    _frozen(ds.labels)
    return ds, scenes


def _compositional_text_splits(cfg: WorldConfig
                               ) -> tuple[TextDataset, TextDataset, Any, Any]:
    """Text query / gallery splits of a compositional world and their scenes."""
    from . import compositional as comp

    rng = np.random.default_rng([cfg.seed, _SPLIT_IDS["text"]])
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
    rng = np.random.default_rng([cfg.seed, _SPLIT_IDS["text"]])
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
            :class:`isoclip.data.compositional.Scenes`, row-aligned with the split.

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


def make_world(cfg: WorldConfig = WorldConfig(), *, cache: bool = True) -> SyntheticWorld:
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
    """Which shape and colour each caption mentions: float32 multi-hot [N, |SHAPES|+|COLOURS|].

    Columns are the shapes of :data:`SHAPES` then the colours of :data:`COLOURS` (every
    registered one, so the columns do not depend on the world). A synonym counts as a whole
    phrase (longest first, a matched span is consumed), so "square block" is one mention of
    *square* and "leafy green" one of *green*. A full caption has two ones, a partial caption
    one. This is exact for captions of this generator, offline and without any model: it is
    what a sentence embedder would have to recover from them.

    Raises:
        ValueError: a caption that mentions no registered shape or colour (the message quotes
            it): these semantics only exist for captions of :mod:`isoclip.data.synthetic`.
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
                "isoclip.data.synthetic (SHAPES / COLOURS synonyms); attribute semantics "
                "exist only for the synthetic world's captions")
    return out
