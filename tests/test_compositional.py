"""The compositional (rich) synthetic world, and the default world staying bit-identical."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from isoclip.data.world.compositional import (
    COUNTS,
    FILLS,
    HELDOUT_WRAPPERS,
    RELATIONS,
    SIZES,
    TRAIN_WRAPPERS,
    n_tokens,
)
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.primitives import COLOURS, MAX_CAPTION_TOKENS, SHAPES
from isoclip.data.world.synthetic import make_world

#: Fingerprints and names of the default world's splits, recorded before the compositional
#: option existed: the whole book's caches and numbers depend on them.
DEFAULT_FINGERPRINTS = {
    "train": ("ee5cea7bb4b2ffcd666dad314f674af41c9fdfe096ebad739bd37de97ccf2759",
              "synthetic-9be924605b67/train"),
    "query": ("9902e5a1288339d9aa114aca7744caedfe2c344dd50a0fe7fc6bf30261bd2a9e",
              "synthetic-5dc045476958/query"),
    "gallery": ("f42e29740009e6d7cca02a03a53c5430c7dc864e01ce1784e25dc160934d5ba0",
                "synthetic-d43eb918c0c4/gallery"),
    "text_query": ("a68e9c54c8941782993cb16f17a9886db5f7b832229fb206335ee1e2fce0cbab",
                   "synthetic-8e4afb99bb90/text_query"),
    "text_gallery": ("0db9f19b20acca4134a4ee10149ecdd6974c7d052b4c3829600a9c5d5180f6b1",
                     "synthetic-ec08a787b5c7/text_gallery"),
}
DEFAULT_NAME = "synthetic-225e20687e62"

RICH = WorldConfig(scene="compositional", shapes=tuple(SHAPES), colours=tuple(COLOURS),
                   n_train_per_class=6, n_query_per_class=2, n_gallery_per_class=3,
                   n_text_query_per_class=3, n_text_gallery_per_class=4)


@pytest.fixture(scope="module")
def rich():
    return make_world(RICH, cache=False)


def test_default_world_is_bit_identical_to_before_the_option() -> None:
    w = make_world(WorldConfig())
    assert w.scenes is None
    assert WorldConfig().name == DEFAULT_NAME
    for split, (fp, name) in DEFAULT_FINGERPRINTS.items():
        ds = getattr(w, split)
        assert ds.name == name, split
        assert ds.fingerprint() == fp, split


def test_same_seed_same_bytes_other_seed_differs(rich) -> None:
    again = make_world(RICH, cache=False)
    for split in ("train", "query", "gallery"):
        a, b = getattr(rich, split), getattr(again, split)
        assert np.array_equal(a.images, b.images) and a.captions == b.captions
        assert a.fingerprint() == b.fingerprint()
    assert rich.text_query.texts == again.text_query.texts
    other = make_world(replace(RICH, seed=1), cache=False)
    assert not np.array_equal(other.train.images, rich.train.images)
    assert other.train.captions != rich.train.captions
    assert other.train.name != rich.train.name


def test_names_differ_from_single_and_follow_the_compositional_fields() -> None:
    single = replace(RICH, scene="single")
    assert RICH.name != single.name
    assert RICH.split_name("train") != single.split_name("train")
    assert replace(RICH, mention_prob=0.3).split_name("train") != RICH.split_name("train")
    assert replace(RICH, max_objects=2).split_name("text_query") != RICH.split_name("text_query")
    # a split's name still ignores the other splits' sizes
    assert replace(RICH, n_query_per_class=5).split_name("train") == RICH.split_name("train")


def test_exact_class_balance_and_labels_match_main_object(rich) -> None:
    n_cls = len(RICH.classes)
    for split, n in (("train", 6), ("query", 2), ("gallery", 3), ("text_query", 3),
                     ("text_gallery", 4)):
        ds = getattr(rich, split)
        assert np.array_equal(np.bincount(ds.labels, minlength=n_cls), np.full(n_cls, n)), split
        sc = rich.scenes[split]
        assert len(sc) == len(ds)
        n_col = len(RICH.colours)
        assert np.array_equal(sc.shapes[:, 0] * n_col + sc.colours[:, 0], ds.labels), split
    img = rich.train.images
    assert img.shape == (n_cls * 6, 32, 32, 3) and img.dtype == np.uint8
    assert not img.flags.writeable


def test_scenes_are_consistent(rich) -> None:
    n_col = len(RICH.colours)
    for split, sc in rich.scenes.items():
        assert sc.n_objects.min() >= 1 and sc.n_objects.max() <= RICH.max_objects
        present = np.arange(RICH.max_objects)[None, :] < sc.n_objects[:, None]
        for arr in (sc.shapes, sc.colours, sc.fills):
            assert np.all((arr >= 0) == present), split
        cls = sc.shapes * n_col + sc.colours
        others = cls[:, 1:][present[:, 1:]]
        mains = np.repeat(cls[:, 0], present[:, 1:].sum(1))
        assert np.all(others != mains), "another object repeats the main class"
    sc = rich.scenes["train"]
    assert set(np.unique(sc.n_objects)) == {1, 2, 3}
    assert set(np.unique(sc.fills[:, 0])) == set(range(len(FILLS)))
    assert set(np.unique(sc.relation)) == set(range(len(RELATIONS)))


def _regex(phrases) -> re.Pattern[str]:
    alt = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alt})(?![\w-])")


def _parse(text: str) -> dict:
    """A naive parser of a compositional caption: what it mentions, by attribute."""
    out: dict = {}
    count = re.match(r"^(.*?): ", text)
    if count:
        out["count"] = [n for n, ph in COUNTS.items() if count.group(1) in ph]
        text = text[count.end():]
    rel = None
    for name, phrases in RELATIONS.items():
        m = _regex(phrases).search(text)
        if m:
            assert rel is None, text
            rel = (name, m)
    main, other = (text[:rel[1].start()], text[rel[1].end():]) if rel else (text, "")
    out["relation"] = rel[0] if rel else None

    def found(part: str, table) -> list[str]:
        return [k for k, spec in table.items()
                if _regex(spec.synonyms if hasattr(spec, "synonyms") else spec).search(part)]

    out["main_shape"], out["main_colour"] = found(main, SHAPES), found(main, COLOURS)
    out["size"], out["fill"] = found(main, SIZES), found(main, FILLS)
    out["other_shape"], out["other_colour"] = found(other, SHAPES), found(other, COLOURS)
    return out


def test_captions_only_mention_what_the_scene_shows(rich) -> None:
    seen = {k: 0 for k in ("count", "relation", "size", "fill", "other_colour", "partial")}
    for split in ("train", "query", "gallery", "text_query", "text_gallery"):
        ds = getattr(rich, split)
        texts = ds.captions if split in ("train", "query", "gallery") else ds.texts
        sc = rich.scenes[split]
        for i, text in enumerate(texts):
            p = _parse(text)
            shape = RICH.shapes[sc.shapes[i, 0]]
            colour = RICH.colours[sc.colours[i, 0]]
            assert p["main_shape"] in ([shape], []), text
            assert p["main_colour"] in ([colour], []), text
            assert p["main_shape"] or p["main_colour"], text
            if not (p["main_shape"] and p["main_colour"]):
                seen["partial"] += 1
                assert split == "train", (split, text)
            if "count" in p:
                seen["count"] += 1
                assert p["count"] == [int(sc.n_objects[i])], text
            if p["size"]:
                seen["size"] += 1
                assert p["size"] == [list(SIZES)[sc.size[i]]], text
            if p["fill"]:
                seen["fill"] += 1
                assert p["fill"] == [list(FILLS)[sc.fills[i, 0]]], text
            if p["relation"]:
                seen["relation"] += 1
                assert sc.n_objects[i] >= 2, text
                assert p["relation"] == list(RELATIONS)[sc.relation[i]], text
                assert p["other_shape"] == [RICH.shapes[sc.shapes[i, 1]]], text
                if p["other_colour"]:
                    seen["other_colour"] += 1
                    assert p["other_colour"] == [RICH.colours[sc.colours[i, 1]]], text
            else:
                assert not p["other_shape"] and not p["other_colour"], text
            assert n_tokens(text) <= MAX_CAPTION_TOKENS, text
    assert all(v > 0 for v in seen.values()), seen


def test_wrappers_are_where_documented(rich) -> None:
    def wrapped_by(text: str, wrappers) -> bool:
        text = re.sub(r"^[^:]*: ", "", text)
        return any(re.fullmatch(re.escape(w).replace(re.escape("{s}"), ".+"), text)
                   for w in wrappers)

    assert all(wrapped_by(t, TRAIN_WRAPPERS) for t in rich.train.captions)
    assert all(wrapped_by(t, HELDOUT_WRAPPERS) for t in rich.text_query.texts)
    assert all(wrapped_by(t, HELDOUT_WRAPPERS) for t in rich.text_gallery.texts)


def test_text_query_and_gallery_are_distinct_strings(rich) -> None:
    q, g = rich.text_query.texts, rich.text_gallery.texts
    assert not set(q) & set(g)
    assert len(set(q)) == len(q) and len(set(g)) == len(g)


def test_mention_prob_extremes() -> None:
    base = replace(RICH, shapes=("circle", "square"), colours=("red", "blue"),
                   n_train_per_class=20, partial_frac=0.0)
    bare = make_world(replace(base, mention_prob=0.0), cache=False)
    for text in bare.train.captions:
        p = _parse(text)
        assert "count" not in p and not p["relation"] and not p["size"] and not p["fill"], text
    full = make_world(replace(base, mention_prob=1.0), cache=False)
    sc = full.scenes["train"]
    counted = 0
    for i, text in enumerate(full.train.captions):  # the count goes first if too long
        p = _parse(text)
        assert p["size"] and p["fill"], text
        assert bool(p["relation"]) == (sc.n_objects[i] >= 2), text
        counted += "count" in p
    assert counted >= 0.5 * len(full.train.captions)


def test_main_object_sits_where_the_relation_says() -> None:
    """Nuisance 0: the main object's centre pixel has its prototype colour (solid fill), at
    the image centre when alone and on the relation's side otherwise."""
    cfg = replace(RICH, nuisance=0.0, n_train_per_class=4)
    w = make_world(cfg, cache=False)
    sc, img, S = w.scenes["train"], w.train.images, cfg.image_size
    side = {"left": (0.32, 0.5), "right": (0.78, 0.5), "above": (0.5, 0.32),
            "below": (0.5, 0.78)}
    checked = 0
    for i in range(len(sc)):
        if sc.fills[i, 0] != list(FILLS).index("solid"):
            continue
        fx, fy = (0.5, 0.5) if sc.n_objects[i] == 1 else side[list(RELATIONS)[sc.relation[i]]]
        spec = COLOURS[cfg.colours[sc.colours[i, 0]]]
        from isoclip.data.world.primitives import hsv_to_rgb
        want = np.rint(hsv_to_rgb(np.array(spec.hue), np.array(spec.saturation),
                                  np.array(spec.value)) * 255)
        # the shape's own centre may be a hole (ring, crescent): test the solid ones
        if cfg.shapes[sc.shapes[i, 0]] in ("ring", "crescent", "cross", "star"):
            continue
        px = img[i, int(fy * S), int(fx * S)].astype(float)
        assert np.abs(px - want).max() <= 2, (i, px, want)
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("kwargs, message", [
    ({"scene": "rich"}, "WorldConfig.scene"),
    ({"max_objects": 2}, "WorldConfig.max_objects: only used with scene='compositional'"),
    ({"mention_prob": 0.2}, "WorldConfig.mention_prob: only used"),
    ({"scene": "compositional", "max_objects": 5}, "WorldConfig.max_objects"),
    ({"scene": "compositional", "max_objects": 0}, "WorldConfig.max_objects"),
    ({"scene": "compositional", "mention_prob": 1.5}, "WorldConfig.mention_prob"),
])
def test_config_validation_names_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        WorldConfig(**kwargs)


def test_too_many_text_captions_is_a_clear_error() -> None:
    cfg = replace(RICH, shapes=("circle", "square"), colours=("red", "blue"), max_objects=1,
                  mention_prob=0.0, n_text_query_per_class=200, n_text_gallery_per_class=200)
    with pytest.raises(ValueError, match="n_text_query_per_class"):
        make_world(cfg, cache=False)
