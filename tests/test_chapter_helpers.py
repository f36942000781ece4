"""Library helpers of chapters 3, 9 and 10: isoclip.studies.inversion and the ablation / latency
additions of isoclip.studies.world.

Random-init tiny model, a tiny synthetic world, a few inversion steps; single-threaded.
Sockets are blocked and the cache is isolated (``conftest.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from isoclip.baselines.inversion import oti, ovi
from isoclip.data.world.config import WorldConfig
from isoclip.data.world.synthetic import make_world
from isoclip.evaluate.stats import balanced_subset, paired_bootstrap
from isoclip.method.bands import Band
from isoclip.method.projectors import get_projectors
from isoclip.models.loading import ModelBundle
from isoclip.studies.ablations import (
    ABLATION_ROWS,
    ablation_metrics,
    ablation_study,
    ablation_table,
)
from isoclip.studies.inversion import (
    inversion_key_material,
    inversion_study,
    invert,
    snapshot_curve,
)
from isoclip.studies.latency import latency_comparison

TINY_WORLD = WorldConfig(shapes=("circle", "square"), colours=("red", "blue"),
                         n_train_per_class=2, n_query_per_class=3, n_gallery_per_class=4,
                         n_text_query_per_class=2, n_text_gallery_per_class=3)


pytestmark = pytest.mark.usefixtures("one_thread")



def text_targets(bundle: ModelBundle, n: int) -> torch.Tensor:
    with torch.no_grad():
        tokens = bundle.tokenizer([f"a photo of {i} dogs" for i in range(n)])
        return bundle.model.encode_text(tokens)


# ---------------------------------------------------------------------------------------------
# balanced_subset

def test_balanced_subset_counts_order_and_determinism() -> None:
    labels = np.repeat(np.arange(4), [5, 5, 2, 5])
    idx = balanced_subset(labels, 3, seed=0)
    assert idx.dtype == torch.long and torch.equal(idx, idx.sort().values)
    counts = np.bincount(labels[idx.numpy()], minlength=4)
    assert counts.tolist() == [3, 3, 2, 3]  # a class with fewer items gives all of them
    assert torch.equal(idx, balanced_subset(labels, 3, seed=0))
    assert not torch.equal(idx, balanced_subset(labels, 3, seed=1))
    assert torch.equal(balanced_subset(labels, None, seed=0), torch.arange(len(labels)))
    assert torch.equal(balanced_subset(torch.as_tensor(labels), 3, seed=0), idx)
    # read-only numpy input (the synthetic world's arrays) is accepted without a warning
    ro = labels.copy()
    ro.setflags(write=False)
    assert torch.equal(balanced_subset(ro, 3, seed=0), idx)


@pytest.mark.parametrize("per_class", [0, -1, 1.5, True])
def test_balanced_subset_bad_input(per_class) -> None:
    with pytest.raises(ValueError, match="per_class"):
        balanced_subset([0, 1, 1], per_class, seed=0)
    with pytest.raises(ValueError, match="labels"):
        balanced_subset(np.array([0.5, 1.0]), 1, seed=0)


# ---------------------------------------------------------------------------------------------
# invert

def test_invert_oti_matches_chunked_official_loop_and_caches(image_targets, tiny,
                                                            isolated_cache) -> None:
    targets = image_targets(tiny, 5, 1)
    res = invert(tiny, targets, "OTI", steps=3, snapshot_steps=(0, 3), batch_size=2)
    assert not res.from_cache
    assert res.features.shape == (5, 64) and res.losses.shape == (3,)
    assert set(res.snapshots) == {0, 3}
    assert torch.equal(res.snapshots[3], res.features)
    # chunk k is an independent oti() call with seed 42 + k
    parts = [oti(tiny.model, tiny.tokenizer, targets[a:a + 2], steps=3, seed=42 + k,
                 progress=False) for k, a in enumerate(range(0, 5, 2))]
    assert torch.allclose(res.features, torch.cat([p.features for p in parts]), atol=1e-6)
    weighted = sum(p.losses.double() * len(p.final_loss) for p in parts) / 5
    assert torch.allclose(res.losses, weighted)
    cos = torch.nn.functional.cosine_similarity(res.features, targets, dim=-1)
    assert torch.allclose(res.final_cos, cos, atol=1e-6)
    assert (res.losses[-1] < res.losses[0]).item()

    again = invert(tiny, targets, "OTI", steps=3, snapshot_steps=(3, 0), batch_size=2)
    assert again.from_cache and torch.equal(again.features, res.features)
    assert again.build_seconds == res.build_seconds
    other = invert(tiny, targets, "OTI", steps=3, snapshot_steps=(0, 3), batch_size=5)
    assert not other.from_cache  # the batch size is part of the key
    assert len(list((isolated_cache / "inversions").glob("*.pt"))) == 2
    assert torch.get_num_threads() == 1


def test_invert_ovi_and_key_material(image_targets, tiny, isolated_cache) -> None:
    targets = text_targets(tiny, 3)
    res = invert(tiny, targets, "OVI", steps=2, snapshot_steps=(1,), cache=False)
    ref = ovi(tiny.model, targets, steps=2, seed=42, progress=False)
    assert torch.allclose(res.features, ref.features, atol=1e-6)
    assert res.snapshots[1].shape == (3, 64) and res.hparams["steps"] == 2
    assert not list(isolated_cache.glob("inversions/*"))  # cache=False writes nothing

    hp = res.hparams
    key = inversion_key_material(tiny, targets, hp)
    assert key["model"] == tiny.fingerprint and len(key["inversion_code"]) == 64
    assert inversion_key_material(tiny, targets + 1e-3, hp)["targets"] != key["targets"]
    assert "template" not in hp  # OVI has no template
    assert invert(tiny, image_targets(tiny, 1, 1), "OTI", steps=0, cache=False).hparams["template"]


def test_invert_defaults_and_bad_input(image_targets, tiny) -> None:
    targets = image_targets(tiny, 1, 1)
    with pytest.raises(ValueError, match="method"):
        invert(tiny, targets, "XYZ", steps=1, cache=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="snapshot_steps"):
        invert(tiny, targets, "OTI", steps=2, snapshot_steps=(3,), cache=False)
    with pytest.raises(ValueError, match="batch_size"):
        invert(tiny, targets, "OTI", steps=2, batch_size=0, cache=False)
    with pytest.raises(ValueError, match="targets"):
        invert(tiny, targets[0], "OTI", steps=2, cache=False)
    tiny.model.train()
    try:
        invert(tiny, targets, "OTI", steps=1, cache=False)  # runs in eval mode...
        assert tiny.model.training  # ...and restores the mode
    finally:
        tiny.model.eval()


def test_snapshot_curve(image_targets, tiny) -> None:
    targets = image_targets(tiny, 4, 1)
    res = invert(tiny, targets, "OTI", steps=2, snapshot_steps=(2, 0, 1), cache=False)
    gallery = image_targets(tiny, 6, 1)
    curve = snapshot_curve(res, targets, gallery, [0, 0, 1, 1], [0, 1, 0, 1, 0, 1])
    assert list(curve.columns) == ["method", "step", "mAP", "R@1", "cos"]
    assert curve["step"].tolist() == [0, 1, 2] and (curve["method"] == "OTI").all()
    assert curve["cos"].iloc[-1] == pytest.approx(float(res.final_cos.mean()), abs=1e-6)
    assert curve["mAP"].between(0, 100).all()


def test_inversion_study_on_a_tiny_world(tiny, isolated_cache) -> None:
    world = make_world(TINY_WORLD, cache=False)
    study = inversion_study(tiny, world, oti_per_class=2, ovi_per_class=1, oti_steps=2,
                            ovi_steps=2, oti_snapshots=(0, 1, 5), ovi_snapshots=(0,),
                            image_band=Band(1, 1), text_band=Band(0, 2))
    assert len(study.image_subset) == 8 and len(study.text_subset) == 4
    r = study.retrieval
    assert list(zip(r["task"], r["method"])) == [
        ("image→image", "CLIP"), ("image→image", "OTI"), ("image→image", "IsoCLIP"),
        ("text→text", "CLIP"), ("text→text", "OVI"), ("text→text", "IsoCLIP")]
    assert r["queries"].tolist() == [8, 8, 8, 4, 4, 4]
    assert r["gallery"].tolist() == [16, 16, 16, 12, 12, 12]
    assert study.full_queries["queries"].tolist() == [12, 12, 8, 8]
    # snapshot steps beyond the number of steps are dropped, the last step is added
    assert study.curves.groupby("method")["step"].apply(list).to_dict() == {
        "OTI": [0, 1, 2], "OVI": [0, 2]}
    oti_curve = study.curves[study.curves["method"] == "OTI"]
    assert oti_curve["mAP"].iloc[-1] == pytest.approx(float(r.loc[1, "mAP"]))
    assert study.zero_shot["n_images"] == 8
    assert 0 <= study.zero_shot["oti_top1"] <= 100
    assert study.image_band == Band(1, 1)
    d = study.deltas.set_index("key")
    assert d.index.tolist() == ["img_OTI", "img_IsoCLIP", "txt_OVI", "txt_IsoCLIP",
                                "zero_shot_OTI"]
    r2 = r.set_index(["task", "method"])["mAP"]
    assert d.loc["img_OTI", "delta"] == pytest.approx(
        r2[("image→image", "OTI")] - r2[("image→image", "CLIP")])
    assert d.loc["txt_IsoCLIP", "delta"] == pytest.approx(
        r2[("text→text", "IsoCLIP")] - r2[("text→text", "CLIP")])
    assert d.loc["zero_shot_OTI", "delta"] == pytest.approx(
        study.zero_shot["oti_top1"] - study.zero_shot["clip_top1"])
    assert (d["lo"] <= d["delta"] + 1e-9).all() and (d["delta"] <= d["hi"] + 1e-9).all()
    # a second run loads both inversions from the cache
    again = inversion_study(tiny, world, oti_per_class=2, ovi_per_class=1, oti_steps=2,
                            ovi_steps=2, oti_snapshots=(0, 1, 5), ovi_snapshots=(0,),
                            image_band=Band(1, 1), text_band=Band(0, 2))
    assert again.oti.from_cache and again.ovi.from_cache
    pd.testing.assert_frame_equal(again.retrieval, study.retrieval)


def test_paired_bootstrap() -> None:
    a = torch.zeros(200, dtype=torch.float64)
    out = paired_bootstrap(a, a + 2.0)
    assert out == {"delta": 2.0, "lo": 2.0, "hi": 2.0, "n": 200}
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    noisy = paired_bootstrap(x, x + rng.normal(size=400), seed=3)
    assert noisy["lo"] < noisy["delta"] < noisy["hi"] and noisy["lo"] < 0 < noisy["hi"]
    assert paired_bootstrap(x, x + rng.normal(size=400), seed=3)["n"] == 400
    with_nan = paired_bootstrap([1.0, float("nan"), 3.0], [2.0, 5.0, 4.0])
    assert with_nan["n"] == 2 and with_nan["delta"] == 1.0
    assert paired_bootstrap(x, x + 1, seed=1) == paired_bootstrap(x, x + 1, seed=1)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap([float("nan")], [1.0])
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap([1.0], [1.0], level=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([1.0], [1.0], n_boot=0)


# ---------------------------------------------------------------------------------------------
# ablations (experiments)

def _features(n: int, dim: int, seed: int) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_ablation_metrics_rows_and_sanity(tiny) -> None:
    P = get_projectors(tiny.model)
    q, g = _features(12, P.d_i, 0), _features(30, P.d_i, 1)
    ql, gl = np.arange(12) % 3, np.arange(30) % 3
    band = Band(5, 3)
    df = ablation_metrics(P, q, g, ql, gl, band, "image", seeds=(0, 1, 2))
    assert df["key"].tolist() == [k for k, _ in ABLATION_ROWS]
    row = df.set_index("key")
    assert row.loc["full_band", "mAP"] == pytest.approx(row.loc["clip", "mAP"], abs=1e-3)
    assert row.loc["clip", "delta"] == 0 and row.loc["clip", "lo"] == 0
    for key in row.index:
        assert row.loc[key, "delta"] == pytest.approx(row.loc[key, "mAP"] - row.loc["clip", "mAP"])
        assert row.loc[key, "lo"] <= row.loc[key, "delta"] + 1e-9 <= row.loc[key, "hi"] + 2e-9
    assert row.loc["random_band", "runs"] == 3 and row.loc["random_band", "sd"] >= 0
    assert row.drop(index="random_band")["sd"].isna().all()
    r = min(P.d_i, P.d_t)
    assert row.loc["isoclip", "kept"] == r - 8 and row.loc["random_band", "kept"] == r - 8
    assert row.loc["drop_top_only", "band"] == "(5, 0)"
    assert row.loc["drop_bottom_only", "band"] == "(0, 3)"
    one = ablation_metrics(P, q, g, ql, gl, band, "image", seeds=(4,))
    assert np.isnan(one.set_index("key").loc["random_band", "sd"])
    text = ablation_metrics(P, _features(6, P.d_t, 2), _features(9, P.d_t, 3),
                                        np.arange(6) % 3, np.arange(9) % 3, Band(1, 1), "text")
    assert (text["modality"] == "text").all() and text["mAP"].between(0, 100).all()
    with pytest.raises(ValueError, match="seeds"):
        ablation_metrics(P, q, g, ql, gl, band, "image", seeds=())


def test_ablation_study_and_table(tiny, isolated_cache) -> None:
    world = make_world(TINY_WORLD, cache=False)
    tidy = ablation_study(tiny, world, image_band=Band(2, 2),
                                      text_band=Band(1, 1), seeds=(0, 1))
    assert tidy["modality"].tolist() == ["image"] * 9 + ["text"] * 9
    table = ablation_table(tidy)
    assert list(table.columns) == ["image→image band", "image→image mAP",
                                   "image→image Δ vs CLIP", "text→text band", "text→text mAP",
                                   "text→text Δ vs CLIP"]
    assert table.loc["CLIP", "image→image Δ vs CLIP"] == ""
    assert table.loc["full band (0, 0)", "text→text Δ vs CLIP"].startswith("+0.0 [")
    assert table.index.tolist() == [label for _, label in ABLATION_ROWS]
    assert " ± " in table.loc["random band, same width", "image→image mAP"]
    assert " ± " not in table.loc["CLIP", "image→image mAP"]


# ---------------------------------------------------------------------------------------------
# latency comparison (experiments)

def test_latency_comparison() -> None:
    summary = pd.DataFrame({
        "method": ["CLIP", "IsoCLIP", "OTI", "CLIP", "IsoCLIP", "OVI"],
        "query": ["image"] * 3 + ["text"] * 3,
        "repeats": [5, 5, 2, 5, 5, 2], "steps_run": [0, 0, 150, 0, 0, 10],
        "steps_reported": [0, 0, 150, 0, 0, 1000], "median_ms": [2.0, 2.2, 300.0, 1.0, 1.0, 50.0],
        "iqr_ms": [0.1] * 6, "per_query_ms": [2.0, 2.2, 300.0, 1.0, 1.0, 4000.0],
        "extrapolated": [False, False, False, False, False, True]})
    out = latency_comparison(summary)
    assert list(out.columns) == ["query", "method", "steps", "ours_ms", "iqr_ms", "extrapolated",
                                 "ours_vs_clip", "paper_ms", "paper_vs_clip"]
    assert out["ours_vs_clip"].tolist() == pytest.approx([1.0, 1.1, 150.0, 1.0, 1.0, 4000.0])
    assert out["paper_ms"].iloc[:3].tolist() == [7.0, 7.0, 1879.0]
    assert out["paper_ms"].iloc[3:].isna().all() and out["paper_vs_clip"].iloc[3:].isna().all()
    assert out["paper_vs_clip"].iloc[2] == pytest.approx(1879.0 / 7.0)
    assert out["extrapolated"].tolist()[-1] is True
    custom = latency_comparison(summary, paper={("OVI", "text"): 10.0,
                                                            ("CLIP", "text"): 5.0})
    assert custom["paper_vs_clip"].iloc[5] == pytest.approx(2.0)
