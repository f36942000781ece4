"""Baselines (isoclip.baselines.whitening) and the latency harness (isoclip.studies.latency, benchmarks/latency.py).

Latency is exercised for structure and arithmetic only (tiny model, a handful of steps);
the ratios themselves are measured by the benchmark. Single-threaded; sockets blocked by
``conftest.py``.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pandas as pd
import pytest
import torch

from isoclip.baselines.whitening import (
    ZCA_EPS,
    ablation_transforms,
    fit_zca,
    mean_center,
    pre_projection,
    random_band_projectors,
    random_orthonormal_basis,
    zca_whiten,
)
from isoclip.method.bands import Band
from isoclip.method.projectors import encode_image_preproj, encode_text_preproj, get_projectors
from isoclip.models.loading import ModelBundle
from isoclip.studies.latency import (
    PAPER_BANDS,
    PAPER_RANK,
    default_band,
    latency_ratios,
    latency_rows,
    measure_latency,
    summarize_latency,
)

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"


pytestmark = pytest.mark.usefixtures("one_thread")


def anisotropic(n: int, k: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, 3, k, dtype=torch.float64)
    mixing = torch.randn(k, k, generator=gen, dtype=torch.float64) * scales
    return torch.randn(n, k, generator=gen, dtype=torch.float64) @ mixing + 5.0


# ---------------------------------------------------------------------------------------------
# centering and whitening

def test_zca_gallery_covariance_is_identity() -> None:
    gallery, query = anisotropic(4000, 12, 0), anisotropic(10, 12, 1)
    eye = torch.eye(12, dtype=torch.float64)

    def covariance(x: torch.Tensor) -> torch.Tensor:
        xc = x - x.mean(0)
        return xc.T @ xc / len(x)

    g = zca_whiten(query, gallery, eps=1e-12)[1]
    assert torch.allclose(covariance(g), eye, atol=1e-6)
    assert torch.allclose(g.mean(0), torch.zeros(12, dtype=torch.float64), atol=1e-8)
    # default relative ridge: eigenvalues lambda / (lambda + eps * mean(lambda)), as documented
    q, g = zca_whiten(query, gallery)
    lam, U = torch.linalg.eigh(covariance(gallery))
    shrink = lam / (lam + ZCA_EPS * lam.mean())
    assert torch.allclose(covariance(g), (U * shrink) @ U.T, atol=1e-9)
    zca = fit_zca(gallery)
    assert torch.allclose(zca.W, zca.W.T)  # ZCA (symmetric), not PCA whitening
    assert torch.allclose(q, (query - gallery.mean(0)) @ zca.W)
    # the relative ridge makes whitening scale-free
    assert torch.allclose(zca_whiten(query * 1e3, gallery * 1e3)[0], q, atol=1e-8)


def test_zca_rank_deficient_and_float32() -> None:
    gallery = anisotropic(8, 20, 2).float()  # N < k: covariance of rank 7
    q, g = zca_whiten(gallery[:3], gallery)
    assert q.dtype == torch.float32 and torch.isfinite(g).all()


def test_mean_center() -> None:
    gallery, query = anisotropic(50, 6, 3), anisotropic(4, 6, 4)
    q, g = mean_center(query, gallery)
    assert torch.allclose(g.mean(0), torch.zeros(6, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(q, query - gallery.mean(0))


# ---------------------------------------------------------------------------------------------
# random band

@pytest.mark.parametrize("dim, width", [(96, 39), (64, 1), (8, 8)])
def test_random_orthonormal_basis(dim: int, width: int) -> None:
    Q = random_orthonormal_basis(dim, width, seed=3)
    assert Q.shape == (dim, width)
    assert torch.allclose(Q.T @ Q, torch.eye(width, dtype=torch.float64), atol=1e-12)
    assert torch.equal(Q, random_orthonormal_basis(dim, width, seed=3))
    if width < dim:
        assert not torch.allclose(Q, random_orthonormal_basis(dim, width, seed=4))


def test_random_band_projectors_width(tiny: ModelBundle) -> None:
    P = get_projectors(tiny.model)
    band = Band(19, 6)
    width = band.kept(min(P.d_i, P.d_t))
    R = random_band_projectors(P, band, seed=0)
    assert R.W_i.shape == P.W_i.shape and R.W_t.shape == P.W_t.shape
    assert torch.linalg.matrix_rank(R.W_i) == width
    assert torch.linalg.matrix_rank(R.W_t) == width
    Q = random_orthonormal_basis(P.d_i, width, seed=0)
    assert torch.allclose(R.W_i.double() @ Q, P.W_i.double() @ Q, atol=1e-5)
    assert torch.equal(R.W_i, random_band_projectors(P, band, seed=0).W_i)


def test_ablation_transforms(tiny: ModelBundle) -> None:
    model = tiny.model
    P = get_projectors(model)
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(6, 3, tiny.image_size, tiny.image_size, generator=gen)
    tokens = tiny.tokenizer([f"a {c} shape" for c in ("red", "blue", "green", "pink", "gray")])
    with torch.no_grad():
        f, g = encode_image_preproj(model, images), encode_text_preproj(model, tokens)
        clip_images = model.encode_image(images)
    for modality, x, band in (("image", f, Band(19, 6)), ("text", g, Band(2, 12))):
        transforms = ablation_transforms(P, band, modality)
        assert list(transforms) == ["clip", "pre_projection", "mean_centred", "zca",
                                    "drop_top_only", "drop_bottom_only", "random_band", "isoclip"]
        for name, transform in transforms.items():
            q, gal = transform(x[:2], x)
            assert q.shape[0] == 2 and gal.shape[0] == len(x) and q.shape[1] == gal.shape[1], name
    image_t = ablation_transforms(P, Band(19, 6), "image")
    assert torch.allclose(image_t["clip"](f, f)[0], clip_images, atol=1e-5)
    assert torch.equal(pre_projection(f[:2], f)[0], f[:2])
    full = ablation_transforms(P, Band(0, 0), "image")["isoclip"](f, f)[0]
    assert torch.allclose(full, clip_images, atol=1e-4)


@pytest.mark.parametrize("call, argument", [
    (lambda: fit_zca(torch.randn(5, 3), eps=0.0), "eps"),
    (lambda: fit_zca(torch.randn(5)), "gallery"),
    (lambda: fit_zca(torch.ones(5, 3)), "gallery"),
    (lambda: zca_whiten(torch.randn(2, 4), torch.randn(5, 3)), "query"),
    (lambda: mean_center(torch.randn(2, 3), torch.zeros(0, 3)), "gallery"),
    (lambda: random_orthonormal_basis(4, 5, seed=0), "width"),
    (lambda: random_orthonormal_basis(0, 1, seed=0), "dim"),
])
def test_baselines_bad_input(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()


def test_ablation_bad_input(tiny: ModelBundle) -> None:
    P = get_projectors(tiny.model)
    with pytest.raises(ValueError, match="modality"):
        ablation_transforms(P, Band(1, 1), "audio")
    with pytest.raises(ValueError, match="k_top"):
        random_band_projectors(P, Band(40, 30), seed=0)
    transform = ablation_transforms(P, Band(1, 1), "image")["clip"]
    with pytest.raises(ValueError, match="gallery"):
        transform(torch.randn(2, P.d_i), torch.randn(3, P.d_t + 1))


# ---------------------------------------------------------------------------------------------
# latency

def test_default_band_scales_paper_band() -> None:
    assert default_band(PAPER_RANK, "image") == PAPER_BANDS["image"]
    assert default_band(64, "image") == Band(19, 6)


def test_measure_summarize_ratios(tiny: ModelBundle) -> None:
    threads = torch.get_num_threads()
    df = measure_latency(tiny, gallery_size=10, repeats=3, inversion_repeats=1, warmup=0,
                         oti_steps=2, ovi_steps=2, num_threads=1, progress=False)
    assert torch.get_num_threads() == threads
    assert list(df.columns) == ["model", "pretrained", "device", "threads", "gallery_size",
                                "method", "query", "steps", "repeat", "seconds"]
    counts = df.groupby(["method", "query", "steps"]).size().to_dict()
    assert counts == {("CLIP", "image", 0): 3, ("IsoCLIP", "image", 0): 3,
                      ("CLIP", "text", 0): 3, ("IsoCLIP", "text", 0): 3,
                      ("OTI", "image", 2): 1, ("OTI", "image", 0): 1,
                      ("OVI", "text", 2): 1, ("OVI", "text", 0): 1}
    assert (df["seconds"] > 0).all()

    summary = summarize_latency(df)
    assert list(zip(summary["query"], summary["method"])) == [
        ("image", "CLIP"), ("image", "IsoCLIP"), ("image", "OTI"),
        ("text", "CLIP"), ("text", "IsoCLIP"), ("text", "OVI")]
    oti_row = summary.set_index("method").loc["OTI"]
    assert oti_row["extrapolated"] and oti_row["steps_reported"] == 150
    t = df[df["method"] == "OTI"].set_index("steps")["seconds"]
    assert oti_row["per_query_ms"] == pytest.approx(1e3 * (t[0] + (t[2] - t[0]) * 150 / 2))
    clip_row = summary[(summary["method"] == "CLIP") & (summary["query"] == "image")].iloc[0]
    assert not clip_row["extrapolated"] and clip_row["per_query_ms"] == clip_row["median_ms"]

    ratios = latency_ratios(df)
    assert list(ratios["ratio"]) == ["IsoCLIP/CLIP", "IsoCLIP/CLIP", "OTI/IsoCLIP", "OVI/IsoCLIP"]
    assert list(ratios["target"]) == ["<= 1.05", "<= 1.05", ">= 100", ""]
    assert (ratios["value"] > 0).all()
    assert ratios["paired"].iloc[:2].gt(0).all() and ratios["paired"].iloc[2:].isna().all()
    clip_img = df[(df["method"] == "CLIP") & (df["query"] == "image")].set_index("repeat")
    iso_img = df[(df["method"] == "IsoCLIP") & (df["query"] == "image")].set_index("repeat")
    assert ratios["paired"].iloc[0] == pytest.approx(
        (iso_img["seconds"] / clip_img["seconds"]).median())

    rows = latency_rows(summary)  # a result file's rows: one per (query, method)
    assert [(r["dataset"], r["method"]) for r in rows] == [
        (f"{q} query", m) for q, m in zip(summary["query"], summary["method"])]
    assert [r["value"] for r in rows] == list(summary["per_query_ms"])
    assert {r["task"] for r in rows} == {"latency"} and rows[2]["queries"] == 1

    as_run = summarize_latency(df[df["steps"] != 0], reported_steps={"OTI": 2, "OVI": 2})
    assert not as_run["extrapolated"].any()
    with pytest.raises(ValueError, match="0-step"):
        summarize_latency(df[~((df["method"] == "OVI") & (df["steps"] == 0))])


def test_measure_latency_bad_input(tiny: ModelBundle) -> None:
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(tiny, repeats=0, progress=False)
    with pytest.raises(ValueError, match="num_threads"):
        measure_latency(tiny, num_threads=0, progress=False)


def test_benchmark_script_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "timings.csv"
    monkeypatch.setattr("sys.argv", ["latency.py", "--repeats", "2", "--inversion-repeats", "1",
                                     "--warmup", "0", "--oti-steps", "2", "--ovi-steps", "2",
                                     "--gallery-size", "10", "--csv", str(csv)])
    runpy.run_path(str(BENCHMARK), run_name="__main__")
    out = capsys.readouterr().out
    assert "EXTRAPOLATED" in out and "OTI/IsoCLIP" in out and "IsoCLIP/CLIP" in out
    assert len(pd.read_csv(csv)) == 4 * 2 + 4 * 1
