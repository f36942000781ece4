"""Cached band grids (isoclip.studies.grids) equal the uncached computations, bit for bit,
and any change of their inputs computes them again."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoclip.method.projectors import Projectors
from isoclip.selection.rules import select_band
from isoclip.selection.sweep import sweep_bands
from isoclip.studies import grids


def _random(seed: int = 0, d: int = 12, d_i: int = 10, d_t: int = 8):
    g = torch.Generator().manual_seed(seed)
    P = Projectors(W_i=torch.randn(d, d_i, generator=g), W_t=torch.randn(d, d_t, generator=g),
                   b_i=torch.randn(d, generator=g), b_t=None)
    fi = torch.randn(60, d_i, generator=g)
    ft = torch.randn(60, d_t, generator=g)
    labels = torch.randint(0, 5, (60,), generator=g)
    return P, fi, ft, labels


def _entries(root) -> int:
    return len(list((root / "grids").glob("*.pt"))) if (root / "grids").is_dir() else 0


@pytest.mark.parametrize("modality", ["image", "text"])
def test_grid_sweep_equals_sweep_bands_and_is_reused(isolated_cache, monkeypatch,
                                                      modality: str) -> None:
    P, fi, ft, y = _random()
    f = fi if modality == "image" else ft
    ks = [0, 2, 4, 6]
    args = (P, f[:20], f[20:], y[:20], y[20:], modality, ks, ks)
    direct = sweep_bands(*args, metric=["mAP", "R@1"])
    first = grids.grid_sweep(*args, metric=["mAP", "R@1"])
    pd.testing.assert_frame_equal(first, direct, check_exact=True)
    assert _entries(isolated_cache) == 1

    calls = []
    monkeypatch.setattr(grids, "sweep_bands", lambda *a, **k: calls.append(1) or direct)
    again = grids.grid_sweep(*args, metric=["mAP", "R@1"])
    pd.testing.assert_frame_equal(again, direct, check_exact=True)
    assert calls == []  # loaded, not recomputed

    # one changed feature value, one changed label, another grid: computed again
    f2 = f.clone()
    f2[3, 1] += 1e-3
    y2 = y.clone()
    y2[25] = (y2[25] + 1) % 5
    grids.grid_sweep(P, f2[:20], f2[20:], y[:20], y[20:], modality, ks, ks, metric=["mAP", "R@1"])
    grids.grid_sweep(P, f[:20], f[20:], y2[:20], y2[20:], modality, ks, ks, metric=["mAP", "R@1"])
    grids.grid_sweep(*args[:6], [0, 2], ks, metric=["mAP", "R@1"])
    assert len(calls) == 3


def test_agreement_band_equals_select_band(isolated_cache) -> None:
    P, fi, ft, _ = _random(1)
    for modality in ("image", "text"):
        want = select_band(P, "agreement", image_preproj=fi, text_preproj=ft,
                           modality=modality, stride=2)
        assert grids.agreement_band(P, fi, ft, modality, 2) == want
        assert grids.agreement_band(P, fi, ft, modality, 2) == want  # from the cache
    assert _entries(isolated_cache) == 2
    with pytest.raises(ValueError, match="stride"):
        grids.agreement_band(P, fi, ft, "image", 0)


def test_tensor_digest_sees_dtype_shape_and_values() -> None:
    a = torch.arange(6, dtype=torch.float32)
    assert grids.tensor_digest(a) == grids.tensor_digest(a.clone())
    assert grids.tensor_digest(a) == grids.tensor_digest(a.numpy())
    assert grids.tensor_digest(a) != grids.tensor_digest(a.double())
    assert grids.tensor_digest(a) != grids.tensor_digest(a.reshape(2, 3))
    b = a.clone()
    b[5] = float(np.nextafter(np.float32(5), np.float32(6)))
    assert grids.tensor_digest(a) != grids.tensor_digest(b)
    assert grids.tensor_digest(a, None) != grids.tensor_digest(a)
