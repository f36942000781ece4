"""The synthetic world (embedded default data) and the dataset containers it fills."""

from __future__ import annotations

import functools
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import isoclip
from isoclip.data import ImageDataset, TextDataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import (
    COLOURS,
    HELDOUT_TEMPLATES,
    MAX_CAPTION_TOKENS,
    PARTIAL_COLOUR_TEMPLATES,
    PARTIAL_SHAPE_TEMPLATES,
    SHAPE_EXTENT,
    SHAPES,
    TRAIN_TEMPLATES,
    ZERO_SHOT_TEMPLATES,
    fill_template,
    hsv_to_rgb,
    object_coverage,
)
from isoclip.data.world.synthetic import make_world, zero_shot_prompts

SMALL = WorldConfig(n_train_per_class=12, n_query_per_class=3, n_gallery_per_class=5,
                    n_text_query_per_class=4, n_text_gallery_per_class=6)
#: Every registered shape and colour: 64 classes, exercises all synonyms and SDFs.
ALL = replace(SMALL, shapes=tuple(SHAPES), colours=tuple(COLOURS), n_train_per_class=25)


def _phrase_regex(phrases: list[str]) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(re.escape(p) for p in phrases) + r")\b")


SHAPE_RE = {s: _phrase_regex(list(spec.synonyms)) for s, spec in SHAPES.items()}
COLOUR_RE = {c: _phrase_regex(list(spec.synonyms)) for c, spec in COLOURS.items()}


def _mentions(text: str) -> tuple[set[str], set[str]]:
    """(shapes, colours) whose synonyms occur in ``text`` as whole phrases."""
    return ({s for s, r in SHAPE_RE.items() if r.search(text)},
            {c for c, r in COLOUR_RE.items() if r.search(text)})


@functools.cache
def _template_regex(template: str) -> re.Pattern[str]:
    """Full-match regex of every caption ``template`` can produce (any synonyms)."""
    shapes = sorted({s for spec in SHAPES.values() for s in spec.synonyms}, key=len)[::-1]
    colours = sorted({c for spec in COLOURS.values() for c in spec.synonyms}, key=len)[::-1]
    alt = lambda words: "(?:" + "|".join(re.escape(w) for w in words) + ")"
    parts = re.split(r"(\{shape\}|\{colour\})", _no_an(template))
    return re.compile("".join(alt(shapes) if p == "{shape}" else alt(colours)
                              if p == "{colour}" else re.escape(p) for p in parts))


def _no_an(text: str) -> str:
    """"an" -> "a" (templates write "a {colour}", captions fix it to "an azure")."""
    return re.sub(r"\ban\b", "a", text)


def _matching(text: str, templates: tuple[str, ...]) -> list[str]:
    return [t for t in templates if _template_regex(t).fullmatch(_no_an(text))]


@pytest.fixture(scope="module")
def small():
    return make_world(SMALL, cache=False)


@pytest.fixture(scope="module")
def every_class():
    return make_world(ALL, cache=False)


# ---------------------------------------------------------------------------- determinism

def test_same_config_gives_identical_bytes(small) -> None:
    again = make_world(SMALL, cache=False)
    assert again is not small
    for split in ("train", "query", "gallery"):
        a, b = getattr(small, split), getattr(again, split)
        assert a.images.tobytes() == b.images.tobytes()
        assert a.labels.tobytes() == b.labels.tobytes()
        assert a.captions == b.captions
        assert a.name == b.name and a.fingerprint() == b.fingerprint()
    for split in ("text_query", "text_gallery"):
        a, b = getattr(small, split), getattr(again, split)
        assert a.texts == b.texts and a.fingerprint() == b.fingerprint()
    assert small.prompts == again.prompts


def test_different_seed_changes_everything_random(small) -> None:
    other = make_world(replace(SMALL, seed=1), cache=False)
    for split in ("train", "query", "gallery"):
        a, b = getattr(small, split), getattr(other, split)
        assert a.images.tobytes() != b.images.tobytes()
        assert a.captions != b.captions
        assert not np.array_equal(a.labels, b.labels)
        assert a.name != b.name
    assert small.text_query.texts != other.text_query.texts
    assert small.prompts == other.prompts  # prompts depend on the classes only


