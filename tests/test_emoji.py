"""The emoji data: reading the emoji-datasource layout (a committed fixture, no network),
rendering with augmentation, captions, held-out templates, errors, and the registered sets."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isoclip.data import emoji as em
from isoclip.data.registry import datasets_list, load_dataset

FIXTURE = Path(__file__).parent / "data"
CFG = em.EmojiConfig(root=str(FIXTURE), n_train_per_emoji=5)


@pytest.fixture(scope="module")
def data() -> em.EmojiData:
    return em.load_emoji(CFG)


def test_catalogue_skips_components_and_obsolete_emoji(data: em.EmojiData) -> None:
    names = [e.name for e in data.emoji]
    assert len(names) == 12 and "runner" not in names
    assert not any(e.category == "Component" for e in data.emoji)
    assert data.class_names == ["face-smiling", "heart", "animal-mammal", "animal-bird",
                                "food-fruit", "drink"]  # the package's sort order
    assert data.categories == ["Smileys & Emotion"] * 2 + ["Animals & Nature"] * 2 + \
        ["Food & Drink"] * 2
    assert data.emoji[0].name == "grinning face" and data.emoji[0].code == "1f600"


def test_splits_shapes_labels_and_determinism(data: em.EmojiData) -> None:
    n = len(data.emoji)
    assert data.train.images.shape == (5 * n, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert len(data.query) == len(data.gallery) == len(data.text_query) == n
    sub = np.array([data.class_names.index(e.subcategory) for e in data.emoji])
    assert (data.train.labels == np.repeat(sub, 5)).all()
    assert (data.query.labels == sub).all() and (data.text_gallery.labels == sub).all()
    again = em.load_emoji(CFG, cache=False)
    assert np.array_equal(again.train.images, data.train.images)
    assert again.train.captions == data.train.captions
    assert again.train.name == data.train.name
    other = em.load_emoji(em.EmojiConfig(root=str(FIXTURE), n_train_per_emoji=5, seed=1),
                          cache=False)
    assert not np.array_equal(other.query.images, data.query.images)
    assert other.query.name != data.query.name
    # augmentation: the same emoji is drawn differently in the query and the gallery
    assert all(not np.array_equal(q, g) for q, g in zip(data.query.images, data.gallery.images))


def test_rendered_emoji_matches_a_plain_pil_resize() -> None:
    """With scale 1 the emoji fills the image: its opaque pixels equal PIL's own resize."""
    d = em.load_emoji(em.EmojiConfig(root=str(FIXTURE), n_train_per_emoji=1, scale=(1.0, 1.0)),
                      cache=False)
    for i, e in enumerate(d.emoji):
        with Image.open(FIXTURE / "emoji-datasource-google/img/google/64" / f"{e.code}.png") as im:
            ref = np.asarray(im.convert("RGBA").resize((32, 32), Image.LANCZOS)).astype(int)
        opaque = ref[..., 3] == 255
        assert opaque.sum() > 50
        diff = np.abs(d.query.images[i].astype(int) - ref[..., :3])[opaque]
        assert diff.max() <= 2


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{name}"), "(.+)") + "$")


def test_heldout_templates_never_appear_in_training_captions(data: em.EmojiData) -> None:
    assert not set(em.TRAIN_TEMPLATES) & set(em.HELDOUT_TEMPLATES)
    names = {e.name for e in data.emoji} | {e.short_name for e in data.emoji}
    train_re = [_template_regex(t) for t in em.TRAIN_TEMPLATES]
    held_re = [_template_regex(t) for t in em.HELDOUT_TEMPLATES]
    for c, k in zip(data.train.captions, data.emoji_of["train"]):
        e = data.emoji[k]
        assert any((m := r.match(c)) and m.group(1) in (e.name, e.short_name) for r in train_re)
        assert not any((m := r.match(c)) and m.group(1) in names for r in held_re), c
    for q, g, e in zip(data.text_query.texts, data.text_gallery.texts, data.emoji):
        assert q != g
        for t in (q, g):
            assert any((m := r.match(t)) and m.group(1) == e.name for r in held_re)
            assert t not in data.train.captions


