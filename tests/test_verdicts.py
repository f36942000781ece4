"""Every verdict rule of isoclip.studies.verdicts on hand-made inputs, boundaries included."""

from __future__ import annotations

import pytest

from isoclip.method.bands import PAPER_BANDS, Band, paper_scaled_band
from isoclip.studies import verdicts as v
from isoclip.studies.reference import load_paper_numbers, paper_comparison

NAN = float("nan")


def test_scope_names_the_model() -> None:
    assert v.scope() == "on the tiny model trained here"
    assert v.scope("embedded", None) == "on the tiny model trained here"
    assert v.scope("ViT-B-32", "openai") == "on ViT-B-32 (openai)"
    assert v.scope("ViT-B-32", None) == "on ViT-B-32 (random init)"
    with pytest.raises(ValueError, match="model"):
        v.scope("")


@pytest.mark.parametrize("lo, hi, sig, word", [
    (0.1, 2.0, True, "raises"),
    (1e-12, 1e-12, True, "raises"),
    (0.0, 2.0, False, "does not measurably change"),  # an endpoint at 0 is not excluded
    (-1.0, 0.0, False, "does not measurably change"),
    (-0.5, 0.5, False, "does not measurably change"),
    (-2.0, -0.1, True, "lowers"),
    (-3.0, -3.0, True, "lowers"),
])
def test_significance_and_change_from_the_interval(lo: float, hi: float, sig: bool,
                                                   word: str) -> None:
    assert v.significant(lo, hi) is sig
    assert v.change(lo, hi) == word


@pytest.mark.parametrize("lo, hi", [(NAN, 1.0), (0.0, NAN), (2.0, 1.0)])
def test_bad_intervals_are_refused(lo: float, hi: float) -> None:
    with pytest.raises(ValueError, match="lo, hi"):
        v.significant(lo, hi)
    with pytest.raises(ValueError, match="lo, hi"):
        v.change(lo, hi)


def test_accuracy_words_and_reproduces() -> None:
    assert v.change_of_accuracy(0.5, 1.0) == "rises"
    assert v.change_of_accuracy(-1.0, -0.5) == "drops"
    assert v.change_of_accuracy(-1.0, 0.5) == "does not measurably change"
    assert v.reproduces(True) == "reproduces"
    assert v.reproduces(False) == "does not reproduce"


def test_compare_intervals() -> None:
    assert v.compare_intervals((1.0, 2.0), (-1.0, 0.5)) == "holds"
    assert v.compare_intervals((-1.0, 0.5), (1.0, 2.0)) == "is reversed"
    overlap = "cannot be confirmed (the two intervals overlap)"
    assert v.compare_intervals((0.5, 2.0), (-1.0, 0.5)) == overlap  # touching endpoints
    assert v.compare_intervals((-1.0, 0.5), (0.5, 2.0)) == overlap
    assert v.compare_intervals((0.0, 3.0), (1.0, 2.0)) == overlap
    with pytest.raises(ValueError):
        v.compare_intervals((2.0, 1.0), (0.0, 1.0))


def test_fmt_delta() -> None:
    assert v.fmt_delta(1.234, 0.456, 2.009) == "+1.23 [+0.46, +2.01]"
    assert v.fmt_delta(-0.04, -0.5, 0.3, decimals=1) == "-0.0 [-0.5, +0.3]"
    assert v.fmt_delta(NAN, NAN, NAN) == "n/a"
    assert v.fmt_delta(NAN, NAN, NAN, missing="n/a (reference)") == "n/a (reference)"


@pytest.mark.parametrize("value, ref, tol, word", [
    (51.0, 50.0, 1.0, "about equal to"),      # boundary: within, inclusive
    (51.01, 50.0, 1.0, "higher than"),
    (49.0, 50.0, 1.0, "about equal to"),
    (48.99, 50.0, 1.0, "lower than"),
    (0.52, 0.50, v.ABOUT_EQUAL_COSINE, "about equal to"),
    (0.53, 0.50, v.ABOUT_EQUAL_COSINE, "higher than"),
])
def test_about_equal(value: float, ref: float, tol: float, word: str) -> None:
    assert v.about_equal(value, ref, tol) == word


def test_about_equal_rejects_a_negative_tolerance() -> None:
    with pytest.raises(ValueError, match="tol"):
        v.about_equal(1.0, 1.0, -0.1)