def test_memo_returns_the_same_world_and_arrays_are_read_only() -> None:
    w = make_world(SMALL)
    assert make_world(replace(SMALL)) is w
    with pytest.raises(ValueError, match="read-only"):
        w.train.images[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        w.train.labels[0] = 0
    with pytest.raises(TypeError, match="WorldConfig"):
        make_world({"seed": 0})  # type: ignore[arg-type]


def test_train_split_unchanged_when_other_splits_are_resized(small) -> None:
    other = make_world(replace(SMALL, n_query_per_class=7, n_gallery_per_class=1,
                               n_text_query_per_class=1), cache=False)
    assert other.train.images.tobytes() == small.train.images.tobytes()
    assert other.train.captions == small.train.captions
    assert other.train.fingerprint() == small.train.fingerprint()  # same name: same cache key
    # The text gallery is the tail of each class's shuffle: independent of the query size.
    assert other.text_gallery.texts == small.text_gallery.texts
    assert other.query.name != small.query.name


# ------------------------------------------------------------------------------ structure

def test_shapes_dtypes_names_and_exact_class_balance(small) -> None:
    cfg = SMALL
    n_cls = len(cfg.shapes) * len(cfg.colours)
    assert small.class_names[0] == "red circle" and len(small.class_names) == n_cls == 24
    assert small.classes[0] == ("circle", "red")
    assert [f"{c} {s}" for s, c in small.classes] == small.class_names
    for split, n in (("train", 12), ("query", 3), ("gallery", 5)):
        ds = getattr(small, split)
        assert ds.images.dtype == np.uint8 and ds.images.shape == (n_cls * n, 32, 32, 3)
        assert ds.labels.dtype == np.int64
        assert np.bincount(ds.labels, minlength=n_cls).tolist() == [n] * n_cls
        assert ds.class_names == small.class_names
        assert re.fullmatch(rf"synthetic-[0-9a-f]{{12}}/{split}", ds.name)
    for split, n in (("text_query", 4), ("text_gallery", 6)):
        ds = getattr(small, split)
        assert np.bincount(ds.labels, minlength=n_cls).tolist() == [n] * n_cls
        assert ds.name.endswith(f"/{split}")
    assert len({getattr(small, s).name for s in ("train", "query", "gallery")}) == 3
    assert len(small.prompts) == n_cls and all(len(p) == len(ZERO_SHOT_TEMPLATES)
                                               for p in small.prompts)
    assert small.prompts[0][0] == "a photo of a red circle."


def test_image_size_is_configurable() -> None:
    w = make_world(replace(SMALL, image_size=48, n_train_per_class=1, n_query_per_class=0,
                           n_gallery_per_class=0), cache=False)
    assert w.train.images.shape == (24, 48, 48, 3)
    assert w.query.images.shape == (0, 48, 48, 3) and len(w.query.captions) == 0


# ------------------------------------------------------------------------------- captions

def test_synonyms_are_unambiguous() -> None:
    for s, spec in SHAPES.items():
        assert spec.synonyms[0] == s
        for syn in spec.synonyms:
            assert _mentions(syn) == ({s}, set()), syn
    for c, spec in COLOURS.items():
        assert spec.synonyms[0] == c
        for syn in spec.synonyms:
            assert _mentions(syn) == (set(), {c}), syn
    templates = (TRAIN_TEMPLATES + PARTIAL_SHAPE_TEMPLATES + PARTIAL_COLOUR_TEMPLATES
                 + HELDOUT_TEMPLATES + ZERO_SHOT_TEMPLATES)
    for t in templates:  # template words never name a shape or colour
        assert _mentions(t.replace("{shape}", "").replace("{colour}", "")) == (set(), set()), t


def test_every_caption_names_its_class_and_nothing_else(every_class) -> None:
    w = every_class
    n_partial = 0
    for split in ("train", "query", "gallery"):
        ds = getattr(w, split)
        for text, label in zip(ds.captions, ds.labels, strict=True):
            shape, colour = w.classes[label]
            shapes, colours = _mentions(text)
            assert shapes <= {shape} and colours <= {colour}, (text, w.class_names[label])
            assert shapes or colours, text
            partial = not (shapes and colours)
            n_partial += partial
            assert not (partial and split != "train"), f"partial caption in {split}: {text!r}"
            assert not re.search(r"\ba [aeiou]", text), f"article: {text!r}"
    for ds in (w.text_query, w.text_gallery):
        for text, label in zip(ds.texts, ds.labels, strict=True):
            assert _mentions(text) == ({w.classes[label][0]}, {w.classes[label][1]}), text
    frac = n_partial / len(w.train)
    assert 0.06 < frac < 0.14, f"partial captions: {frac:.3f} of train, expected ≈ 0.1"


def test_partial_captions_name_exactly_one_attribute(every_class) -> None:
    kinds = {"shape": 0, "colour": 0}
    for text in every_class.train.captions:
        shapes, colours = _mentions(text)
        if not (shapes and colours):
            assert len(shapes) + len(colours) == 1, text
            kinds["shape" if shapes else "colour"] += 1
    assert min(kinds.values()) > 0, kinds


def test_template_sets_are_disjoint_and_used_where_documented(every_class) -> None:
    train_side = TRAIN_TEMPLATES + PARTIAL_SHAPE_TEMPLATES + PARTIAL_COLOUR_TEMPLATES
    assert len(TRAIN_TEMPLATES) >= 15 and len(HELDOUT_TEMPLATES) >= 6
    assert not set(train_side) & set(HELDOUT_TEMPLATES)
    assert not set(ZERO_SHOT_TEMPLATES) & (set(train_side) | set(HELDOUT_TEMPLATES))
    w = every_class
    used = set()
    for split in ("train", "query", "gallery"):
        for text in getattr(w, split).captions:
            match = _matching(text, train_side)
            assert match, f"{split} caption matches no training template: {text!r}"
            assert not _matching(text, HELDOUT_TEMPLATES), f"held-out template in {split}: {text!r}"
            assert not _matching(text, ZERO_SHOT_TEMPLATES), text
            used.update(match)
    assert set(TRAIN_TEMPLATES) <= used  # all templates occur (1600 training captions)
    for text in w.text_query.texts + w.text_gallery.texts:
        assert _matching(text, HELDOUT_TEMPLATES) and not _matching(text, train_side), text
    prompts = [p for per_class in w.prompts for p in per_class]
    for p in prompts:
        assert _matching(p, ZERO_SHOT_TEMPLATES), p
        assert not _matching(p, train_side + HELDOUT_TEMPLATES), p


def test_text_query_and_gallery_are_distinct_strings(every_class) -> None:
    q, g = every_class.text_query, every_class.text_gallery
    assert not set(q.texts) & set(g.texts)
    assert len(set(q.texts)) == len(q) and len(set(g.texts)) == len(g)


def test_every_template_fits_the_context_length() -> None:
    import open_clip

    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    n_tokens = lambda text: len(tokenizer.encode(text))
    # BPE works word by word, so the longest synonym in tokens gives the longest caption.
    shape = max((s for spec in SHAPES.values() for s in spec.synonyms), key=n_tokens)
    colour = max((c for spec in COLOURS.values() for c in spec.synonyms), key=n_tokens)
    templates = (TRAIN_TEMPLATES + PARTIAL_SHAPE_TEMPLATES + PARTIAL_COLOUR_TEMPLATES
                 + HELDOUT_TEMPLATES + ZERO_SHOT_TEMPLATES)
    longest = max((fill_template(t, shape, colour) for t in templates), key=n_tokens)
    assert n_tokens(longest) <= MAX_CAPTION_TOKENS, (longest, n_tokens(longest))
    configs = Path(isoclip.__file__).parent / "configs"
    for path in configs.glob("*.json"):  # our tiny models leave room for start + end tokens
        context = json.loads(path.read_text())["text_cfg"]["context_length"]
        assert context >= MAX_CAPTION_TOKENS + 2, path.name


def test_zero_shot_prompts() -> None:
    assert zero_shot_prompts(SMALL, ["{colour} {shape}"])[:2] == [["red circle"], ["green circle"]]
    assert zero_shot_prompts(replace(SMALL, colours=("orange", "red")), ["a {colour} {shape}"]
                             )[0] == ["an orange circle"]
    with pytest.raises(ValueError, match=r"\{shape\}"):
        zero_shot_prompts(SMALL, ["a photo of a {colour} thing"])
    with pytest.raises(ValueError, match="at least one"):
        zero_shot_prompts(SMALL, [])
    with pytest.raises(TypeError, match="SyntheticWorld or WorldConfig"):
        zero_shot_prompts("red circle")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ rendering

def test_nuisance_zero_means_uniform_background_centred_prototype() -> None:
    w = make_world(replace(SMALL, nuisance=0.0), cache=False)
    ims = w.train.images
    # Uniform grey background: every border pixel of every image is RGB 128.
    border = np.concatenate([ims[:, 0], ims[:, -1], ims[:, :, 0], ims[:, :, -1]], axis=1)
    assert (border == 128).all()
    # No jitter: all images of a class are identical; classes differ.
    for c in range(len(w.classes)):
        same = ims[w.train.labels == c]
        assert (same == same[0]).all()
    firsts = [ims[np.argmax(w.train.labels == c)].tobytes() for c in range(len(w.classes))]
    assert len(set(firsts)) == len(w.classes)


def test_nuisance_varies_the_background() -> None:
    ims = make_world(replace(SMALL, n_train_per_class=4), cache=False).train.images
    border = np.concatenate([ims[:, 0], ims[:, -1]], axis=1).astype(float)  # [N, 64, 3]
    assert border.std(axis=1).mean() > 3  # patterns + noise inside each image
    assert border.mean(axis=1).std(axis=0).min() > 15  # tint/brightness across images


def _object_mask(images: np.ndarray) -> np.ndarray:
    """Saturated pixels [N, H, W]: the object (backgrounds and blobs are ≤ 0.25 / grey)."""
    x = images.astype(np.float32) / 255
    mx, mn = x.max(-1), x.min(-1)
    return (mx - mn) / np.maximum(mx, 1e-6) > 0.45


def _hue(images: np.ndarray) -> np.ndarray:
    """Hue in degrees [N, H, W] (standard RGB -> HSV)."""
    x = images.astype(np.float32) / 255
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    mx, mn = x.max(-1), x.min(-1)
    c = np.maximum(mx - mn, 1e-6)
    h = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return h * 60


def test_colour_is_in_the_pixels() -> None:
    """Nearest-centroid on hue histograms of saturated pixels recovers the colour class."""
    w = make_world(replace(SMALL, n_train_per_class=20, n_query_per_class=0,
                           n_gallery_per_class=20), cache=False)

    def features(ds: ImageDataset) -> np.ndarray:
        mask, hue = _object_mask(ds.images), _hue(ds.images)
        hist = np.stack([np.histogram(h[m], bins=24, range=(0, 360))[0]
                         for h, m in zip(hue, mask, strict=True)]).astype(float)
        return hist / np.maximum(hist.sum(1, keepdims=True), 1)

    n_col = len(SMALL.colours)
    xtr, ytr = features(w.train), w.train.labels % n_col
    xte, yte = features(w.gallery), w.gallery.labels % n_col
    centroids = np.stack([xtr[ytr == c].mean(0) for c in range(n_col)])
    pred = np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).mean() > 0.95  # chance: 0.25