def test_absent_data_names_the_npm_package(tmp_path: Path) -> None:
    with pytest.raises(em.EmojiDataNotFoundError) as e:
        em.load_emoji(em.EmojiConfig(root=str(tmp_path)), cache=False)
    msg = str(e.value)
    assert "emoji-datasource-google@" in msg and "make emoji-data" in msg
    assert str(tmp_path / "emoji-datasource-google") in msg
    (tmp_path / "emoji-datasource-twitter").mkdir()
    with pytest.raises(em.EmojiDataNotFoundError, match="emoji-datasource-twitter.*emoji.json"):
        em.load_emoji(em.EmojiConfig(root=str(tmp_path), style="twitter"), cache=False)


def test_a_missing_png_is_named(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE / "emoji-datasource-google", tmp_path / "emoji-datasource-google")
    png = tmp_path / "emoji-datasource-google/img/google/64/1f427.png"
    png.unlink()
    with pytest.raises(em.EmojiDataNotFoundError, match=rf"'penguin' \(1f427\): missing image "
                                                        rf"{re.escape(str(png))}"):
        em.load_emoji(em.EmojiConfig(root=str(tmp_path)), cache=False)


def test_bad_configuration_and_json(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EmojiConfig.style"):
        em.EmojiConfig(style="apple")
    with pytest.raises(ValueError, match="EmojiConfig.scale"):
        em.EmojiConfig(scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="EmojiConfig.n_train_per_emoji"):
        em.EmojiConfig(n_train_per_emoji=0)
    folder = tmp_path / "emoji-datasource-google"
    folder.mkdir()
    (folder / "emoji.json").write_text('{"not": "a list"}')
    with pytest.raises(ValueError, match="expected a list of entries"):
        em.load_emoji(em.EmojiConfig(root=str(tmp_path)), cache=False)


def test_category_sets_are_the_right_subsets(data: em.EmojiData) -> None:
    assert datasets_list(["emoji"], emoji=CFG) == [
        "emoji/all", "emoji/category=smileys-emotion", "emoji/category=animals-nature",
        "emoji/category=food-drink"]
    for modality, (qs, gs) in (("image", ("query", "gallery")),
                               ("text", ("text_query", "text_gallery"))):
        whole = load_dataset("emoji/all", modality, emoji=CFG)
        assert whole.query is getattr(data, qs) and whole.calibration is data.train
        d = load_dataset("emoji/category=animals-nature", modality, emoji=CFG)
        rows = [i for i, e in enumerate(data.emoji) if e.category == "Animals & Nature"]
        assert d.query.labels.tolist() == [int(getattr(data, qs).labels[i]) for i in rows]
        assert d.gallery.labels.tolist() == [int(getattr(data, gs).labels[i]) for i in rows]
        if modality == "image":
            assert np.array_equal(d.query.images, data.query.images[rows])
        else:
            assert d.query.texts == [data.text_query.texts[i] for i in rows]
        train_rows = [i for i, k in enumerate(data.emoji_of["train"])
                      if data.emoji[k].category == "Animals & Nature"]
        assert d.calibration.captions == [data.train.captions[i] for i in train_rows]


def test_dominant_subcategory_rule() -> None:
    cat = [em.Emoji(str(i), f"e{i}", f"e{i}", "Flags", "country-flag" if i < 9 else "flag")
           for i in range(10)]
    assert em.dominant_share(cat, "Flags") == 0.9 > em.MAX_DOMINANT_SHARE
    assert em.category_slug("Animals & Nature") == "animals-nature"


def test_emoji_rows_in_whole(data: em.EmojiData) -> None:
    from isoclip.data.suites import rows_in_whole

    rows = rows_in_whole("emoji/category=food-drink", "text", emoji=CFG)
    d = load_dataset("emoji/category=food-drink", "text", emoji=CFG)
    assert d.query.texts == [data.text_query.texts[i] for i in rows["query"]]
    assert np.array_equal(d.calibration.images, data.train.images[rows["calibration"]])
    assert (rows_in_whole("emoji/all", "image", emoji=CFG)["gallery"] == np.arange(12)).all()
