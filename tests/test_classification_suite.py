"""Classification over a list of sets: the train/test splits of every registered set, the
fast iso-NCM band sweep against the projector-by-projector reference, the held-out band rule
against a loop, the table's averages, and the suite end to end on a random-init tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from isoclip.data import emoji as em
from isoclip.data.classification import (
    COOP_TEMPLATES,
    has_classification_split,
    load_classification,
)
from isoclip.data.fakes import make_fake_dataset
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import make_world, zero_shot_prompts
from isoclip.method.bands import Band, iso_projectors
from isoclip.method.operator import svd
from isoclip.method.projectors import Projectors
from isoclip.studies.classification import (
    CLASSIFIERS,
    OTI_ZERO_SHOT,
    SetClassification,
    SetInputs,
    average_accuracy_gain,
    classification_suite,
    classification_table,
    classify_set,
    iso_ncm_sweep,
    ncm_correct,
    sweep_grid,
)

WORLD = WorldConfig(shapes=("circle", "square", "star"), colours=("red", "blue"),
                    n_train_per_class=6, n_query_per_class=3, n_gallery_per_class=4,
                    n_text_query_per_class=2, n_text_gallery_per_class=3)
EMOJI = em.EmojiConfig(root=str(Path(__file__).parent / "data"), n_train_per_emoji=3)


@pytest.mark.parametrize(("facet", "value"), [("shape", "circle"), ("colour", "blue")])
def test_synthetic_slices_are_the_right_subsets(facet: str, value: str) -> None:
    w = make_world(WORLD)
    d = load_classification(f"synthetic/{facet}={value}", world=WORLD)
    pos = 0 if facet == "shape" else 1
    keep = [c for c, cls in enumerate(w.classes) if cls[pos] == value]
    for part, full in ((d.test, w.query), (d.train, w.train)):
        rows = [i for i, y in enumerate(full.labels.tolist()) if y in keep]
        assert np.array_equal(part.images, full.images[rows])
        # labels re-indexed to 0..C-1 in the order of the original labels
        assert part.labels.tolist() == [keep.index(int(full.labels[i])) for i in rows]
    assert d.original_labels.tolist() == keep
    assert d.class_names == [w.class_names[c] for c in keep]
    prompts = zero_shot_prompts(WORLD)
    assert d.prompts == [prompts[c] for c in keep]
    assert (d.train_split, d.test_split) == ("train", "query")


def test_whole_world_is_unchanged() -> None:
    w = make_world(WORLD)
    d = load_classification("synthetic/world", world=WORLD)
    assert d.test.labels.tolist() == w.query.labels.tolist()
    assert d.train.labels.tolist() == w.train.labels.tolist()
    # same name, labels and class names: the feature cache entries of the world are shared
    assert d.test.fingerprint() == w.query.fingerprint()
    assert d.n_classes == len(w.class_names)


def test_emoji_category_classes_are_its_subcategories() -> None:
    data = em.load_emoji(EMOJI)
    d = load_classification("emoji/category=food-drink", emoji=EMOJI)
    subs = [s for s, c in zip(data.class_names, data.categories) if c == "Food & Drink"]
    assert d.class_names == subs
    rows = data.category_rows("query", "Food & Drink")
    assert np.array_equal(d.test.images, data.query.images[rows])
    assert len(d.train) == 3 * len(rows)
    # a subcategory's prompts are the zero-shot prompts of its emoji, and only theirs
    for c, sub in enumerate(subs):
        names = {e.name for e in data.emoji if e.subcategory == sub}
        assert d.prompts is not None
        assert {p for e in names for p in ("an emoji of " + e, e)} == set(d.prompts[c])


def test_paper_dataset_splits_and_templates(tmp_path) -> None:
    make_fake_dataset("oxford_pets", tmp_path, n_classes=3, per_class=2)
    d = load_classification("oxford_pets", tmp_path)
    assert (d.train_split, d.test_split) == ("train", "test")
    assert len(d.train) == len(d.test) == 6
    assert d.prompts == [[COOP_TEMPLATES["oxford_pets"].format(n)] for n in d.class_names]
    make_fake_dataset("cub2011", tmp_path, n_classes=3, per_class=2)
    with pytest.raises(ValueError, match="no train/test classification split"):
        load_classification("cub2011", tmp_path)
    with pytest.raises(ValueError, match="suite"):
        load_classification("synthetic-fine-grained")
    # the cross-style set is retrieval only: its other artwork has no training split
    with pytest.raises(ValueError, match="emoji/cross-style.*no train/test classification"):
        load_classification("emoji/cross-style", emoji=EMOJI)


def test_which_sets_have_a_classification_split() -> None:
    yes = ["synthetic/world", "synthetic/colour=red", "emoji/all",
           "emoji/category=food-drink", "oxford_pets", "dtd"]
    no = ["emoji/cross-style", "cub2011", "roxford5k", "coco_text"]
    assert [has_classification_split(n) for n in yes] == [True] * len(yes)
    assert [has_classification_split(n) for n in no] == [False] * len(no)


def _projectors(seed: int, d: int = 6, d_i: int = 8, d_t: int = 7, bias: bool = True
                ) -> Projectors:
    g = torch.Generator().manual_seed(seed)
    return Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                      b_i=torch.randn(d, generator=g) if bias else None)


@pytest.mark.parametrize("bias", [True, False])
def test_iso_ncm_sweep_matches_projecting_every_band(bias: bool) -> None:
    P = _projectors(0, bias=bias)
    g = torch.Generator().manual_seed(1)
    tr, te = torch.randn(30, 8, generator=g), torch.randn(25, 8, generator=g)
    ytr, yte = torch.arange(30) % 4, torch.randint(0, 4, (25,), generator=g)
    dec = svd(P)
    # one kept direction without a bias makes every cosine +-1: ties that round-off breaks
    bands = [b for b in sweep_grid(dec, P, 1) if bias or b.kept(dec.r) > 1]
    fast = iso_ncm_sweep(P, tr, ytr, te, yte, bands, n_classes=4, dec=dec)
    for i, band in enumerate(bands):
        iso = iso_projectors(P, band, dec).to(torch.float32)
        naive = ncm_correct(tr, ytr, te, yte, project=iso.project_image,
                            n_classes=4)
        assert torch.equal(fast[i], naive), band


def test_sweep_grid_drops_the_null_directions() -> None:
    P = _projectors(0, d=4, d_i=8, d_t=7)  # rank of Psi 7, projector rank 4: 3 null directions
    dec = svd(P)
    grid = sweep_grid(dec, P, 1)
    assert all(b.k_bottom >= dec.r - 4 and b.k_top + b.k_bottom < dec.r for b in grid)
    assert len(grid) == 4 * 5 // 2


def test_classify_set_held_out_band_against_a_loop() -> None:
    P = _projectors(3)
    g = torch.Generator().manual_seed(4)
    x = SetInputs(train_pre=torch.randn(40, 8, generator=g), train=torch.randn(40, 6, generator=g),
                  test_pre=torch.randn(21, 8, generator=g), test=torch.randn(21, 6, generator=g),
                  train_labels=torch.arange(40) % 5, test_labels=torch.randint(0, 5, (21,),
                                                                               generator=g),
                  n_classes=5, weights=torch.randn(5, 6, generator=g),
                  inverted=(torch.tensor([2, 7]), torch.randn(2, 6, generator=g)))
    res = classify_set(P, x, auto_band=Band(1, 1), paper_band=Band(2, 0), stride=1)
    dec = svd(P)
    grid = sweep_grid(dec, P, 1)
    acc = torch.stack([ncm_correct(x.train_pre, x.train_labels, x.test_pre,
                                   x.test_labels, n_classes=5,
                                   project=iso_projectors(P, b, dec).to(torch.float32).project_image)
                       for b in grid])
    expect = torch.empty(21, dtype=torch.float64)
    for chooser, scored in ((range(0, 21, 2), range(1, 21, 2)), (range(1, 21, 2), range(0, 21, 2))):
        means = [float(acc[i, list(chooser)].mean()) for i in range(len(grid))]
        best = means.index(max(means))  # first maximum, as torch.argmax
        expect[list(scored)] = acc[best, list(scored)]
    assert torch.equal(res.correct["iso-NCM (held-out)"], expect)
    oracle = [float(a.mean()) for a in acc]
    assert res.accuracy("iso-NCM (oracle)") == pytest.approx(max(oracle))
    assert res.accuracy("NCM") == pytest.approx(float(ncm_correct(
        x.train, x.train_labels, x.test, x.test_labels, n_classes=5).mean()))
    oti = res.correct[OTI_ZERO_SHOT]
    assert torch.isnan(oti).sum() == 19 and not torch.isnan(oti[[2, 7]]).any()


def _set(name: str, family: str, fine: bool | None, values: dict[str, list[float]]
         ) -> SetClassification:
    correct = {m: torch.tensor(v, dtype=torch.float64) for m, v in values.items()}
    return SetClassification(name=name, n_train=10, n_classes=2, correct=correct, bands={},
                             meta={"family": family, "fine_grained": fine, "label": name})


def test_table_averages_only_the_fine_grained_sets() -> None:
    nan = float("nan")

    def vals(ncm: list[float], held: list[float]) -> dict[str, list[float]]:
        base = {m: ncm for m in CLASSIFIERS}
        return {**base, "iso-NCM (held-out)": held, OTI_ZERO_SHOT: [nan] * len(ncm)}

    sets = [_set("whole", "synthetic", False, vals([0, 0, 100, 100], [100, 100, 100, 100])),
            _set("a", "synthetic", True, vals([0, 100, 100, 100], [100, 100, 100, 100])),
            _set("b", "synthetic", True, vals([0, 0, 0, 100, 100], [0, 0, 0, 0, 100]))]
    t = classification_table(sets, n_boot=200)
    avg = t[t["kind"] == "average"].iloc[0]
    assert avg["NCM"] == pytest.approx((75 + 40) / 2)
    assert avg["iso-NCM (held-out)"] == pytest.approx((100 + 20) / 2)
    col = "Δ iso-NCM (held-out) − NCM"
    assert avg[col] == pytest.approx((25 - 20) / 2)
    assert avg[col] == pytest.approx(average_accuracy_gain(sets[1:], "iso-NCM (held-out)",
                                                           n_boot=200)["delta"])
    assert t.loc[t["name"] == "whole", col].item() == pytest.approx(50.0)
    assert np.isnan(avg["Δ zero-shot via OTI − zero-shot"])


def test_suite_end_to_end_on_a_random_init_tiny_model(isolated_cache) -> None:
    from isoclip.studies.suite import InversionSettings

    inv = InversionSettings(per_class={"synthetic": {"image": 1}}, oti_steps=2)
    s = classification_suite(["synthetic/world", "synthetic-shapes", "cub2011"],
                             model="isoclip-tiny-vit", world=WORLD, stride=8, inversion=inv)
    assert [r.name for r in s.results] == ["synthetic/world", "synthetic/shape=circle",
                                           "synthetic/shape=square", "synthetic/shape=star"]
    # no train/test split: named, not run (has_classification_split; emoji/cross-style too)
    assert s.skipped == ["cub2011"]
    whole, circle = s.results[0], s.results[1]
    assert whole.n_test == len(make_world(WORLD).query) and whole.n_classes == 6
    assert circle.n_classes == 2 and circle.n_test == 2 * 3
    # one OTI query per class of the whole world, each in the slice of its shape
    assert int((~torch.isnan(whole.correct[OTI_ZERO_SHOT])).sum()) == 6
    assert int((~torch.isnan(circle.correct[OTI_ZERO_SHOT])).sum()) == 2
    t = classification_table(s.results, n_boot=100)
    assert list(t["kind"]) == ["whole", "fine-grained", "fine-grained", "fine-grained",
                               "average"]


def test_layout_verdicts_and_result_rows() -> None:
    from isoclip.studies.classification import (
        classification_layout,
        family_verdicts,
        result_rows,
    )

    nan = float("nan")

    def vals(ncm: list[float], held: list[float], oti: list[float]) -> dict[str, list[float]]:
        return {**{m: ncm for m in CLASSIFIERS}, "iso-NCM (held-out)": held, OTI_ZERO_SHOT: oti}

    sets = [_set("a", "synthetic", True, vals([0, 100, 100, 100] * 5, [100] * 20,
                                              [100, nan, nan, nan] * 5)),
            _set("b", "synthetic", True, vals([100] * 20, [100] * 20, [nan] * 20)),
            _set("w", "synthetic", False, vals([0, 100] * 10, [0, 100] * 10, [nan] * 20))]
    sets[1].correct[OTI_ZERO_SHOT][0] = 100.0
    t = classification_table(sets, n_boot=300)
    lay = classification_layout(t, control=t)
    labels = [s for _, s in lay.index]
    # fine-grained sets, their average, then the whole set; b (NCM 100) is near the ceiling
    assert labels == ["a", "b †", "average (2 fine-grained sets)", "w"]
    assert lay[("random init", "NCM")].tolist() == pytest.approx(lay[("", "NCM")].tolist())
    v = family_verdicts(t).iloc[0]
    assert v["n_sets"] == 2 and v["delta"] == pytest.approx(12.5)
    assert v["verdict"] == "raises" and v["scope"] == "on the tiny model trained here"
    assert "12.5" in v["sentence"] or "+12.5" in v["sentence"]
    rows = result_rows(t)
    assert {r["dataset"] for r in rows} == {"a", "b", "w"}
    oti = [r for r in rows if r["method"] == OTI_ZERO_SHOT and r["dataset"] == "a"]
    assert oti[0]["queries"] == 5 and oti[0]["value"] == 100.0
    assert not any(r["method"] == OTI_ZERO_SHOT and r["dataset"] == "w" for r in rows)


def test_suite_cache_hit_equals_recomputation(isolated_cache) -> None:
    kw = {"model": "isoclip-tiny-vit", "world": WORLD, "stride": 8, "inversion": None}
    first = classification_suite(["synthetic/colour=red", "synthetic/world"], **kw)
    entries = sorted((isolated_cache / "classification").glob("*.pt"))
    assert len(entries) == 2
    again = classification_suite(["synthetic/colour=red", "synthetic/world"], **kw)
    fresh = classification_suite(["synthetic/colour=red", "synthetic/world"], cache=False, **kw)
    for a, b, c in zip(first.results, again.results, fresh.results):
        assert a.bands == b.bands == c.bands and a.n_train == c.n_train
        for m in a.correct:
            assert torch.equal(a.correct[m].nan_to_num(-1), b.correct[m].nan_to_num(-1))
            assert torch.equal(a.correct[m].nan_to_num(-1), c.correct[m].nan_to_num(-1))
    # another stride is another entry
    classification_suite(["synthetic/colour=red"], **{**kw, "stride": 4})
    assert len(list((isolated_cache / "classification").glob("*.pt"))) == 3
