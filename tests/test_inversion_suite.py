"""Chapter 3 over a list of datasets (isoclip.studies.inversion_suite): per-query revisitop AP,
the rows on the inverted queries and their averages, against naive references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from isoclip.studies.inversion_suite import (
    InversionSuite,
    inversion_layout,
    inversion_result_rows,
    inversion_table,
    inversion_verdicts,
    inverted_view,
)
from isoclip.studies.suite import InversionSettings, SetFeatures, SetResult, in_average


def _result(name: str, family: str, fine: bool | None, clip: list[float], inv: list[float],
            iso: list[float], modality: str = "image") -> SetResult:
    n = len(clip)

    def t(v: list[float]) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float64)

    ap = {"CLIP": t(clip), "mean-centred": t(clip) + 1.0, "IsoCLIP (automatic)": t(iso),
          "IsoCLIP (held-out)": t(iso) - 1.0, "IsoCLIP (oracle)": t(iso),
          "IsoCLIP (agreement)": t([math.nan] * n)}
    rows = torch.arange(0, n, 2)
    r = SetResult(name=name, modality=modality, n_query=n, n_gallery=10, same_split=False,
                  ap=ap, bands={}, inversion="OTI" if modality == "image" else "OVI",
                  inv_rows=rows, inv_ap=t(inv)[rows])
    r.meta = {"family": family, "fine_grained": fine, "label": name}
    return r


def test_inversion_table_rows_and_averages() -> None:
    a = _result("synthetic/shape=circle", "synthetic", True, [10, 20, 30, 40], [15, 0, 45, 0],
                [12, 0, 20, 0])
    b = _result("synthetic/colour=red", "synthetic", True, [50, 60], [40, 0], [70, 0])
    w = _result("synthetic/world", "synthetic", False, [5, 5], [9, 9], [1, 1])
    suite = InversionSuite(results=[w, a, b], model="embedded", pretrained=None,
                           settings=InversionSettings())
    t = inversion_table(suite, n_boot=200)
    row = t[t["name"] == "synthetic/shape=circle"].iloc[0]
    # queries 0 and 2 inverted: CLIP 10, 30; OTI 15, 45; automatic 12, 20
    assert row["n"] == 2 and row["CLIP"] == pytest.approx(20.0)
    assert row["inverted"] == pytest.approx(30.0) and row["d_inv"] == pytest.approx(10.0)
    assert row["d_auto"] == pytest.approx(-4.0) and row["d_held"] == pytest.approx(-5.0)
    assert row["d_centred"] == pytest.approx(1.0)
    avg = t[t["kind"] == "average"].iloc[0]
    assert avg["n_sets"] == 2  # the whole world is never averaged in
    assert avg["d_inv"] == pytest.approx((10.0 + -10.0) / 2)
    assert avg["d_inv_lo"] <= avg["d_inv"] <= avg["d_inv_hi"]
    assert t[t["name"] == "synthetic/world"].iloc[0]["kind"] == "whole"
    assert not in_average(w) and in_average(a)
    lay = inversion_layout(t, "image")
    assert lay.shape[0] == 4 and ("OTI", "Δ") in lay.columns
    assert "[" in lay.iloc[-1][("OTI", "Δ")]
    text = inversion_verdicts(t, "embedded", None)
    assert "on the tiny model trained here" in text
    rows = inversion_result_rows(t)
    assert {r["method"] for r in rows} == {"CLIP", "OTI", "IsoCLIP", "IsoCLIP (automatic)",
                                           "mean-centred"}
    assert all(r["task"] == "image-image" for r in rows)


def test_inverted_view_and_paper_family() -> None:
    r = _result("cub2011", "paper", None, [10, 20], [30, 40], [10, 20])
    v = inverted_view(r)
    assert v is not None and v.n_query == 1 and float(v.ap["OTI"][0]) == 30.0
    assert in_average(r)
    r.meta["protocol"] = "E"
    assert not in_average(r)
    r.inv_rows = None
    assert inverted_view(r) is None


def test_invert_whole_query_budget_for_paper_sets(tiny, isolated_cache) -> None:
    """InversionSettings.queries: a paper set inverts query_budget's subset; embedded
    families keep their per-class subsets."""
    from isoclip.evaluate.stats import balanced_subset
    from isoclip.studies.dataset_inversion import query_budget
    from isoclip.studies.suite import _invert_whole

    labels = np.repeat(np.arange(3), 4)
    with torch.no_grad():
        q = tiny.model.encode_image(torch.randn(12, 3, tiny.image_size, tiny.image_size,
                                                generator=torch.Generator().manual_seed(0)))
    feats = SetFeatures(q, q, q, q)
    inv = InversionSettings(oti_steps=1, queries=5)
    rows, f = _invert_whole(tiny, feats, labels, "image", 2, inv, "paper")
    assert torch.equal(rows, query_budget(labels, 5, 0)) and len(rows) == 3
    assert f.shape == (3, q.shape[1])
    rows, _ = _invert_whole(tiny, feats, labels, "image", 2, inv, "synthetic")
    assert torch.equal(rows, balanced_subset(torch.as_tensor(labels), 2, 0))
    rows, _ = _invert_whole(tiny, feats, labels, "image", 2,
                            InversionSettings(oti_steps=1, queries="all"), "paper")
    assert len(rows) == 12


def test_inversion_glue_summary_and_figure(tiny, isolated_cache) -> None:
    """Chapter 3's prose values come from the study they describe (hand-checked entries)."""
    from isoclip.data.world.config import WorldConfig
    from isoclip.data.world.synthetic import make_world
    from isoclip.method.bands import Band
    from isoclip.studies.inversion import inversion_glue, inversion_study, summary_table
    from isoclip.studies.inversion_suite import inversion_curves_figure

    world = make_world(WorldConfig(shapes=("circle", "square"), colours=("red", "blue"),
                                   n_train_per_class=2, n_query_per_class=3,
                                   n_gallery_per_class=4, n_text_query_per_class=2,
                                   n_text_gallery_per_class=3), cache=False)
    study = inversion_study(tiny, world, oti_per_class=2, ovi_per_class=1, oti_steps=2,
                            ovi_steps=2, oti_snapshots=(0, 1), ovi_snapshots=(0,),
                            image_band=Band(1, 1), text_band=Band(0, 2))
    g = inversion_glue(study, tiny, world, subset_seed=0)
    ret = study.retrieval.set_index(["task", "method"])["mAP"]
    assert g["n_oti"] == 8 and g["oti_per_class"] == 2 and g["n_classes"] == 4
    assert g["img_inv"] == pytest.approx(float(ret[("image→image", "OTI")]))
    assert g["txt_headroom"] == pytest.approx(100.0 - float(ret[("text→text", "CLIP")]))
    d = study.deltas.set_index("key")
    assert g["img_inv_lo"] == pytest.approx(float(d.loc["img_OTI", "lo"]))
    assert g["img_band"] == "(1, 1)" and g["txt_band"] == "(0, 2)"
    assert g["subset_oti"] == "a seeded class-balanced subset of"
    assert g["zs_chance"] == pytest.approx(25.0)
    assert g["oti_last_step"] == 2 and g["verdict_scope"] == "on the tiny model trained here"
    assert g["img_inv_verdict"] in ("raises", "lowers", "does not measurably change")
    s = summary_table(study)
    assert s.loc["image→image mAP (OTI)", "OTI / OVI (inverted)"] == pytest.approx(g["img_inv"])
    assert np.isnan(s.loc["zero-shot top-1 % (through OTI)", "IsoCLIP"])
    fig = inversion_curves_figure(study)
    assert len(fig.axes) == 4


