"""Band sweep == naive per-band path; band selection; band-analysis helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoclip.evaluate.retrieval import evaluate
from isoclip.method.bands import Band, iso_projectors
from isoclip.method.operator import svd
from isoclip.method.projectors import Projectors
from isoclip.selection.analysis import histogram_overlap, pos_neg_scores, region_bands
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import BandScorer, best_band, naive_band_metrics, sweep_bands


def _random(seed: int, bias: bool, d: int = 12, d_i: int = 10, d_t: int = 8):
    g = torch.Generator().manual_seed(seed)
    P = Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                   b_i=torch.randn(d, generator=g) if bias else None,
                   b_t=torch.randn(d, generator=g) if bias else None)
    fi = torch.randn(90, d_i, generator=g)
    ft = torch.randn(90, d_t, generator=g)
    labels = torch.randint(0, 6, (90,), generator=g)
    return P, fi, ft, labels


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_sweep_equals_naive_random(bias: bool, modality: str) -> None:
    P, fi, ft, y = _random(1, bias)
    f = fi if modality == "image" else ft
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    sw = sweep_bands(P, q, g, ql, gl, modality, metric=["mAP", "mAP@R", "P@R", "R@1"])
    r = svd(P).r
    assert len(sw) == r * (r + 1) // 2
    for _, row in sw.iloc[::3].iterrows():
        ref = naive_band_metrics(P, q, g, ql, gl, Band(int(row.k_top), int(row.k_bottom)),
                                 modality)
        for m in ("mAP", "mAP@R", "P@R", "R@1"):
            assert row[m] == pytest.approx(ref[m], abs=1e-6), (row.k_top, row.k_bottom, m)


def test_sweep_same_split_and_float32_matches_evaluate() -> None:
    P, fi, _, y = _random(2, False)
    sw = sweep_bands(P, fi, fi, y, y, "image", same_split=True, dtype=torch.float32)
    # with 1-2 kept directions cosines are (nearly) +-1: float32 noise decides tie orders
    for _, row in sw[sw.kept >= 3].iloc[::5].iterrows():
        band = Band(int(row.k_top), int(row.k_bottom))
        iso = iso_projectors(P, band)
        e = iso.project_image(fi)
        ref = evaluate(e, e, y, y, same_split=True)["mAP"]
        assert row.mAP == pytest.approx(ref, abs=1e-3)
        exact = naive_band_metrics(P, fi, fi, y, y, band, same_split=True)["mAP"]
        assert row.mAP == pytest.approx(exact, abs=1e-3)


@pytest.mark.parametrize("same_split", [False, True])
def test_ranker_with_ties_equals_evaluate_scores(same_split: bool) -> None:
    from isoclip.evaluate.retrieval import FixedLabelRanker, evaluate_scores
    g = torch.Generator().manual_seed(3)
    n_g = 20 if same_split else 40
    scores = torch.randint(0, 5, (20, n_g), generator=g).double() / 4  # many exact ties
    ql = torch.randint(0, 4, (20,), generator=g)
    gl = ql if same_split else torch.randint(0, 4, (n_g,), generator=g)
    names = ("mAP", "mAP@R", "P@R", "R@1", "P@5")
    got = FixedLabelRanker(ql, gl, same_split).metrics(scores, names)
    ref = evaluate_scores(scores, ql, gl, same_split, ks=(1, 5))
    for n in names:
        assert got[n] == ref[n], n


def test_ranker_rejects_bad_input() -> None:
    from isoclip.evaluate.retrieval import FixedLabelRanker
    ranker = FixedLabelRanker(torch.tensor([0, 1]), torch.tensor([0, 1, 1]))
    assert ranker.shape == (2, 3)
    with pytest.raises(ValueError, match=r"scores: expected shape \(2, 3\)"):
        ranker.metrics(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="unknown metrics"):
        ranker.metrics(torch.rand(2, 3), ("mAP", "NDCG"))
    with pytest.raises(ValueError, match="non-finite"):
        ranker.metrics(torch.tensor([[0.1, float("nan"), 0.2], [0.3, 0.1, 0.2]]))
    with pytest.raises(ValueError, match="no query has a relevant item"):
        FixedLabelRanker(torch.tensor([5]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="same_split"):
        FixedLabelRanker(torch.tensor([0, 1]), torch.tensor([0, 1, 1]), same_split=True)


def test_scorer_is_the_iso_projector_cosine_with_bias() -> None:
    P, fi, _, _ = _random(4, True)
    s = BandScorer(P, fi[:5], fi[5:9]).scores(Band(1, 2))
    e = iso_projectors(P.double(), Band(1, 2)).project_image(fi.double())
    e = e / e.norm(dim=1, keepdim=True)
    torch.testing.assert_close(s, e[:5] @ e[5:9].T)


def test_sweep_tiny_model_bands(embedded_bundle_preproj) -> None:
    P, f, w = embedded_bundle_preproj
    q, g = f.query_images[::4], f.gallery_images[::4]
    ql, gl = w.query.labels[::4], w.gallery.labels[::4]
    sw = sweep_bands(P, q, g, ql, gl, "image", [0, 7, 20], [0, 9])
    for _, row in sw.iterrows():
        ref = naive_band_metrics(P, q, g, ql, gl, Band(int(row.k_top), int(row.k_bottom)))
        assert row.mAP == pytest.approx(ref["mAP"], abs=1e-6)
    swt = sweep_bands(P, f.text_query[::2], f.text_gallery[::2], w.text_query.labels[::2],
                      w.text_gallery.labels[::2], "text", [0, 3], [0, 12])
    for _, row in swt.iterrows():
        ref = naive_band_metrics(P, f.text_query[::2], f.text_gallery[::2],
                                 w.text_query.labels[::2], w.text_gallery.labels[::2],
                                 Band(int(row.k_top), int(row.k_bottom)), "text")
        assert row.mAP == pytest.approx(ref["mAP"], abs=1e-6)


@pytest.fixture(scope="module")
def embedded_bundle_preproj():
    """Pre-projection features of a trained tiny model: the book's default model when
    ``make models`` has cached it (never trained here), else the same architecture trained
    for 60 steps on 20 pairs per class (the sweep equals the naive reference on any model)."""
    from dataclasses import replace

    from isoclip.data.world.synthetic import make_world
    from isoclip.method.projectors import get_projectors
    from isoclip.studies import manifest
    from isoclip.studies.world import world_features
    from isoclip.training import embedded
    from isoclip.training.trainer import load_or_train
    trained = manifest.load("default")
    if trained is None:
        world = make_world(replace(embedded.DEFAULT_WORLD, n_train_per_class=20))
        trained = load_or_train(world.train, replace(embedded.DEFAULT_TRAIN, steps=60,
                                                     batch_size=64), progress=False, cache=False)
    else:
        world = make_world(embedded.DEFAULT_WORLD)
    return (get_projectors(trained.bundle.model),
            world_features(trained.bundle, world, kind="preproj"), world)


def test_select_band_isotropy_rule() -> None:
    # flat middle, steep ends: the rule drops exactly the steep ends
    S = torch.cat([torch.tensor([100.0, 30.0, 10.0]), torch.full((20,), 1.0)
                   - torch.linspace(0, 0.1, 20), torch.tensor([0.05, 0.001])])
    r = len(S)
    U = torch.linalg.qr(torch.randn(r, r, dtype=torch.float64))[0]
    P = Projectors(W_i=(U * S.double()).T.contiguous(), W_t=torch.eye(r, dtype=torch.float64))
    assert select_band(P, "isotropy") == Band(3, 2)
    flat = Projectors(W_i=torch.eye(6), W_t=torch.eye(6))
    assert select_band(flat, "isotropy") == Band(0, 0)
    with pytest.raises(ValueError, match=r"rank 512.*rank 25.*rescale=True"):
        select_band(P, "paper", task="text")
    assert select_band(P, "paper", task="text", rescale=True) == Band(1, 5)
    with pytest.raises(ValueError):
        select_band(P, "nope")


def test_best_band_and_helpers() -> None:
    import pandas as pd
    sw = pd.DataFrame({"k_top": [0, 1], "k_bottom": [0, 2], "kept": [5, 2], "mAP": [1.0, 3.0]})
    assert best_band(sw) == Band(1, 2)
    assert region_bands(10, Band(2, 3)) == {"top": Band(0, 8), "middle": Band(2, 3),
                                            "bottom": Band(7, 0)}
    assert list(region_bands(10, Band(0, 3))) == ["middle", "bottom"]
    assert histogram_overlap(np.arange(10.0), np.arange(10.0)) == pytest.approx(1.0)
    assert histogram_overlap(np.zeros(5), np.ones(5), bins=4) == 0.0
    pos, neg = pos_neg_scores(torch.eye(3), [0, 1, 1], [0, 1, 1], same_split=True)
    assert sorted(pos.tolist()) == [0.0, 0.0] and len(neg) == 4


# -- the label-free "agreement" rule (paired calibration data) ---------------------------------

@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("modality", ["image", "text"])
def test_agreement_sweep_equals_naive(bias: bool, modality: str) -> None:
    from isoclip.selection.rules import agreement_sweep, naive_agreement

    P, *_ = _random(3, bias)
    g = torch.Generator().manual_seed(5)
    fi = torch.randn(30, P.d_i, generator=g, dtype=torch.float64)
    ft = torch.randn(30, P.d_t, generator=g, dtype=torch.float64)
    sw = agreement_sweep(P, fi, ft, modality)
    r = svd(P).r
    assert len(sw) == r * (r + 1) // 2
    for row in sw.sample(8, random_state=0).itertuples():
        ref = naive_agreement(P, fi, ft, Band(row.k_top, row.k_bottom), modality)
        assert abs(row.agreement - ref) < 1e-6  # float32 projectors in the naive path


def test_agreement_picks_the_band_that_reproduces_the_cross_modal_geometry() -> None:
    # W_i = W_t and each caption's features equal its image's: the cross-modal similarities
    # ARE the unfiltered intra-modal ones, so (0, 0) agrees perfectly and is chosen
    from isoclip.selection.rules import agreement_sweep

    g = torch.Generator().manual_seed(0)
    W = torch.randn(8, 8, generator=g, dtype=torch.float64)
    P = Projectors(W_i=W, W_t=W.clone())
    f = torch.randn(40, 8, generator=g, dtype=torch.float64)
    sw = agreement_sweep(P, f, f.clone(), "image")
    full = sw[(sw.k_top == 0) & (sw.k_bottom == 0)].agreement.item()
    assert abs(full - 1.0) < 1e-12
    assert sw.drop(sw.index[(sw.k_top == 0) & (sw.k_bottom == 0)]).agreement.max() < 1 - 1e-6
    assert select_band(P, "agreement", image_preproj=f, text_preproj=f, stride=1) == Band(0, 0)


def test_agreement_bad_input_is_named() -> None:
    P, *_ = _random(1, False)
    fi, ft = torch.randn(10, P.d_i), torch.randn(10, P.d_t)
    with pytest.raises(ValueError, match="needs image_preproj"):
        select_band(P, "agreement")
    with pytest.raises(ValueError, match="paired"):
        select_band(P, "agreement", image_preproj=fi, text_preproj=ft[:9])
    with pytest.raises(ValueError, match="image_preproj: expected"):
        select_band(P, "agreement", image_preproj=ft, text_preproj=ft)
    with pytest.raises(ValueError, match="unknown keywords"):
        select_band(P, "agreement", image_preproj=fi, text_preproj=ft, task="image")
    with pytest.raises(ValueError, match="modality"):
        select_band(P, "agreement", image_preproj=fi, text_preproj=ft, modality="audio")


def test_calibration_pairs_come_from_training_pairs(tiny, isolated_cache) -> None:
    from isoclip.data.world.config import WorldConfig
    from isoclip.data.world.synthetic import make_world
    from isoclip.models.features import image_features, text_features
    from isoclip.studies.world import calibration_pairs

    world = make_world(WorldConfig(shapes=("circle", "square"), colours=("red", "blue"),
                                   n_train_per_class=4, n_query_per_class=1,
                                   n_gallery_per_class=1), cache=False)
    fi, ft = calibration_pairs(tiny, world, n=6, seed=1)
    assert fi.shape == (6, tiny.model.visual.proj.shape[0])
    again_i, _ = calibration_pairs(tiny, world, n=6, seed=1)
    assert torch.equal(fi, again_i)  # seeded
    all_i = image_features(tiny, world.train, "preproj", progress=False)
    all_t = text_features(tiny, world.train, "preproj", progress=False)
    # every calibration row is a training pair: the image row and the text row of one index
    rows = torch.cdist(fi.double(), all_i.double()).argmin(1)
    assert len(set(rows.tolist())) == 6
    torch.testing.assert_close(ft, all_t[rows])
    with pytest.raises(ValueError, match="n: expected"):
        calibration_pairs(tiny, world, n=10_000)