def test_shape_is_in_the_pixels() -> None:
    """At nuisance 0 an object's mask depends on its shape only, and shapes differ."""
    w = make_world(replace(ALL, n_train_per_class=1, nuisance=0.0), cache=False)
    masks = _object_mask(w.train.images)
    n_col = len(ALL.colours)
    by_shape = {}
    for m, label in zip(masks, w.train.labels, strict=True):
        by_shape.setdefault(label // n_col, []).append(m)
    for k, ms in by_shape.items():
        agree = np.mean([np.mean(m == ms[0]) for m in ms])
        assert agree > 0.98, (ALL.shapes[k], agree)
        assert 90 < ms[0].sum() < 300, (ALL.shapes[k], ms[0].sum())  # comparable sizes
    reps = [ms[0] for ms in by_shape.values()]
    for i in range(len(reps)):
        for j in range(i):
            iou = (reps[i] & reps[j]).sum() / (reps[i] | reps[j]).sum()
            assert iou < 0.9, (ALL.shapes[i], ALL.shapes[j], iou)


def test_object_coverage_is_antialiased_and_area_correct() -> None:
    r = np.array([8.0])
    cov = object_coverage(SHAPES["square"], 32, np.array([[16.0, 16.0]]), r, np.array([0.0]))
    assert cov.shape == (1, 32, 32) and cov.dtype == np.float32
    side = 2 * 0.76 * 8
    assert abs(cov.sum() - side ** 2) < 0.5
    assert ((cov > 0) & (cov < 1)).any()  # fractional edge pixels
    rotated = object_coverage(SHAPES["square"], 32, np.array([[16.0, 16.0]]), r,
                              np.array([45.0]))
    assert abs(rotated.sum() - side ** 2) < 2.0
    circle = object_coverage(SHAPES["circle"], 32, np.array([[16.0, 16.0]]), r, np.array([0.0]))
    assert abs(circle.sum() - np.pi * (0.88 * 8) ** 2) < 1.0


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_shape_stays_within_its_extent(name: str) -> None:
    """Any rotation of any shape lies in the disc of radius SHAPE_EXTENT (+ the AA pixel), so
    the renderer's position slack keeps objects inside the image."""
    r, angles = 10.0, np.arange(0, 360, 15.0)
    cov = object_coverage(SHAPES[name], 40, np.full((len(angles), 2), 20.0),
                          np.full(len(angles), r), angles)
    yy, xx = np.mgrid[0:40, 0:40] + 0.5
    outside = np.hypot(xx - 20, yy - 20) > SHAPE_EXTENT * r + 0.75
    assert cov[:, outside].max() == 0
    assert 1.3 * r * r < cov[0].sum() < 2.8 * r * r  # comparable areas (circle: 2.43 r²)


def test_hsv_to_rgb_primaries() -> None:
    h = np.array([0.0, 120.0, 240.0, 60.0, 360.0])
    rgb = hsv_to_rgb(h, np.ones(5), np.ones(5))
    np.testing.assert_allclose(rgb, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(hsv_to_rgb(np.array([77.0]), np.zeros(1), np.array([0.3])),
                               [[0.3, 0.3, 0.3]])


# ---------------------------------------------------------------------------- validation

@pytest.mark.parametrize("field, value, message", [
    ("image_size", 8, r"image_size: expected an int >= 16, got 8"),
    ("image_size", 32.0, r"image_size: expected an int >= 16, got float"),
    ("shapes", ("circle", "hexagon"), r"shapes: unknown \['hexagon'\]; known: \['circle'"),
    ("shapes", "circle", r"shapes: expected a sequence of names"),
    ("shapes", ("circle",), r"shapes: expected at least 2"),
    ("colours", ("red", "red"), r"colours: duplicate names"),
    ("n_train_per_class", 0, r"n_train_per_class: expected an int >= 1, got 0"),
    ("n_query_per_class", -1, r"n_query_per_class: expected an int >= 0, got -1"),
    ("n_gallery_per_class", True, r"n_gallery_per_class: expected an int >= 0, got bool"),
    ("nuisance", 1.5, r"nuisance: expected a number in \[0, 1\], got 1.5"),
    ("nuisance", "high", r"nuisance: expected a number in \[0, 1\]"),
    ("partial_frac", -0.1, r"partial_frac: expected a number in \[0, 1\]"),
    ("seed", -3, r"seed: expected an int >= 0, got -3"),
    ("n_text_gallery_per_class", 1000, (r"n_text_query_per_class \+ n_text_gallery_per_class: "
                                        r"expected at most \d+ .*got 4 \+ 1000")),
])
def test_config_validation_names_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=rf"WorldConfig\.{message}"):
        replace(SMALL, **{field: value})


def test_config_normalises_lists_and_numpy_ints() -> None:
    cfg = WorldConfig(shapes=["circle", "star"], colours=["red", "blue"],  # type: ignore[arg-type]
                      seed=np.int64(3), n_train_per_class=np.int32(2))  # type: ignore[arg-type]
    assert cfg.shapes == ("circle", "star") and type(cfg.seed) is int
    assert hash(cfg) == hash(WorldConfig(shapes=("circle", "star"), colours=("red", "blue"),
                                         seed=3, n_train_per_class=2))
    assert cfg.name == replace(cfg).name != replace(cfg, seed=4).name
    with pytest.raises(ValueError, match="split: expected one of"):
        cfg.split_name("validation")


# ------------------------------------------------------------------- dataset containers

def _images(n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8)


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": np.zeros(3, dtype=int)}, r"labels: expected shape \[4\]"),
    ({"labels": np.array([0, 1, 2, 3])}, r"labels: expected values in \[0, 3\)"),
    ({"labels": np.array([0, 1, -1, 2])}, r"labels: expected values in \[0, 3\)"),
    ({"labels": np.zeros(4)}, r"labels: expected integer"),
    ({"images": np.zeros((4, 8, 8), np.uint8)}, r"images: expected a uint8 array of shape"),
    ({"images": np.zeros((4, 8, 8, 3), np.float32)}, r"images: expected a uint8 array"),
    ({"images": np.zeros((), np.uint8)}, r"images: expected a uint8 array"),
    ({"captions": ["a", "b"]}, r"captions: expected 4 captions"),
])
def test_image_dataset_validation(kwargs: dict, message: str) -> None:
    args = {"images": _images(), "labels": np.array([0, 1, 2, 0]),
            "class_names": ["a", "b", "c"], "name": "t"}
    with pytest.raises(ValueError, match=message):
        ImageDataset(**{**args, **kwargs})


