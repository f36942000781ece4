"""The configuration of a synthetic world (:class:`WorldConfig`): which shapes and colours,
how many items per split, the nuisance level, the scene type and the seed.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from isoclip.common.cache import stable_hash
from isoclip.data.world.primitives import (
    COLOURS,
    COMPOSITIONAL_DEFAULTS,
    COMPOSITIONAL_FIELDS,
    GENERATOR_VERSION,
    HELDOUT_TEMPLATES,
    SCENES,
    SHAPES,
    SPLIT_FIELDS,
)

# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------

def _as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool):  # every bad WorldConfig field is a ValueError naming it
        raise ValueError(  # noqa: TRY004
            f"WorldConfig.{name}: expected an int >= {minimum}, got bool {value}")
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


def _as_names(name: str, value: object, registry: Mapping[str, object]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):  # ValueError, as every field
        raise ValueError(f"WorldConfig.{name}: expected a sequence of names from "  # noqa: TRY004
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
            ``"compositional"`` (:mod:`isoclip.data.world.compositional`: 1 to ``max_objects``
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
        from isoclip.data.world.primitives import MAX_OBJECTS
        if self.max_objects > MAX_OBJECTS:
            raise ValueError(f"WorldConfig.max_objects: expected an int in [1, {MAX_OBJECTS}], "
                             f"got {self.max_objects}")
        fix("mention_prob", _as_fraction("mention_prob", self.mention_prob))
        if self.scene == "single":
            for f in COMPOSITIONAL_FIELDS:
                if getattr(self, f) != COMPOSITIONAL_DEFAULTS[f]:
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

    def _key_fields(self, fields: Iterable[str]) -> dict[str, object]:
        """``fields`` plus the compositional ones unless the scene is single-object."""
        out = {f: getattr(self, f) for f in fields}
        if self.scene != "single":
            out.update({f: getattr(self, f) for f in ("scene",) + COMPOSITIONAL_FIELDS})
        return out

    @property
    def name(self) -> str:
        """``"synthetic-<12 hex>"``: a stable hash of all fields and the generator version."""
        fields = {k: v for k, v in asdict(self).items()
                  if k not in ("scene",) + COMPOSITIONAL_FIELDS}
        return (f"synthetic-"
                f"{stable_hash({'generator': GENERATOR_VERSION, **self._key_fields(fields)})[:12]}")

    def split_name(self, split: str) -> str:
        """Dataset name ``"synthetic-<12 hex>/<split>"`` of one split.

        The hash covers the generator version and exactly the fields that determine that
        split, so e.g. changing ``n_query_per_class`` keeps the train split's name (and with
        it the trained model's cache key), as it keeps the train split's bytes.
        """
        if split not in SPLIT_FIELDS:
            raise ValueError(f"split: expected one of {list(SPLIT_FIELDS)}, got {split!r}")
        fields = self._key_fields(SPLIT_FIELDS[split])
        return f"synthetic-{stable_hash({'generator': GENERATOR_VERSION, **fields})[:12]}/{split}"
