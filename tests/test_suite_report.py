"""Glue values, verdict paragraphs, headline table and result rows of the suite
(isoclip.studies.suite_report) on a hand-made study."""

from __future__ import annotations

import math

import pytest
import torch

from isoclip.studies.suite import METHODS, SetResult, SuiteStudy
from isoclip.studies.suite_report import (
    headline_table,
    inversion_gain,
    suite_glue,
    suite_result_rows,
    suite_summary,
)


def _set(name: str, family: str, fine: bool | None, clip: list[float], gains: dict[str, float],
         facet: str = "", inv: list[float] | None = None, protocol: str = "") -> SetResult:
    base = torch.tensor(clip, dtype=torch.float64)
    ap = {m: base + gains.get(m, 0.0) for m in METHODS}
    r = SetResult(name=name, modality="image", n_query=len(clip), n_gallery=9,
                  same_split=False, ap=ap, bands={},
                  meta={"family": family, "label": name, "fine_grained": fine, "facet": facet,
                        **({"protocol": protocol} if protocol else {})})
    if inv is not None:
        r.inversion, r.inv_rows = "OTI", torch.tensor([0, 1])
        r.inv_ap = torch.tensor(inv, dtype=torch.float64)
    return r


def _study() -> dict[str, SuiteStudy]:
    g1 = {"IsoCLIP (held-out)": 4.0, "mean-centred": 1.0, "IsoCLIP (agreement)": 3.5,
          "IsoCLIP (automatic)": -2.0, "IsoCLIP (oracle)": 5.0}
    g2 = {"IsoCLIP (held-out)": 2.0, "mean-centred": 1.0, "IsoCLIP (agreement)": 1.5,
          "IsoCLIP (automatic)": -2.0, "IsoCLIP (oracle)": 3.0}
    sets = [_set("w/all", "w", False, [40.0, 50.0], {"IsoCLIP (held-out)": 0.5}),
            _set("w/a=1", "w", True, [60.0, 70.0, 80.0], g1, "a", inv=[61.0, 69.0]),
            _set("w/b=1", "w", True, [96.0, 97.0], g2, "b", inv=[97.0, 98.0]),
            _set("cub", "paper", None, [30.0, 40.0], {"IsoCLIP (held-out)": 1.0}),
            _set("rox (E)", "paper", None, [10.0, 20.0], {"IsoCLIP (held-out)": 9.0},
                 protocol="E"),
            _set("rox (M)", "paper", None, [20.0, 30.0], {"IsoCLIP (held-out)": 3.0},
                 protocol="M")]
    return {"image": SuiteStudy(results=sets, bundles={}, sets={})}


def test_suite_glue_on_a_hand_made_study() -> None:
    g = suite_glue(_study(), n_boot=200, seed=0)
    k = "suite_w_img"
    assert g[f"{k}_n_sets"] == 2 and g[f"{k}_n_ceiling"] == 1  # 96.5: within 5 of 100
    assert g[f"{k}_clip"] == pytest.approx((70.0 + 96.5) / 2)
    assert g[f"{k}_heldout_delta"] == pytest.approx(3.0)
    assert g[f"{k}_heldout_lo"] == pytest.approx(3.0) and g[f"{k}_heldout_verdict"] == "raises"
    assert g[f"{k}_auto_verdict"] == "lowers" and g[f"{k}_auto_ci"].startswith("-2.00")
    assert g[f"{k}_agree_gap_delta"] == pytest.approx(0.5)
    assert g[f"{k}_agree_goal"] == "meets" and g[f"{k}_auto_goal"] == "misses"
    assert g[f"{k}_over_centred_delta"] == pytest.approx(2.0)
    assert g[f"{k}_a_delta"] == pytest.approx(4.0) and g[f"{k}_b_delta"] == pytest.approx(2.0)
    assert g[f"{k}_best_set"] == "w/a=1"
    assert g[f"{k}_whole_clip"] == pytest.approx(45.0)
    assert g[f"{k}_whole_delta"] == pytest.approx(0.5)
    # OTI: set a: (+1, -1) -> 0; set b: (+1, +1) -> +1; the average of the sets: +0.5
    assert g[f"{k}_inv_delta"] == pytest.approx(0.5)
    assert g[f"{k}_inv_map"] == pytest.approx((65.0 + 97.5) / 2)
    # the paper family: cub and the Medium protocol of rox are averaged, not E
    p = "suite_paper_img"
    assert g[f"{p}_n_sets"] == 2 and g[f"{p}_heldout_delta"] == pytest.approx(2.0)
    assert f"{p}_inv_delta" not in g and f"{p}_whole_clip" not in g
    text = suite_summary(g, "image", scope="on the toy")
    assert "2 sets averaged" in text and "on the toy" in text and "misses" in text
    assert text.count("\n\n") == 1  # one paragraph per family


