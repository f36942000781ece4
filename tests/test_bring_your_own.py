"""Bring your own data: every chapter helper runs on a collection that is not the synthetic
world (the committed emoji fixture), from training to the suite table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from isoclip.data.emoji import EmojiConfig, load_emoji
from isoclip.data.registry import load_collection
from isoclip.method.operator import svd
from isoclip.method.projectors import get_projectors
from isoclip.selection.rules import select_band
from isoclip.training.trainer import TrainConfig, load_or_train

CFG = EmojiConfig(root=str(Path(__file__).parent / "data"), n_train_per_emoji=5)
TINY = TrainConfig(steps=6, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import os

    old = os.environ.get("ISOCLIP_CACHE")
    os.environ["ISOCLIP_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    coll = load_collection("emoji/all", emoji=CFG)
    model = load_or_train(coll.train, TINY, progress=False)
    yield coll, model.bundle
    if old is None:
        os.environ.pop("ISOCLIP_CACHE")
    else:
        os.environ["ISOCLIP_CACHE"] = old


def test_collection_of_a_registered_set() -> None:
    coll = load_collection("emoji/category=animals-nature", emoji=CFG)
    assert len(coll.query) == len(coll.text_query) == 4 and len(coll.train) == 20
    assert coll.prompts is not None and len(coll.prompts) == 12  # every emoji name
    names = [p[0] for p in coll.prompts]
    named = [names[i] for i in coll.zero_shot_labels]
    assert named == [f"an emoji of {n}" for n in ("dog face", "cat face", "chicken", "penguin")]
    with pytest.raises(ValueError, match="suite"):
        load_collection("emoji", emoji=CFG)


def test_chapter_helpers_run_on_emoji(trained, one_thread) -> None:
    from isoclip.studies.inversion import inversion_study
    from isoclip.studies.retrieval import intra_modal_retrieval_study
    from isoclip.studies.world import calibration_pairs, sanity_metrics, world_features

    coll, bundle = trained
    m = sanity_metrics(bundle, coll)
    assert m["chance_acc"] == pytest.approx(100 / 12)
    assert all(math.isfinite(v) for v in m.values())
    f = world_features(bundle, coll)
    assert f.text_query.shape[0] == 12
    ci, ct = calibration_pairs(bundle, coll, n=10)
    assert ci.shape[0] == ct.shape[0] == 10
    study = inversion_study(bundle, coll, oti_per_class=1, ovi_per_class=1, oti_steps=2,
                            ovi_steps=2, n_boot=20, template="an emoji of {}")
    assert study.oti.hparams["template"] == "an emoji of {}"
    assert study.zero_shot["n_images"] == len(study.image_subset) == 6
    P = get_projectors(bundle.model)
    band = select_band(P, "isotropy", dec=svd(P))
    tidy = intra_modal_retrieval_study(bundle, coll, study, {"automatic": band},
                                       {"automatic": band}, n_boot=20)
    assert set(tidy["method"]) == {"CLIP", "OTI", "OVI", "IsoCLIP (automatic)"}


def test_regime_and_suite_on_emoji(trained, one_thread) -> None:
    from isoclip.studies.regimes import run_regime
    from isoclip.studies.suite import InversionSettings, paper_layout, suite_study, suite_table

    coll, _ = trained
    data = load_emoji(CFG)
    category = np.array([sorted(set(data.categories)).index(c) for c in data.categories])
    out = run_regime(coll, TINY, stride=4, oti=False, domains={"in_category": category})
    assert out["world"] == {"name": "emoji/all"}
    for key in ("i2i_mAP", "i2i_in_category_mAP", "t2t_in_category_oracle_heldout_mAP"):
        assert math.isfinite(out[key])
    st = suite_study(["emoji"], emoji=CFG, emoji_train=TINY, stride=4, calibration_pairs=10,
                     inversion=InversionSettings(per_class={"emoji": {"image": 1, "text": 1}},
                                                 oti_steps=2, ovi_steps=2))
    assert [r.name for r in st.task("image")] == [
        "emoji/all", "emoji/category=smileys-emotion", "emoji/category=animals-nature",
        "emoji/category=food-drink"]
    tab = suite_table(st.task("image"))
    assert list(tab["kind"]) == ["whole", "fine-grained", "fine-grained", "fine-grained",
                                 "average"]
    assert (tab["inv_n"].iloc[:4] == [6, 2, 2, 2]).all()
    layout = paper_layout(tab)
    assert layout.index[-1][1] == "whole set" and "OTI (Δ)" in layout.columns.get_level_values(1)
