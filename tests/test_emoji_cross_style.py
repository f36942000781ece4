"""The cross-style emoji set (Noto queries against a Twemoji gallery) on the committed
fixtures (both artworks, no network): where each side's pixels come from, the emoji dropped
for lack of a Twemoji image, the errors, the suite's rows and the same-emoji hit rate."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isoclip.data import emoji as em
from isoclip.data import suites
from isoclip.data.registry import datasets_list, load_dataset
from isoclip.training.trainer import TrainConfig

FIXTURE = Path(__file__).parent / "data"
CFG = em.EmojiConfig(root=str(FIXTURE), n_train_per_emoji=5)
TINY = TrainConfig(steps=6, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))


def _plain_resize(style: str, code: str) -> tuple[np.ndarray, np.ndarray]:
    """The PNG of ``style`` resized to 32 px by PIL: RGB [32, 32, 3] and its opaque mask."""
    path = FIXTURE / f"emoji-datasource-{style}/img/{style}/64/{code}.png"
    with Image.open(path) as im:
        ref = np.asarray(im.convert("RGBA").resize((32, 32), Image.LANCZOS)).astype(int)
    return ref[..., :3], ref[..., 3] == 255


def test_query_is_noto_and_gallery_is_twemoji() -> None:
    """With scale 1 the emoji fills the image: the query's opaque pixels are the Noto PNG's,
    the gallery's the Twemoji PNG's (the two fixtures' artworks differ)."""
    cfg = em.EmojiConfig(root=str(FIXTURE), n_train_per_emoji=1, scale=(1.0, 1.0))
    cross = em.load_cross_style(cfg)
    data = em.load_emoji(cfg)
    assert (cross.query_style, cross.gallery_style) == ("google", "twitter")
    for i, k in enumerate(cross.rows.tolist()):
        code = data.emoji[k].code
        for images, own, other in ((cross.query.images, "google", "twitter"),
                                   (cross.gallery.images, "twitter", "google")):
            ref, opaque = _plain_resize(own, code)
            ref_other, opaque_other = _plain_resize(other, code)
            both = opaque & opaque_other
            assert both.sum() > 50
            assert np.abs(images[i].astype(int) - ref)[opaque].max() <= 2
            assert np.abs(images[i].astype(int) - ref_other)[both].max() > 20, (code, own)


def test_only_the_artwork_differs(tmp_path: Path) -> None:
    """With the Noto images copied in as the 'other' artwork the cross-style gallery is the
    same-style gallery byte for byte: same sizes, positions, backgrounds, labels, captions."""
    shutil.copytree(FIXTURE / "emoji-datasource-google", tmp_path / "emoji-datasource-google")
    twin = tmp_path / "emoji-datasource-twitter"
    shutil.copytree(FIXTURE / "emoji-datasource-google", twin)
    (twin / "img/google").rename(twin / "img/twitter")
    cfg = em.EmojiConfig(root=str(tmp_path), n_train_per_emoji=2)
    data, cross = em.load_emoji(cfg), em.load_cross_style(cfg)
    assert cross.dropped == [] and (cross.rows == np.arange(12)).all()
    assert cross.query is data.query  # nothing dropped: the whole query split itself
    assert np.array_equal(cross.gallery.images, data.gallery.images)
    assert (cross.gallery.labels == data.gallery.labels).all()
    assert cross.gallery.captions == data.gallery.captions
    assert cross.gallery.name != data.gallery.name  # another cache key
    # and with the fixture's own Twemoji images, the gallery is another picture
    real = em.load_cross_style(CFG)
    same = em.load_emoji(CFG).gallery.images[real.rows]
    assert all(not np.array_equal(a, b) for a, b in zip(real.gallery.images, same))


def test_an_emoji_without_twemoji_is_dropped_from_both_sides() -> None:
    data, cross = em.load_emoji(CFG), em.load_cross_style(CFG)
    assert [e.name for e in cross.dropped] == ["hot beverage"]  # has_img_twitter: false
    assert len(cross.rows) == len(cross.query) == len(cross.gallery) == len(data.emoji) - 1
    assert "hot beverage" not in [data.emoji[k].name for k in cross.rows]
    assert np.array_equal(cross.query.images, data.query.images[cross.rows])
    assert (cross.query.labels == cross.gallery.labels).all()
    assert (cross.query.labels == data.query.labels[cross.rows]).all()


def test_registry_entry_and_text_side() -> None:
    # the suites are unchanged; the set is asked for by name
    assert "emoji/cross-style" not in datasets_list(["emoji"], emoji=CFG)
    assert datasets_list(["emoji/cross-style"], emoji=CFG) == ["emoji/cross-style"]
    info = suites.embedded_set("emoji/cross-style", emoji=CFG)
    assert info.modalities == ("image",) and not info.fine_grained
    assert info.label == "style = Noto → Twemoji"
    d = load_dataset("emoji/cross-style", "image", emoji=CFG)
    cross = em.load_cross_style(CFG)
    assert d.query is cross.query and d.gallery is cross.gallery and not d.same_split
    assert d.calibration is em.load_emoji(CFG).train  # the model's own Noto training pairs
    rows = suites.rows_in_whole("emoji/cross-style", "image", emoji=CFG)
    assert "gallery" not in rows and (rows["query"] == cross.rows).all()
    assert suites.whole_set("emoji/cross-style") == "emoji/all"
    for call in (lambda: load_dataset("emoji/cross-style", "text", emoji=CFG),
                 lambda: suites.rows_in_whole("emoji/cross-style", "text", emoji=CFG)):
        with pytest.raises(ValueError, match="no text side.*does not depend on the artwork"):
            call()


def test_missing_twemoji_names_the_package_and_the_png(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE / "emoji-datasource-google", tmp_path / "emoji-datasource-google")
    cfg = em.EmojiConfig(root=str(tmp_path), n_train_per_emoji=1)
    with pytest.raises(em.EmojiDataNotFoundError) as e:
        em.load_cross_style(cfg)
    msg = str(e.value)
    assert "emoji-datasource-twitter@" in msg and "make emoji-data" in msg and "CC-BY 4.0" in msg
    assert str(tmp_path / "emoji-datasource-twitter") in msg
    shutil.copytree(FIXTURE / "emoji-datasource-twitter", tmp_path / "emoji-datasource-twitter")
    png = tmp_path / "emoji-datasource-twitter/img/twitter/64/1f427.png"
    png.unlink()
    cfg = em.EmojiConfig(root=str(tmp_path), n_train_per_emoji=2)  # not the memoised one
    with pytest.raises(em.EmojiDataNotFoundError,
                       match=rf"\(twitter\).*'penguin' \(1f427\): missing image "
                             rf"{re.escape(str(png))}"):
        em.load_cross_style(cfg)


def test_same_item_hits_matches_a_loop() -> None:
    from isoclip.studies.suite_report import same_item_hits

    g = torch.Generator().manual_seed(0)
    q, gal = torch.randn(30, 5, generator=g), torch.randn(30, 5, generator=g)
    gal[:10] = q[:10] * 3.0  # the same direction: ranked first
    naive = []
    for i in range(30):
        cos = [float(torch.nn.functional.cosine_similarity(q[i], gal[j], dim=0))
               for j in range(30)]
        naive.append(int(np.argmax(cos)) == i)
    hits = same_item_hits(q, gal)
    assert hits.tolist() == naive and hits[:10].all() and 10 <= int(hits.sum()) < 30
    with pytest.raises(ValueError, match="gallery"):
        same_item_hits(q, gal[:5])


def test_suite_rows_of_the_cross_style_set(tmp_path, monkeypatch, one_thread) -> None:
    from isoclip.models.features import image_features
    from isoclip.studies.suite import InversionSettings, _slice, suite_study, suite_table
    from isoclip.studies.suite_report import cross_style_glue

    monkeypatch.setenv("ISOCLIP_CACHE", str(tmp_path))
    st = suite_study(["emoji/all", "emoji/cross-style"], emoji=CFG, emoji_train=TINY, stride=4,
                     calibration_pairs=10,
                     inversion=InversionSettings(per_class={"emoji": {"image": 1, "text": 1}},
                                                 oti_steps=2, ovi_steps=2))
    assert [r.name for r in st.task("image")] == ["emoji/all", "emoji/cross-style"]
    assert [r.name for r in st.task("text")] == ["emoji/all"]  # no text side: skipped
    whole, cross = st.task("image")
    assert (cross.n_query, cross.n_gallery) == (11, 11)
    # CLIP's AP from features of the two artworks extracted here, one query at a time
    bundle = st.bundles[cross.meta["model"]]
    cs = em.load_cross_style(CFG)
    q = image_features(bundle, cs.query, "projected", progress=False)
    g = image_features(bundle, cs.gallery, "projected", progress=False)
    s = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T
    for i in range(11):
        rel = (cs.gallery.labels == cs.query.labels[i])[torch.argsort(-s[i]).numpy()]
        ap = np.mean([rel[: k + 1].mean() for k in np.flatnonzero(rel)])
        assert float(cross.ap["CLIP"][i]) == pytest.approx(100 * ap, abs=1e-6)
    # the OTI rows are emoji/all's inverted queries that the set keeps
    kept = set(cs.rows.tolist())
    assert [cs.rows[int(i)] for i in cross.inv_rows] == [
        int(i) for i in whole.inv_rows if int(i) in kept]
    tab = suite_table(st.task("image"))
    assert list(tab["kind"]) == ["whole", "whole"]
    values = cross_style_glue(st, emoji=CFG)
    assert values["cross_n"] == 11 and values["cross_dropped"] == 1
    assert (values["cross_query_art"], values["cross_gallery_art"]) == ("Noto", "Twemoji")
    assert values["cross_clip"] == pytest.approx(cross.mean("CLIP"))
    assert values["cross_all_clip"] == pytest.approx(whole.mean("CLIP"))
    hit = (torch.argmax(s, dim=1) == torch.arange(11)).double().mean()
    assert values["cross_hit_clip"] == pytest.approx(100 * float(hit))
    with pytest.raises(ValueError, match="gallery of its own"):
        _slice(None, suites.rows_in_whole("emoji/cross-style", "image", emoji=CFG))  # type: ignore[arg-type]


def test_cross_style_summary_states_the_values() -> None:
    from isoclip.studies.suite_report import cross_style_summary

    assert cross_style_summary({}) == ""
    values = {"cross_clip": 41.25, "cross_delta": -0.5, "cross_label": "style = Noto → Twemoji",
              "cross_n": 11, "cross_dropped": 1, "cross_all_clip": 60.0, "cross_all_delta": 0.25,
              "cross_hit_clip": 27.3, "cross_hit_heldout": 18.2, "cross_hit_auto": 9.1,
              "cross_query_art": "Noto", "cross_gallery_art": "Twemoji"}
    s = cross_style_summary(values)
    for piece in ("On the emoji model trained here", "the 11 Noto query images",
                  "drawn in Twemoji", "1 emoji left", "of a Twemoji image", "CLIP 41.2 mAP",
                  "against 60.0 when both sides are Noto", "by -0.50", "whole set: +0.25",
                  "27.3 % of the queries with CLIP", "18.2 % with the held-out", "9.1 % with"):
        assert piece in s, piece
    del values["cross_all_clip"]
    assert "by -0.50" in cross_style_summary(values) and "whole set" not in \
        cross_style_summary(values)


def test_an_unknown_name_lists_the_cross_style_set() -> None:
    from isoclip.data.registry import datasets_list

    with pytest.raises(ValueError, match=r"emoji/cross-style \(image\)"):
        datasets_list(["emji/cross-style"])