def test_grid_stride_paper_numbers_and_control() -> None:
    from isoclip.studies.inversion_suite import control_layout, grid_stride, paper_numbers

    assert grid_stride(None, "embedded") == 2 and grid_stride(4, "ViT-B-32") == 4
    with pytest.raises(ValueError, match="grid_stride"):
        grid_stride(0, "embedded")
    assert paper_numbers("embedded", None) == {}
    assert paper_numbers("ViT-B-32", None) == {}  # random init: no reported numbers
    ref = paper_numbers("ViT-B-32", "openai")
    assert "CLIP" in set(ref["image"]["method"])
    a = _result("cub2011", "paper", None, [10, 20], [30, 40], [10, 20])
    b = _result("cub2011", "paper", None, [5, 6], [7, 8], [9, 10])
    main = inversion_table(InversionSuite([a], "ViT-B-32", "openai", InversionSettings()),
                           n_boot=100)
    ctrl = inversion_table(InversionSuite([b], "ViT-B-32", None, InversionSettings()),
                           n_boot=100)
    lay = control_layout(main, ctrl)
    assert lay.loc[("image→image", "cub2011"), ("random init", "CLIP")] == 5.0
    assert lay.loc[("image→image", "cub2011"), ("pretrained", "OTI / OVI")] == 30.0
    assert inversion_layout(main, "image", paper=ref["image"]).index[-1][1].startswith(
        "reported by")


def test_invert_whole_every_query_when_per_class_is_none(tiny, isolated_cache) -> None:
    """per_class None (chapter 3's oti_per_class = None): every query is inverted."""
    from isoclip.studies.suite import _invert_whole

    labels = np.repeat(np.arange(2), 3)
    with torch.no_grad():
        q = tiny.model.encode_image(torch.randn(6, 3, tiny.image_size, tiny.image_size,
                                                generator=torch.Generator().manual_seed(1)))
    rows, f = _invert_whole(tiny, SetFeatures(q, q, q, q), labels, "image", None,
                            InversionSettings(oti_steps=1), "synthetic")
    assert rows.tolist() == list(range(6)) and f.shape == q.shape
