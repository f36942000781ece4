"""Primitives of the synthetic world shared by the single-object and the compositional
scenes: shapes (signed distance functions), colours, caption templates, rendering
constants, the background and the per-image random variates.

Nothing here draws a whole split; :mod:`isoclip.data.world.synthetic` and
:mod:`isoclip.data.world.compositional` do, from these pieces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

import numpy as np

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
    d: np.ndarray = outside + np.minimum(np.maximum(qx, qy), 0.0)
    return d


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
    d: np.ndarray = np.where(inside, -1.0, 1.0) * np.sqrt(d2)
    return d


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
    d: np.ndarray = np.hypot(x, y) - 0.88
    return d


def _sdf_square(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _box(x, y, 0.76, 0.76)


def _sdf_triangle(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _TRIANGLE)


def _sdf_star(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return _polygon(x, y, _STAR)


def _sdf_cross(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d: np.ndarray = np.minimum(_box(x, y, 0.95, 0.32), _box(x, y, 0.32, 0.95))
    return d


def _sdf_heart(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # A square rotated by 45° (tip down) with two discs on its upper edges.
    h, cy = 0.8, -0.12  # half-diagonal of the square, its centre's height
    r = h / math.sqrt(2.0)
    u, v = (x + (y - cy)) / math.sqrt(2.0), ((y - cy) - x) / math.sqrt(2.0)
    square = _box(u, v, r, r)
    left = np.hypot(x + h / 2, y - (cy + h / 2)) - r
    right = np.hypot(x - h / 2, y - (cy + h / 2)) - r
    d: np.ndarray = np.minimum(square, np.minimum(left, right))
    return d


def _sdf_ring(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d: np.ndarray = np.abs(np.hypot(x, y) - 0.68) - 0.3
    return d


def _sdf_crescent(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d: np.ndarray = np.maximum(np.hypot(x, y) - 0.95, -(np.hypot(x - 0.45, y - 0.25) - 0.72))
    return d


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
BLOB = ShapeSpec("blob", (), lambda x, y: np.hypot(x, y) - 1.0)


_Spec = TypeVar("_Spec", ShapeSpec, ColourSpec)


def _registry(specs: Sequence[_Spec]) -> Mapping[str, _Spec]:
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

ARTICLE = re.compile(r"\ba (?=[aeiou])")


def fill_template(template: str, shape: str = "", colour: str = "") -> str:
    """``template`` with ``{shape}``/``{colour}`` filled and "a" before a vowel made "an"."""
    return ARTICLE.sub("an ", template.format(shape=shape, colour=colour))


# --------------------------------------------------------------------------------------------
# Rendering constants. Each nuisance amplitude is multiplied by WorldConfig.nuisance.
# --------------------------------------------------------------------------------------------

RADIUS_FRAC = 0.28      # object radius / image size at nuisance 0
SIZE_JITTER = 0.35      # radius × (1 ± 0.35)
MAX_ROTATION = 30.0     # degrees, ±
HUE_JITTER = 10.0       # degrees, ±
SAT_JITTER = 0.12       # ±
VAL_JITTER = 0.15       # ±
_BG_VALUE = 0.5          # background grey at nuisance 0
_BG_VALUE_JITTER = 0.3   # background value 0.5 ± 0.3
_BG_MAX_SAT = 0.25       # background tint saturation in [0, 0.25]: far below objects' ≥ 0.38
_PATTERN_MAX_AMP = 0.35  # background × (1 + amp·pattern), pattern in [-1, 1]
_PATTERNS = ("none", "stripes", "checker", "gradient", "waves")
BLOB_PROB = 0.6         # probability of a distractor blob
BLOB_RADIUS = (1.5, 3.5)  # pixels at 32 px, scales with image size
BLOB_GREY = (0.3, 0.8)  # neutral grey levels (saturation 0: no class colour)
NOISE_STD = 0.035       # pixel noise std in [0, 1] units
RENDER_CHUNK = 1024            # images rendered at once (bounds memory; output independent of it)

SPLIT_IDS = {"train": 0, "query": 1, "gallery": 2, "text": 3}
_IMAGE_FIELDS = ("image_size", "shapes", "colours", "nuisance", "seed")
#: The WorldConfig fields that determine each split (and so its name).
SPLIT_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "train": _IMAGE_FIELDS + ("n_train_per_class", "partial_frac"),
    "query": _IMAGE_FIELDS + ("n_query_per_class",),
    "gallery": _IMAGE_FIELDS + ("n_gallery_per_class",),
    "text_query": ("shapes", "colours", "seed", "n_text_query_per_class"),
    "text_gallery": ("shapes", "colours", "seed", "n_text_gallery_per_class"),
})
STREAM_LAYOUT, STREAM_NOISE, STREAM_CAPTIONS, STREAM_SCENES = 0, 1, 2, 3
#: Values of :attr:`WorldConfig.scene`.
SCENES = ("single", "compositional")
#: Fields used only by compositional worlds (and their defaults, required for single ones).
COMPOSITIONAL_FIELDS = ("max_objects", "mention_prob")
COMPOSITIONAL_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {"max_objects": 3, "mention_prob": 0.5})

#: Largest ``max_objects`` (the main object plus up to three others).
MAX_OBJECTS = 4


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """HSV (hue in degrees, s and v in [0, 1]) arrays of shape [...] -> RGB [..., 3]."""
    k = (np.array([5.0, 3.0, 1.0]) + (np.asarray(h)[..., None] % 360.0) / 60.0) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    v, s = np.asarray(v)[..., None], np.asarray(s)[..., None]
    rgb: np.ndarray = v - v * s * ramp
    return rgb


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
    coverage: np.ndarray = np.clip(0.5 - shape.sdf(x, y) * r, 0.0, 1.0).astype(np.float32)
    return coverage


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


def render_background(size: int, nuisance: float, u: Mapping[str, np.ndarray]) -> np.ndarray:
    """Background [n, size, size, 3] in [0, 1] from the layout variates ``u`` (see draw_layout)."""
    n = len(u["bg_hue"])
    tint = hsv_to_rgb(u["bg_hue"], nuisance * _BG_MAX_SAT * u["bg_sat"],
                      _BG_VALUE + nuisance * _BG_VALUE_JITTER * u["bg_val"])
    grid = (np.arange(size, dtype=np.float32) + 0.5 - size / 2) * (32.0 / size)
    gx, gy = grid[None, None, :], grid[None, :, None]

    def along(theta: np.ndarray) -> np.ndarray:
        """Signed distance from the centre along direction theta [m]: [m, size, size]."""
        d: np.ndarray = gx * np.cos(theta)[:, None, None] + gy * np.sin(theta)[:, None, None]
        return d

    def wave(freq: np.ndarray, theta: np.ndarray, phase: np.ndarray) -> np.ndarray:
        """Plane waves [m, size, size]; freq (cycles/px at 32 px), theta, phase: [m]."""
        w: np.ndarray = np.sin(2 * np.pi * freq[:, None, None] * along(theta)
                               + phase[:, None, None])
        return w

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


def draw_layout(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
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
