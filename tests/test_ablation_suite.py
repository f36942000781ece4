"""Chapter 10 over a list of datasets (isoclip.studies.ablations): same-split and custom-AP
ablations against naive references, the per-dataset table, its averages and the prose values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoclip.evaluate.retrieval import query_metrics
from isoclip.method.bands import Band, paper_scaled_band
from isoclip.method.projectors import get_projectors
from isoclip.studies.ablations import (
    ABLATION_ROWS,
    AblationSuite,
    ablation_ap,
    ablation_family_gains,
    ablation_glue,
    ablation_metrics,
    ablation_result_rows,
    ablation_rows,
    ablation_suite_table,
    ablation_verdicts,
    band_glue,
    chosen_band,
    primary_rows,
)
from isoclip.studies.suite import SetResult


def _features(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_same_split_and_custom_ap_match_references(tiny) -> None:
    P = get_projectors(tiny.model)
    f = _features(15, P.d_i, 0)
    y = np.arange(15) % 3
    band = Band(3, 2)
    ap, means = ablation_ap(P, f, f, y, y, band, "image", seeds=(0, 1), same_split=True)
    naive = 100.0 * query_metrics(P.project_image(f), P.project_image(f), y, y,
                                  same_split=True)["mAP"]
    assert torch.allclose(ap["clip"], naive.double(), atol=1e-4)
    assert len(means) == 2
    assert ap["random_band"].shape == (15,)
    # without same_split each query finds itself first: CLIP's AP is higher
    plain, _ = ablation_ap(P, f, f, y, y, band, "image", seeds=(0,))
    assert float(plain["clip"].mean()) > float(ap["clip"].mean())
    calls: list[int] = []

    def constant(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        calls.append(q.shape[0])
        return torch.full((q.shape[0],), 50.0, dtype=torch.float64)

    df = ablation_metrics(P, f, f, y, y, band, "image", seeds=(0, 1), ap_of=constant)
    assert (df["mAP"] == 50.0).all() and len(calls) == len(ABLATION_ROWS) + 1


def test_chosen_band() -> None:
    band, origin = chosen_band("embedded", None, "image", 64)
    assert band == paper_scaled_band(64, task="image") and "scaled" in origin
    band, origin = chosen_band("ViT-B-32", "openai", "text", 512)
    assert band == Band(20, 100) and origin == "the paper's band of this backbone"
    band, origin = chosen_band("embedded", None, "text", 64, k_top=3)
    assert band.k_top == 3 and band.k_bottom == paper_scaled_band(64, task="text").k_bottom
    assert origin == "set by the parameters"


def _set(name: str, family: str, fine: bool | None, modality: str, base: float,
         gain: float, n: int = 6) -> tuple[SetResult, pd.DataFrame]:
    gen = torch.Generator().manual_seed(len(name))
    clip = base + torch.rand(n, generator=gen, dtype=torch.float64)
    ap = {k: clip.clone() for k, _ in ABLATION_ROWS}
    ap["isoclip"] = clip + gain
    ap["random_band"] = clip - 1.0
    res = SetResult(name=name, modality=modality, n_query=n, n_gallery=10, same_split=False,
                    ap=ap, bands={}, meta={"family": family, "fine_grained": fine,
                                           "label": name})
    df = ablation_rows(ap, [float(ap["random_band"].mean()) - 0.5,
                            float(ap["random_band"].mean()) + 0.5], Band(1, 1), 8, modality,
                       n_boot=200)
    df.insert(0, "set", name)
    df.insert(1, "name", name)
    df.insert(2, "family", family)
    df["in_average"] = bool(fine)
    df["n"] = n
    df["n_gallery"] = 10
    df["model"] = "embedded"
    df["protocol"] = ""
    return res, df


def test_suite_table_averages_and_glue() -> None:
    parts = [_set("synthetic/world", "synthetic", False, "image", 40, 1.0),
             _set("synthetic/shape=circle", "synthetic", True, "image", 50, 2.0),
             _set("synthetic/colour=red", "synthetic", True, "image", 30, 4.0),
             _set("synthetic/world", "synthetic", False, "text", 90, 0.0)]
    suite = AblationSuite(rows=pd.concat([d for _, d in parts], ignore_index=True),
                          results=[r for r, _ in parts])
    t = ablation_suite_table(suite, "image", n_boot=200)
    assert t.shape[0] == 4  # world, two fine-grained sets, the average
    avg = t.iloc[-1]
    assert avg["Δ IsoCLIP − CLIP"].startswith("+3.0 [")  # mean of +2 and +4, world left out
    assert avg["Δ IsoCLIP − random"].startswith("+4.0 [")
    assert t.iloc[1]["Δ IsoCLIP − CLIP"] == "+2.0"
    gains = ablation_family_gains(suite, n_boot=200).set_index(["modality", "key", "baseline"])
    assert gains.loc[("image", "isoclip", "clip"), "delta"] == pytest.approx(3.0)
    assert gains.loc[("image", "isoclip", "clip"), "n_sets"] == 2
    assert ("text", "isoclip", "clip") not in gains.index  # no fine-grained text set
    tidy = primary_rows(suite)
    assert set(tidy["set"]) == {"synthetic/world"} and len(tidy) == 2 * len(ABLATION_ROWS)
    g = ablation_glue(tidy)
    assert g["img_iso_delta"] == pytest.approx(1.0)
    assert g["img_iso_vs_random"] == "above"
    assert g["img_iso_vs_random_z"] == pytest.approx(2.0 / np.std([-0.5, 0.5], ddof=1))
    assert g["txt_iso_verdict"] == "does not measurably change"
    suite.dims["embedded"] = (16, 12)
    suite.bands.update({("embedded", "image"): Band(1, 1), ("embedded", "text"): Band(2, 3)})
    suite.origins.update({("embedded", "image"): "the paper's ViT-B/32 band scaled to r",
                          ("embedded", "text"): "set by the parameters"})
    b = band_glue(suite, tidy)
    assert b["r"] == 12 and b["img_kept"] == 10 and b["txt_kept"] == 7
    assert b["n_seeds"] == 2 and b["n_gallery"] == 10 and b["image_set"] == "synthetic/world"
    assert b["verdict_scope"] == "on the tiny model trained here"
    assert "rank-12" in b["band_note"]
    text = ablation_verdicts(suite, "embedded", None, n_boot=200)
    assert "image→image" in text and "raises" in text and "on the tiny model" in text
    rows = ablation_result_rows(suite)
    assert len(rows) == len(suite.rows) and rows[0]["task"] == "image-image"
