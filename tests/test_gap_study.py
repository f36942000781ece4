"""Chapter 2 / 11 analysis functions (isoclip.studies.gap) on a tiny world and random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isoclip.baselines.losses import clip_loss
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import make_world
from isoclip.evaluate.gap import centroid_gap, gap_vector, shift_gap
from isoclip.method.projectors import get_projectors
from isoclip.models.loading import load_model, share_towers
from isoclip.studies.gap import (
    VARIANT_COLUMNS,
    apply_shift,
    shared_operator_check,
    shift_loss_curves,
    shift_metrics,
    tau_inversion_table,
    variant_metrics,
)
from isoclip.studies.world import world_features

TINY_WORLD = WorldConfig(n_train_per_class=2, n_query_per_class=2, n_gallery_per_class=3,
                         n_text_query_per_class=2, n_text_gallery_per_class=2,
                         shapes=("circle", "square", "triangle"), colours=("red", "blue"))


@pytest.fixture(scope="module")
def world():
    return make_world(TINY_WORLD)


def test_apply_shift_is_liangs_shift() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 5, generator=g) + 1.0, torch.randn(10, 5, generator=g)
    delta = gap_vector(x, y)
    for lam in (-0.3, 0.0, 0.5, 1.0):
        xs, ys = shift_gap(x, y, lam)
        assert torch.allclose(apply_shift(x, delta, lam, "image"), xs)
        assert torch.allclose(apply_shift(y, delta, lam, "text"), ys)
    with pytest.raises(ValueError, match="side"):
        apply_shift(x, delta, 0.1, "audio")


def test_shift_loss_curves() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(12, 4, generator=g) + 2.0, torch.randn(12, 4, generator=g)
    df = shift_loss_curves(x, y, [0.0, 0.5], [0.1, 1.0], batch_size=6)
    assert list(df.columns) == ["lam", "tau", "gap", "loss"] and len(df) == 4
    at0 = df[(df.lam == 0.0) & (df.tau == 0.1)].iloc[0]
    want = np.mean([float(clip_loss(x[a:a + 6].double(), y[a:a + 6].double(),
                                    torch.tensor(10.0, dtype=torch.float64))) for a in (0, 6)])
    assert at0["loss"] == pytest.approx(want, rel=1e-10)
    assert at0["gap"] == pytest.approx(centroid_gap(x, y))
    assert df[df.lam == 0.5]["gap"].iloc[0] < 0.5 * at0["gap"]  # the gap (nearly) closes


def test_variant_metrics_shift_and_tau_table(world, isolated_cache) -> None:
    torch.set_num_threads(1)
    bundle = load_model("isoclip-tiny-vit", seed=0)
    m = variant_metrics(bundle, world)
    for key, _ in VARIANT_COLUMNS:
        if key not in ("train_seconds", "tau"):
            assert key in m, key
    assert m["n_clusters"] == len(world.class_names) == m["n_classes"]
    assert 0 <= m["v_measure"] <= 100 and 0 <= m["knn_acc"] <= 100
    assert m["iso_band"].startswith("(")
    assert m == variant_metrics(bundle, world)  # deterministic
    f = world_features(bundle, world)
    from isoclip.models.features import zero_shot_weights
    w = zero_shot_weights(bundle, world.prompts, progress=False)
    sm = shift_metrics(f, world, w, [0.0, 0.5])
    at0 = sm[sm.lam == 0.0].iloc[0]
    assert at0["zero_shot_acc"] == pytest.approx(m["zero_shot_acc"])
    assert at0["gap"] == pytest.approx(m["gap"]) and at0["v_measure"] == pytest.approx(
        m["v_measure"])
    t = tau_inversion_table({"a": bundle}, world, per_class=1, steps=2, n_boot=50)
    assert list(t["model"]) == ["a"] and t["n_queries"].iloc[0] == len(world.class_names)
    assert np.isfinite(t[["intra_mAP", "oti_mAP", "delta"]].to_numpy()).all()


def test_shared_operator_check() -> None:
    b = load_model("isoclip-tiny-vit-w96", seed=0)
    c = shared_operator_check(get_projectors(share_towers(b.model)))
    assert c["w_diff"] == 0.0 and c["asym"] < 1e-12
    assert c["psi_i_diff"] < 1e-12 and c["psi_t_diff"] < 1e-12
    assert c["min_eig"] > -1e-12 and c["sv_vs_w2"] < 1e-8 and c["uv_overlap"] > 1 - 1e-8
    other = shared_operator_check(get_projectors(load_model("isoclip-tiny-vit-w96").model))
    assert other["asym"] > 0.1 and other["uv_overlap"] < 0.9  # two towers: none of it holds


def test_shared_operator_check_needs_square_psi() -> None:
    with pytest.raises(ValueError, match="input widths"):
        shared_operator_check(get_projectors(load_model("isoclip-tiny-vit").model))


def test_isotropy_band_never_keeps_the_null_space_of_psi() -> None:
    from isoclip.method.bands import Band
    from isoclip.method.operator import svd
    from isoclip.selection.rules import select_band

    b = load_model("isoclip-tiny-vit-w96", seed=0)
    P = get_projectors(share_towers(b.model))  # Psi 96 x 96 of rank d = 64
    band = select_band(P, "isotropy")
    assert band.k_bottom >= 96 - 64 and band.kept(96) >= 2
    head = select_band(P.__class__(P.W_i[:, :64], P.W_t[:, :64]), "isotropy")  # full rank
    assert isinstance(head, Band)
    S = svd(P).S
    assert float(S[64:].max()) < 1e-10 * float(S[0])


def test_shift_grid_has_exact_landmarks() -> None:
    from isoclip.studies.gap import shift_grid

    grid = shift_grid(-1.0, 1.0, 0.05)
    assert len(grid) == 41 and grid[0] == -1.0 and grid[-1] == 1.0
    assert 0.0 in grid and 0.5 in grid
    assert grid == [round(-1.0 + 0.05 * i, 6) for i in range(41)]
    with pytest.raises(ValueError, match="lam_step"):
        shift_grid(0.0, 1.0, 0.0)