def test_goal_met_ceiling_and_targets() -> None:
    assert v.goal_met(0.0) and v.goal_met(1.0)          # within one mAP, inclusive
    assert not v.goal_met(1.0001)
    with pytest.raises(ValueError, match="gap_to_oracle"):
        v.goal_met(NAN)
    assert v.near_ceiling(95.01) and not v.near_ceiling(95.0) and not v.near_ceiling(60.0)
    assert v.meets_target(1.05, at_most=1.05) == "meets"
    assert v.meets_target(1.0501, at_most=1.05) == "misses"
    assert v.meets_target(100.0, at_least=100.0) == "meets"
    assert v.meets_target(99.9, at_least=100.0) == "misses"
    with pytest.raises(ValueError, match="exactly one"):
        v.meets_target(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        v.meets_target(1.0, at_most=2.0, at_least=0.0)


def test_gap_rules() -> None:
    assert v.narrows_gap(0.49, 1.0) and not v.narrows_gap(0.5, 1.0)
    assert v.closes_gap(0.24, 1.0) and not v.closes_gap(0.25, 1.0)
    assert v.loss_minimum_at_trained_gap(0.0, 0.05)
    assert v.loss_minimum_at_trained_gap(-0.025, 0.05)   # half a grid step: same grid point
    assert not v.loss_minimum_at_trained_gap(0.05, 0.05)
    with pytest.raises(ValueError, match="shift_step"):
        v.loss_minimum_at_trained_gap(0.0, 0.0)


def test_spectrum_and_band_regions() -> None:
    assert v.flatter_middle({"top": 0.2, "mid": 0.01, "bottom": 0.1})
    assert not v.flatter_middle({"top": 0.2, "mid": 0.1, "bottom": 0.1})  # equal: not flatter
    assert v.best_region({"top": 1.0, "middle": 3.0, "bottom": 3.0}) == "middle"  # first on ties
    assert (v.middle_band_verdict({"top": 1.0, "middle": 3.0, "bottom": 2.0})
            == "reproduced: the middle band has the highest mAP")
    assert (v.middle_band_verdict({"top": 4.0, "middle": 3.0, "bottom": 2.0})
            == "not reproduced: the top band has the highest mAP")
    with pytest.raises(ValueError):
        v.best_region({})


def test_paper_band_choice() -> None:
    b32 = v.paper_band("ViT-B-32", "openai", "image", 512)
    assert b32 == v.PaperBand(Band(150, 50), published=True) and b32.label == "paper"
    assert v.paper_band("ViT-B-32", "openai", "text", 512).band == Band(20, 100)
    # a published band at another rank, a backbone without one, the tiny model: B/32 scaled
    for model, pretrained, r in (("ViT-B-32", "openai", 256), ("RN50", "openai", 1024),
                                 ("embedded", None, 64)):
        for task in ("image", "text"):
            got = v.paper_band(model, pretrained, task, r)
            assert got.label == "paper-scaled" and not got.published
            assert got.band == paper_scaled_band(r, task=task)
    assert v.paper_band("embedded", None, "image", 64).band == Band(19, 6)  # 150/50 of 512 x 1/8
    for (model, pretrained, task), (kt, kb, r) in PAPER_BANDS.items():
        assert v.paper_band(model, pretrained, task, r).band == Band(kt, kb)
    with pytest.raises(ValueError, match="task"):
        v.paper_band("ViT-B-32", "openai", "audio", 512)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="r"):
        v.paper_band("ViT-B-32", "openai", "image", 1)


def test_inversion_curve_shapes() -> None:
    steps = [0, 5, 10, 20, 40, 80, 150]
    early = v.inversion_curve(steps, [30, 40, 45, 44, 42, 41, 40])
    assert (early.best_step, early.last_step, early.early_peak) == (10, 150, True)
    assert early.drop == pytest.approx(5.0)
    assert early.shape == "peaks at step 10 and then declines by 5.0 mAP"
    # the peak at exactly a quarter of the steps counts, one snapshot later does not
    assert v.inversion_curve([0, 25, 100], [1.0, 3.0, 2.0]).early_peak
    late = v.inversion_curve([0, 26, 100], [1.0, 3.0, 2.0])
    assert not late.early_peak and late.shape.startswith("peaks at step 26")
    plateau = v.inversion_curve(steps, [30, 40, 45, 44.9, 44.8, 44.6, 44.5])
    assert not plateau.early_peak  # a drop of exactly 0.5 is a plateau
    assert plateau.shape == "plateaus: its best snapshot, step 10, is within 0.5 mAP of the last"
    rising = v.inversion_curve(steps, [1, 2, 3, 4, 5, 6, 7])
    assert rising.shape == "rises up to the last step" and not rising.early_peak
    tie = v.inversion_curve([0, 10, 20], [5.0, 5.0, 1.0])
    assert tie.best_step == 0  # the first best snapshot
    with pytest.raises(ValueError, match="steps"):
        v.inversion_curve([0, 0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="steps, maps"):
        v.inversion_curve([0, 1], [1.0])


def test_thresholds_agree_with_what_their_docstrings_cite() -> None:
    ref = load_paper_numbers()
    iso = ref[ref["paper"] == "IsoCLIP"]
    gains = paper_comparison(iso, "image-image")
    smallest = float(gains[gains["method"] == "IsoCLIP"]["gain_points"].min())
    assert v.GOAL_GAP_TO_ORACLE < smallest / 2  # less than half the smallest reported gain
    text = paper_comparison(ref, "text-text")
    # below the ceiling headroom, the largest text→text gain the papers report could not show
    assert float(text["gain_points"].max()) <= v.NEAR_CEILING_HEADROOM
    assert v.NOTABLE_GAIN == v.ABOUT_EQUAL_POINTS
    assert v.ABOUT_EQUAL_COSINE == pytest.approx(v.ABOUT_EQUAL_POINTS / 100 * 2)
    assert 0 < v.GAP_CLOSED_FRACTION < v.GAP_NARROWED_FRACTION < 1
    assert v.MIN_GAIN < v.NOTABLE_GAIN