def test_image_dataset_fingerprint_sees_one_pixel() -> None:
    ims = _images()
    a = ImageDataset(ims, np.array([0, 1, 2, 0]), ["a", "b", "c"], "t")
    changed = ims.copy()
    changed[2, 5, 1, 0] ^= 1
    b = ImageDataset(changed, np.array([0, 1, 2, 0]), ["a", "b", "c"], "t")
    same = ImageDataset(ims.copy(), np.array([0, 1, 2, 0]), ["a", "b", "c"], "t")
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == same.fingerprint()
    assert a.fingerprint() != ImageDataset(ims, np.array([0, 1, 2, 1]), ["a", "b", "c"],
                                           "t").fingerprint()
    assert a.image(1).size == (8, 8) and np.array_equal(np.asarray(a.image(1)), ims[1])


def test_text_dataset_validation_and_fingerprint() -> None:
    with pytest.raises(ValueError, match=r"labels: expected shape \[2\]"):
        TextDataset(["a", "b"], np.zeros(3, dtype=int), "t")
    with pytest.raises(ValueError, match="labels: expected integer"):
        TextDataset(["a", "b"], np.zeros(2), "t")
    a = TextDataset(["a red circle", "a blue star"], np.array([0, 1]), "t")
    assert a.fingerprint() != TextDataset(["a red circle", "a blue stars"], np.array([0, 1]),
                                          "t").fingerprint()
