"""isoclip.studies.band_study against the naive per-band path (iso_projectors + project +
evaluate) on random projectors and clustered features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from isoclip.method.bands import Band, iso_projectors
from isoclip.method.operator import svd
from isoclip.method.projectors import Projectors
from isoclip.selection.analysis import histogram_overlap
from isoclip.selection.sweep import naive_band_metrics, sweep_bands
from isoclip.studies import band_study


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    d, d_i, d_t = 12, 16, 10
    P = Projectors(W_i=torch.randn(d, d_i, generator=g, dtype=torch.float64),
                   W_t=torch.randn(d, d_t, generator=g, dtype=torch.float64))
    labels = np.repeat(np.arange(4), 6)
    centres = torch.randn(4, d_i, generator=g, dtype=torch.float64)
    q = centres[labels] + 0.8 * torch.randn(len(labels), d_i, generator=g, dtype=torch.float64)
    gal = centres[labels] + 0.8 * torch.randn(len(labels), d_i, generator=g,
                                                dtype=torch.float64)
    task = band_study.RetrievalTask("image", "image→image", q, gal, labels, labels, False)
    return P, svd(P), task


def test_band_choices_match_the_naive_path(setup):
    P, dec, task = setup
    ks = list(range(0, dec.r, 2))
    sweep = sweep_bands(P, task.query, task.gallery, task.query_labels, task.gallery_labels,
                        "image", ks, ks, dec=dec)
    cands = {"a": Band(2, 0), "b": Band(0, 4), "none": Band(0, 0)}
    out = band_study.band_choices(P, task, sweep, cands, dec=dec)
    assert list(out["choice"]) == ["oracle", "a", "b", "none"]
    for name, band in cands.items():
        ref = naive_band_metrics(P, task.query, task.gallery, task.query_labels,
                                 task.gallery_labels, band, "image", dec=dec)["mAP"]
        assert out.set_index("choice").loc[name, "mAP"] == pytest.approx(ref, abs=1e-6)
    best = out.iloc[0]
    assert best["mAP"] == pytest.approx(sweep["mAP"].max())
    assert best["kept"] == Band(int(best["k_top"]), int(best["k_bottom"])).kept(dec.r)


def test_region_study_matches_the_naive_path(setup):
    P, dec, task = setup
    band = Band(3, 2)
    study = band_study.region_study(P, {"image": task}, {"image": band}, hist_bins=20, dec=dec)
    t = study.table.set_index("region")
    assert list(t.index) == ["top", "middle", "bottom"]
    for region, b in (("top", Band(0, dec.r - 3)), ("middle", band),
                      ("bottom", Band(dec.r - 2, 0))):
        iso = iso_projectors(P, b, dec)
        zq = torch.nn.functional.normalize(iso.project_image(task.query), dim=1)
        zg = torch.nn.functional.normalize(iso.project_image(task.gallery), dim=1)
        s = (zq @ zg.T).numpy()
        assert t.loc[region, "mean_sim"] == pytest.approx(s.mean(), abs=1e-9)
        same = task.query_labels[:, None] == task.gallery_labels[None, :]
        assert t.loc[region, "overlap"] == pytest.approx(
            histogram_overlap(s[same], s[~same], 20), abs=1e-9)
        ref = naive_band_metrics(P, task.query, task.gallery, task.query_labels,
                                 task.gallery_labels, b, "image", dec=dec)["mAP"]
        assert t.loc[region, "mAP"] == pytest.approx(ref, abs=1e-6)
        all_s, pos, neg = study.samples[("image", region)]
        assert len(all_s) == s.size and len(pos) + len(neg) == s.size
    assert isinstance(study.table, pd.DataFrame)


# -- the band ordering over sets ------------------------------------------------------------------

def _ordering_results(setup, fams=(("fam", True), ("fam", True), ("fam", False))):
    P, dec, task = setup
    band = Band(3, 2)
    out = []
    for i, (fam, fg) in enumerate(fams):
        t = band_study.RetrievalTask("image", "image→image", task.query[i:], task.gallery,
                                     task.query_labels[i:], task.gallery_labels, False,
                                     name=f"s{i}")
        out += band_study.region_results(P, t, band, dec=dec, meta={
            "family": fam, "label": f"set = {i}", "fine_grained": fg})
    return out


def test_region_results_equal_the_region_study(setup):
    P, dec, task = setup
    band = Band(3, 2)
    (res,) = band_study.region_results(P, task, band, dec=dec)
    study = band_study.region_study(P, {"image": task}, {"image": band}, dec=dec)
    for region, m in study.table.set_index("region")["mAP"].items():
        assert res.mean(region) == pytest.approx(m, abs=1e-6)
    ref = naive_band_metrics(P, task.query, task.gallery, task.query_labels,
                             task.gallery_labels, Band(0, 0), "image", dec=dec)["mAP"]
    assert res.mean("CLIP") == pytest.approx(ref, abs=1e-6)
    (no_end,) = band_study.region_results(P, task, Band(0, 2), dec=dec)
    assert torch.isnan(no_end.ap["top"]).all() and not torch.isnan(no_end.ap["bottom"]).any()


def test_region_results_on_a_revisited_set(setup):
    from isoclip.evaluate.retrieval import evaluate_revisited_scores
    from isoclip.selection.sweep import BandScorer

    P, dec, task = setup
    labels = np.asarray(task.gallery_labels)
    gnd = [{"easy": np.flatnonzero(labels == y)[:3], "hard": np.flatnonzero(labels == y)[3:],
            "junk": np.array([], dtype=int)} for y in task.query_labels]
    t = band_study.RetrievalTask("image", "image→image", task.query, task.gallery, None, None,
                                 False, gnd=gnd, name="roxford5k")
    res = band_study.region_results(P, t, Band(3, 2), dec=dec, meta={"label": "roxford5k"})
    assert [r.meta["protocol"] for r in res] == ["E", "M", "H"]
    assert res[1].meta["label"] == "roxford5k (M)"
    ref = evaluate_revisited_scores(BandScorer(P, task.query, task.gallery, "image", dec)
                                    .scores(Band(3, 2)), gnd)
    assert res[1].mean("middle") == pytest.approx(ref["mAP_medium"], abs=1e-6)
    assert res[2].mean("middle") == pytest.approx(ref["mAP_hard"], abs=1e-6)


def test_ordering_table_verdicts_rows_and_figure(setup):
    from isoclip.studies import plotting
    from isoclip.studies.suite import FAMILY_LABELS

    res = _ordering_results(setup)
    t = band_study.ordering_table(res)
    assert list(t["kind"]) == ["fine-grained", "fine-grained", "whole", "average"]
    avg = t.iloc[-1]
    for k in ("CLIP", *band_study.REGIONS):
        assert avg[k] == pytest.approx(t.iloc[:2][k].mean())  # the whole set is left out
    for _, row in t.iterrows():
        vals = {k: row[k] for k in band_study.REGIONS}
        assert row["best"] == max(vals, key=vals.get)  # no ties on these sets
        assert row["margin"] == pytest.approx(row["middle"] - max(row["top"], row["bottom"]))
    tied = dataclasses.replace(res[0], ap={**res[0].ap, "top": res[0].ap["middle"].clone()})
    assert band_study.ordering_table([tied])["best"].iloc[0] == "tie (top, middle)"
    v = band_study.ordering_verdicts(res, "on the test model", n_boot=200)
    assert list(v["family"]) == ["fam"] and v["n_sets"].iloc[0] == 2
    assert v["verdict"].iloc[0].endswith("on the test model")
    shown = band_study.ordering_display({"a": t, "b": t})
    assert shown.index[-1] == (FAMILY_LABELS.get("fam", "fam"), "set = 2")  # whole set last
    assert ("a", "middle") in shown.columns and ("b", "best") in shown.columns
    study = band_study.BandOrdering(results={"a": res, "random init": res}, bands={},
                                    seconds={})
    rows = band_study.ordering_rows(study)
    methods = {r["method"] for r in rows}
    assert {"CLIP", "IsoCLIP", "random init", "random init (IsoCLIP)"} <= methods
    assert len(rows) == 2 * 3 * 4 and not rows[-1]["in_average"]
    fig = band_study.ordering_figure({"image→image": {"a": t, "random init": t}})
    assert not plotting.figure_problems(fig)


def test_band_ordering_study_end_to_end_on_fake_real_sets(tmp_path, isolated_cache):
    """A random-init tiny open_clip model over fake miniatures of two image sets (one revisited)
    and two caption sets, with its random-init control; every entry equals a direct
    region_results call on the same features."""
    from isoclip.data.fakes import make_fake_dataset

    for name in ("cub2011", "roxford5k", "flickr30k_text", "coco_text"):
        make_fake_dataset(name, tmp_path, n_classes=3, per_class=2, image_size=16)
    with pytest.raises(ValueError, match="text_datasets"):
        band_study.band_ordering_study(["cub2011"], [], model="isoclip-tiny-vit",
                                       data_root=tmp_path)
    key, img, txt = band_study.primary_sets(["roxford5k", "cub2011"], ["coco_text"],
                                            "isoclip-tiny-vit")
    assert (key, img, txt) == ("isoclip-tiny-vit", "cub2011", "coco_text")
    with pytest.raises(ValueError, match="class-labelled"):
        band_study.primary_sets(["roxford5k"], ["coco_text"], "isoclip-tiny-vit")
    study = band_study.band_ordering_study(["cub2011", "roxford5k"],
                                           ["flickr30k_text", "coco_text"],
                                           model="isoclip-tiny-vit", data_root=tmp_path,
                                           device="cpu", control=True)
    assert list(study.results) == ["random init (as given)", "random init"]
    labels = [r.meta["label"] for r in study.task("image")]
    assert labels == ["cub2011", "roxford5k (E)", "roxford5k (M)", "roxford5k (H)"]
    assert [r.name for r in study.task("text")] == ["flickr30k_text", "coco_text"]
    from isoclip.models.loading import load_model

    bundle = load_model("isoclip-tiny-vit", None, seed=0)
    from isoclip.method.projectors import get_projectors

    P = get_projectors(bundle.model)
    task = band_study.set_task(bundle, "cub2011", "image", tmp_path)
    band = study.bands["random init (as given)"]["image"]["isoclip-tiny-vit"]
    (direct,) = band_study.region_results(P, task, band)
    got = study.task("image")[0]
    for k in ("CLIP", *band_study.REGIONS):
        assert got.mean(k) == pytest.approx(direct.mean(k), abs=1e-9)
    tables = band_study.ordering_tables(study)
    assert list(tables) == ["image→image", "text→text"]
    t = tables["image→image"]["random init"]
    assert t.iloc[-1]["set"] == "average (2 datasets)"  # cub2011 and roxford5k (M)
    v = band_study.ordering_verdict_table(study, "isoclip-tiny-vit", None, n_boot=100)
    assert set(v["weights"]) == set(study.results)
    assert all("on isoclip-tiny-vit" in x for x in v["verdict"])
    assert "random-init control" in band_study.ordering_reading(v)
    g = band_study.ordering_glue(v)
    main = v[v["weights"] == "random init (as given)"]
    assert g["ord_image_paper_n"] == 2 and g["ord_text_paper_n"] == 2
    assert g["ord_image_paper_verdict"] == ("reproduced" if main["holds"].iloc[0]
                                            else "not reproduced")
    assert g["ord_text_paper_vs_top"] == main["vs_top"].iloc[1]
