"""isoclip.studies.band_study against the naive per-band path (iso_projectors + project +
evaluate) on random projectors and clustered features."""

from __future__ import annotations

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