def test_inversion_gain_without_inversions_is_nan() -> None:
    out = inversion_gain(_study()["image"].results[3:], n_boot=10)
    assert out["n_sets"] == 0 and math.isnan(out["delta"])


def test_headline_table_and_result_rows() -> None:
    study = _study()
    tab = headline_table(study, n_boot=50)
    assert len(tab) == 2 and list(tab.columns) == [
        "CLIP", "OTI / OVI", "IsoCLIP automatic", "IsoCLIP agreement", "IsoCLIP held-out"]
    assert tab.iloc[0]["IsoCLIP held-out"].startswith("+3.00")
    assert tab.iloc[1]["OTI / OVI"] == "n/a"
    rows = suite_result_rows(study, control=study)
    rox = [r for r in rows if r["dataset"] == "rox" and r["method"] == "CLIP"]
    assert [(r["variant"], r["in_average"]) for r in rox] == [("E", False), ("M", True)]
    iso = [r for r in rows if r["dataset"] == "cub" and r["method"] == "IsoCLIP"]
    assert iso[0]["value"] == pytest.approx(36.0)
    assert {r["method"] for r in rows} >= {"OTI", "random init", "random init (IsoCLIP)"}
    from isoclip.studies.results import _rows

    assert len(_rows(rows)) == len(rows)  # a valid result file


def test_example_set_prefers_emoji_then_an_averaged_set() -> None:
    from isoclip.studies.suite_report import example_set

    study = _study()["image"]
    assert example_set(study) == "w/a=1"
    assert example_set(study, prefer="cub") == "cub"
    assert example_set(SuiteStudy(results=study.results[:1], bundles={}, sets={})) == "w/all"
    for rows in ([], study.results[4:]):  # nothing, or only revisited protocol rows
        with pytest.raises(ValueError, match="no labelled image set"):
            example_set(SuiteStudy(results=rows, bundles={}, sets={}))


@pytest.mark.parametrize("rank, stride", [(64, 2), (96, 6), (512, 32)])
def test_grid_stride_for_follows_the_rank(monkeypatch, rank: int, stride: int) -> None:
    from types import SimpleNamespace

    from isoclip.method import operator, projectors
    from isoclip.studies.suite_report import grid_stride_for
    from isoclip.training import embedded

    assert grid_stride_for("embedded") == 2
    monkeypatch.setattr(embedded, "resolve_model", lambda *a, **k: SimpleNamespace(model="m"))
    monkeypatch.setattr(projectors, "get_projectors", lambda m: ("P", m))
    monkeypatch.setattr(operator, "svd", lambda P: SimpleNamespace(r=rank))
    assert grid_stride_for("ViT-B-32", None) == stride


def test_suite_glue_without_the_agreement_rule() -> None:
    sets = _study()["image"].results[3:]  # paper sets
    for r in sets:
        r.ap["IsoCLIP (agreement)"] = torch.full_like(r.ap["CLIP"], float("nan"))
    g = suite_glue({"image": SuiteStudy(results=sets, bundles={}, sets={})}, n_boot=20)
    assert "suite_paper_img_agree_gap_delta" not in g and "suite_paper_img_agree_ci" not in g
    assert g["suite_paper_img_auto_goal"] in ("meets", "misses")
    assert "agreement" not in suite_summary(g, "image", scope="on X")
