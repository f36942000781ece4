"""The regime study's library code (isoclip.regimes) against naive references."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from isoclip.bands import Band, naive_band_metrics, select_band
from isoclip.data.synthetic import WorldConfig
from isoclip.evaluate.retrieval import evaluate
from isoclip.operator import effective_rank, svd
from isoclip.projectors import Projectors
from isoclip.regimes import REGIME_KEYS, band_metrics, run_regime, spectrum_flatness
from isoclip.train import TrainConfig


def _naive_capacity(S: np.ndarray) -> float:
    """max over contiguous bands of kept * min / max, by brute force."""
    r = len(S)
    return max((b - a + 1) * S[b] / S[a] for a in range(r) for b in range(a + 1, r))


def test_flatness_of_reference_spectra() -> None:
    exp = torch.exp(-0.1 * torch.arange(40, dtype=torch.float64))
    f = spectrum_flatness(exp)
    assert f["flatness_mid_ratio"] == pytest.approx(1.0)
    assert f["decay_mid"] == pytest.approx(0.1) or math.isnan(f["decay_mid"])
    flat = torch.ones(16, dtype=torch.float64)
    g = spectrum_flatness(flat)
    assert g["flatness_iso_capacity"] == pytest.approx(1.0)
    assert g["effective_rank_frac"] == pytest.approx(1.0)
    # CLIP-like: steep top and bottom, slowly decaying middle
    rates = np.r_[np.full(10, 0.3), np.full(20, 0.01), np.full(9, 0.4)]
    S = torch.from_numpy(np.exp(-np.r_[0.0, np.cumsum(rates)]))
    h = spectrum_flatness(S)
    assert h["flatness_mid_ratio"] < 0.1
    assert h["decay_mid"] < min(h["decay_top"], h["decay_bottom"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flatness_matches_naive_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0.01, 1.0, size=24))[::-1].copy()
    f = spectrum_flatness(torch.from_numpy(s))
    assert f["flatness_iso_capacity"] * 24 == pytest.approx(_naive_capacity(s))
    rate = [math.log(s[j]) - math.log(s[j + 1]) for j in range(23)]
    mid = np.median(rate[6:18])
    ends = np.median(rate[:6] + rate[18:])
    assert f["flatness_mid_ratio"] == pytest.approx(mid / ends)
    assert f["effective_rank_frac"] == pytest.approx(effective_rank(torch.from_numpy(s)) / 24)
    # only the first `rank` values count (Psi's null space)
    padded = torch.from_numpy(np.r_[s, np.zeros(8)])
    assert spectrum_flatness(padded, rank=24) == pytest.approx(f, nan_ok=True)


@pytest.mark.parametrize("S, kwargs, message", [
    (torch.ones(3, 3), {}, "S: expected a 1-D"),
    (torch.tensor([1.0, 2.0, 0.5, 0.1]), {}, "non-increasing"),
    (torch.tensor([1.0, 0.5, 0.2, -0.1]), {}, "non-negative"),
    (torch.ones(8), {"rank": 3}, "rank: expected an int in [4, 8]"),
    (torch.ones(8), {"rank": 9}, "rank"),
])
def test_flatness_errors_name_the_argument(S, kwargs, message) -> None:
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        spectrum_flatness(S, **kwargs)


def _random(seed: int, d: int = 12, d_i: int = 10, d_t: int = 8, n: int = 90):
    g = torch.Generator().manual_seed(seed)
    P = Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                   b_i=torch.randn(d, generator=g), b_t=None)
    f = torch.randn(n, d_i, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    # make the labels matter: add a class direction
    f += 2.0 * torch.randn(5, d_i, generator=g)[labels]
    return P, f, labels


def _naive(P, q, g, ql, gl, band) -> float:
    return naive_band_metrics(P, q, g, ql, gl, band, "image")["mAP"]


@pytest.mark.parametrize("d, stride", [(12, 1), (12, 2), (6, 1), (6, 3)])
def test_band_metrics_match_the_naive_per_band_path(d: int, stride: int) -> None:
    P, f, y = _random(3, d=d)
    q, g, ql, gl = f[:30], f[30:], y[:30], y[30:]
    dec = svd(P)
    rank, null = min(dec.r, P.d), dec.r - min(dec.r, P.d)
    out = band_metrics(P, q, g, ql, gl, "image", stride=stride)
    grid = [Band(kt, null + kb) for kt in range(0, rank, stride) for kb in range(0, rank, stride)
            if kt + kb < rank]
    naive = {(b.k_top, b.k_bottom): _naive(P, q, g, ql, gl, b) for b in grid}
    clip = evaluate(P.project_image(q), P.project_image(g), ql, gl)["mAP"]
    assert out["clip_mAP"] == pytest.approx(clip, abs=1e-3)
    assert out["full_band_mAP"] == pytest.approx(naive[(0, null)], abs=1e-3)
    assert out["oracle_mAP"] == pytest.approx(max(naive.values()), abs=1e-3)
    assert naive[tuple(out["oracle_band"])] == pytest.approx(out["oracle_mAP"], abs=1e-3)
    top = {k: v for k, v in naive.items() if k[1] == null}
    bottom = {k: v for k, v in naive.items() if k[0] == 0}
    assert out["top_only_mAP"] == pytest.approx(max(top.values()), abs=1e-3)
    assert out["bottom_only_mAP"] == pytest.approx(max(bottom.values()), abs=1e-3)
    auto = select_band(P, "isotropy")
    assert out["auto_band"] == [auto.k_top, auto.k_bottom]
    assert out["auto_mAP"] == pytest.approx(_naive(P, q, g, ql, gl, auto), abs=1e-3)
    # held-out oracle: choose on even queries, score on odd ones, and vice versa
    halves = [np.arange(0, 30, 2), np.arange(1, 30, 2)]
    scores = []
    for a, b in ((0, 1), (1, 0)):
        ia, ib = torch.as_tensor(halves[a]), torch.as_tensor(halves[b])
        by_band = {k: _naive(P, q[ia], g, ql[ia], gl, Band(*k)) for k in naive}
        best = max(by_band, key=lambda k: (by_band[k], -grid.index(Band(*k))))
        scores.append(_naive(P, q[ib], g, ql[ib], gl, Band(*best)))
    assert out["oracle_heldout_mAP"] == pytest.approx(np.mean(scores), abs=1e-3)


@pytest.mark.parametrize("kwargs, message", [
    ({"stride": 0}, "stride: expected an int >= 1"),
    ({"stride": 1.5}, "stride"),
    ({"modality": "audio"}, "modality"),
])
def test_band_metrics_errors_name_the_argument(kwargs, message) -> None:
    P, f, y = _random(4)
    args = {"modality": "image", **kwargs}
    with pytest.raises(ValueError, match=message):
        band_metrics(P, f[:20], f[20:], y[:20], y[20:], args.pop("modality"), **args)


TINY_WORLD = WorldConfig(scene="compositional", shapes=("circle", "square"),
                         colours=("red", "blue"), n_train_per_class=8, n_query_per_class=3,
                         n_gallery_per_class=4, n_text_query_per_class=2,
                         n_text_gallery_per_class=3)
TINY_TRAIN = TrainConfig(steps=3, batch_size=16, log_every=1, checkpoint_fracs=(1.0,))


def test_run_regime_on_a_tiny_configuration(isolated_cache, one_thread) -> None:
    a = run_regime(TINY_WORLD, TINY_TRAIN, stride=8)
    assert set(REGIME_KEYS) <= set(a)
    assert a["world"]["scene"] == "compositional" and a["train"]["steps"] == 3
    assert a["rank"] == 64 and a["sweep_stride"] == 8
    for k in ("i2i", "t2t"):
        assert a[f"{k}_oracle_mAP"] >= a[f"{k}_mAP"] - 1e-9
        assert a[f"{k}_oracle_mAP"] >= a[f"{k}_auto_mAP"] - 1e-9
        assert 0 <= a[f"{k}_mAP"] <= 100
    json.dumps(a, allow_nan=False)  # JSON-ready, NaN as null
    b = run_regime(TINY_WORLD, TINY_TRAIN, stride=8)  # from the cache: same numbers
    assert {k: v for k, v in a.items() if k != "eval_seconds"} == \
        {k: v for k, v in b.items() if k != "eval_seconds"}
    fixed = run_regime(TINY_WORLD, replace(TINY_TRAIN, temperature=0.01), stride=8)
    assert fixed["final_temperature"] == pytest.approx(0.01)


def test_run_regime_argument_errors() -> None:
    with pytest.raises(TypeError, match="world_cfg"):
        run_regime({}, TINY_TRAIN)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="train_cfg"):
        run_regime(TINY_WORLD, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stride"):
        run_regime(TINY_WORLD, TINY_TRAIN, stride=0)
