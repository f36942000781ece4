"""isoclip.studies.spectrum against direct computations on random projectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoclip.method.bands import Band, paper_scaled_band
from isoclip.method.projectors import Projectors
from isoclip.studies import plotting
from isoclip.studies.spectrum import (
    spectra_figure,
    spectrum_reading,
    spectrum_rows,
    spectrum_study,
    spectrum_table,
)


def _projectors(seed: int, d: int = 20, d_i: int = 24, d_t: int = 20) -> Projectors:
    g = torch.Generator().manual_seed(seed)
    return Projectors(W_i=torch.randn(d, d_i, generator=g, dtype=torch.float64),
                      W_t=torch.randn(d, d_t, generator=g, dtype=torch.float64))


def test_study_matches_a_direct_svd_and_the_scaled_band() -> None:
    P = _projectors(0)
    s = spectrum_study(P, label="m")
    S = np.linalg.svd((P.W_i.T @ P.W_t).numpy(), compute_uv=False)[: s.r]
    assert np.allclose(s.stats.S.numpy(), S, rtol=1e-9)
    assert s.band == paper_scaled_band(s.r, task="image") and s.band_origin == "paper-scaled"
    assert s.window == max(4, s.r // 16)
    b = s.band
    mid = S[b.k_top: s.r - b.k_bottom]
    assert s.spread["middle"] == pytest.approx(mid.min() / mid.max())
    top = S[: b.k_top]
    assert s.spread["top"] == pytest.approx(top.min() / top.max())
    rate = -np.diff(np.log(S))
    assert s.decay["top"] == pytest.approx(np.median(rate[: b.k_top]))
    assert s.flatter_middle == (s.decay["mid"] < min(s.decay["top"], s.decay["bottom"]))


def test_given_band_and_empty_regions() -> None:
    s = spectrum_study(_projectors(1), label="m", band=Band(3, 0), window=5)
    assert s.band_origin == "parameters" and s.window == 5
    assert np.isnan(s.spread["bottom"]) and np.isnan(s.decay["bottom"])
    rows = spectrum_rows({"m": s})
    assert all(np.isfinite(r["value"]) for r in rows)
    assert not any("bottom" in r["metric"] for r in rows)
    with pytest.raises(ValueError, match="window"):
        spectrum_study(_projectors(1), label="m", window=1)
    with pytest.raises(ValueError):
        spectrum_study(_projectors(1), label="m", band=Band(15, 10))  # nothing kept at r 20


def test_table_figure_and_reading_cover_every_model() -> None:
    studies = {k: spectrum_study(_projectors(i), label=k) for i, k in enumerate(["a", "b"])}
    table = spectrum_table(studies)
    assert list(table.index) == ["a", "b"] and (table["r"] == 20).all()
    fig = spectra_figure(studies)
    assert len(fig.axes) == 2 and not plotting.figure_problems(fig)
    text = spectrum_reading(studies)
    assert text.count("On the ") == 2
    # a pretrained model and its control: the last sentence compares the two verdicts
    text = spectrum_reading(studies, "ViT-B-32", "openai")
    same = studies["a"].flatter_middle == studies["b"].flatter_middle
    assert ("same verdict" in text) == same and ("opposite verdict" in text) == (not same)
    with pytest.raises(ValueError, match="studies"):
        spectra_figure({})


def test_spectrum_models_of_a_pretrained_checkpoint_add_the_random_init_control(tmp_path) -> None:
    """A checkpoint given as ``pretrained`` (weights of seed 1) and its random-init control
    (seed 0): two models, two different spectra, and a reading comparing their verdicts."""
    from isoclip.models.loading import load_model
    from isoclip.studies.spectrum import spectrum_models

    ckpt = tmp_path / "weights.pt"
    torch.save(load_model("isoclip-tiny-vit", None, seed=1).model.state_dict(), ckpt)
    models = spectrum_models("isoclip-tiny-vit", str(ckpt), device="cpu")
    assert list(models) == [f"isoclip-tiny-vit ({ckpt})", "isoclip-tiny-vit (random init)"]
    studies = {k: spectrum_study(b, label=k, model="isoclip-tiny-vit", pretrained=str(ckpt))
               for k, b in models.items()}
    a, b = (s.stats.S for s in studies.values())
    assert not torch.allclose(a, b)
    text = spectrum_reading(studies, "isoclip-tiny-vit", str(ckpt))
    assert "random init control" in text and text.count("On isoclip-tiny-vit") == 2
