"""Drop-in IsoCLIP (``isoclip.apply``, the projectors file) and the ``isoclip`` command.

References are independent of the code under test: pre-projection features come from a copy
of the model with its final projection removed (open_clip skips ``proj`` / ``text_projection``
when they are None), the IsoCLIP projectors from numpy's SVD of ``W_iᵀW_t`` built from the raw
parameters, the exported file is read with ``safetensors`` directly, and retrieval mAP is
recomputed with scikit-learn.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file
from sklearn.metrics import average_precision_score

import isoclip
from isoclip import cli
from isoclip.data.fakes import make_fake_dataset
from isoclip.models.loading import load_model

ROOT = Path(__file__).resolve().parent.parent
TINY = "isoclip-tiny-vit"


@pytest.fixture(scope="module")
def vit_b32(one_thread: None) -> torch.nn.Module:
    torch.manual_seed(0)
    return open_clip.create_model("ViT-B-32", pretrained=None).eval()


@pytest.fixture(scope="module")
def tiny_bundle() -> Any:
    return load_model(TINY)  # random init, seed 0 (what the command loads too)


def _inputs(model: torch.nn.Module, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    size = model.visual.image_size
    side = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(n, 3, side, side, generator=g)
    tokens = open_clip.get_tokenizer("ViT-B-32")(["a photo of a dog", "a red square",
                                                  "two birds on a wire"][:n])
    tokens = tokens[:, : model.context_length]
    return images, tokens


def _reference_preproj(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(f [N, d_i], g [N, d_t], W_i [d, d_i], W_t [d, d_t]) via open_clip itself."""
    bare = copy.deepcopy(model)
    W_i = bare.visual.proj.detach().double().numpy().T
    W_t = bare.text_projection.detach().double().numpy().T
    bare.visual.proj = None
    bare.text_projection = None
    with torch.no_grad():
        f = bare.encode_image(images).double().numpy()
        g = bare.encode_text(tokens).double().numpy()
    return f, g, W_i, W_t


def _reference_iso(W_i: np.ndarray, W_t: np.ndarray, k_top: int, k_bottom: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    U, S, Vt = np.linalg.svd(W_i.T @ W_t, full_matrices=False)
    r = S.shape[0]
    U_S, V_S = U[:, k_top:r - k_bottom], Vt.T[:, k_top:r - k_bottom]
    return W_i @ U_S @ U_S.T, W_t @ V_S @ V_S.T


# ---------------------------------------------------------------------------------------------
# drop-in

def test_band_zero_is_the_model_itself(vit_b32: torch.nn.Module) -> None:
    images, tokens = _inputs(vit_b32, n=2)
    iso = isoclip.apply(vit_b32, band=(0, 0))
    with torch.no_grad():
        mi, mt, mscale = vit_b32(images, tokens)[:3]  # open_clip: unit-norm features
        raw_i, raw_t = vit_b32.encode_image(images), vit_b32.encode_text(tokens)
        torch.testing.assert_close(iso.encode_image(images), raw_i, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(iso.encode_text(tokens), raw_t, rtol=1e-4, atol=1e-5)
        fi, ft, scale = iso(images, tokens)
    torch.testing.assert_close(fi, mi, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ft, mt, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scale, mscale)


def test_band_matches_an_independent_svd(vit_b32: torch.nn.Module) -> None:
    images, tokens = _inputs(vit_b32)
    f, g, W_i, W_t = _reference_preproj(vit_b32, images, tokens)
    Wi_hat, Wt_hat = _reference_iso(W_i, W_t, 150, 50)
    iso = isoclip.apply(vit_b32, band=isoclip.Band(150, 50))
    with torch.no_grad():
        got_i = iso.encode_image(images).double().numpy()
        got_t = iso.encode_text(tokens).double().numpy()
    np.testing.assert_allclose(got_i, f @ Wi_hat.T, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(got_t, g @ Wt_hat.T, rtol=1e-3, atol=1e-4)
    # and the band really removes something
    assert np.abs(got_i - f @ W_i.T).max() > 1e-2


def test_export_file_reproduces_the_features(vit_b32: torch.nn.Module, tmp_path: Path) -> None:
    images, tokens = _inputs(vit_b32)
    iso = isoclip.apply(vit_b32, band=(20, 100), model_name="ViT-B-32", pretrained="none")
    path = isoclip.export_projectors(iso, None, tmp_path / "p.safetensors")
    raw = load_file(str(path))  # another code base: safetensors + numpy, no isoclip
    assert set(raw) == {"W_i", "W_t"}  # ViT-B-32 heads have no bias
    f, g, _, _ = _reference_preproj(vit_b32, images, tokens)
    with torch.no_grad():
        np.testing.assert_allclose(f @ raw["W_i"].T.astype(np.float64),
                                   iso.encode_image(images).double().numpy(), rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(g @ raw["W_t"].T.astype(np.float64),
                                   iso.encode_text(tokens).double().numpy(), rtol=1e-4,
                                   atol=1e-5)
    loaded = isoclip.load_projectors(path)
    assert loaded.band == isoclip.Band(20, 100)
    assert loaded.metadata["model"] == "ViT-B-32" and loaded.metadata["rank"] == "512"
    assert loaded.metadata["isoclip_version"]
    again = isoclip.apply(vit_b32, band=loaded)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(images), iso.encode_image(images))


def test_readme_snippet_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                             vit_b32: torch.nn.Module) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Drop-in IsoCLIP", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert snippet is not None, "README: no python block in the Drop-in IsoCLIP section"
    code = snippet.group(1)
    assert len(code.strip().splitlines()) <= 5
    # offline: the same architecture, random weights instead of the "openai" download
    real = open_clip.create_model_and_transforms

    def offline(name: str, pretrained: str | None = None, **kw: Any) -> Any:
        assert (name, pretrained) == ("ViT-B-32", "openai")
        return real(name, pretrained=None, **kw)

    monkeypatch.setattr(open_clip, "create_model_and_transforms", offline)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {"image": Image.new("RGB", (64, 48), (200, 30, 30))}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README snippet
    assert scope["feats"].shape == (1, 512)
    torch.testing.assert_close(scope["feats"].norm(dim=-1), torch.ones(1))
    written = [p for p in tmp_path.iterdir() if p.suffix == ".safetensors"]
    assert len(written) == 1 and isoclip.load_projectors(written[0]).band == isoclip.Band(150, 50)


def test_apply_rejects_bad_arguments(tiny_bundle: Any) -> None:
    model = tiny_bundle.model
    with pytest.raises(ValueError, match="band"):
        isoclip.apply(model, band="best")
    with pytest.raises(ValueError, match="model_name"):
        isoclip.apply(model, band="paper")
    with pytest.raises(ValueError, match="rank"):
        isoclip.apply(model, band=(40, 40))
    with pytest.raises(TypeError, match="model"):
        isoclip.apply("ViT-B-32")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task"):
        isoclip.apply(model, band="paper", model_name="ViT-B-32", pretrained="openai",
                      task="audio")
    other = isoclip.apply(load_model("isoclip-tiny-vit-w96"), band=(0, 0)).export()
    with pytest.raises(ValueError, match="another model"):
        isoclip.apply(model, band=other)


def test_paper_band_from_a_bundle(tiny_bundle: Any) -> None:
    with pytest.raises(ValueError, match="pretrained"):  # a random-init bundle has no tag
        isoclip.apply(tiny_bundle, band="paper")
    with pytest.raises(KeyError, match="no official IsoCLIP band"):
        isoclip.apply(tiny_bundle, band="paper", pretrained="openai")
    iso = isoclip.apply(load_model(TINY), band="auto")
    assert iso.model_name == TINY and iso.band.kept(iso.rank) >= 2


# ---------------------------------------------------------------------------------------------
# command line

def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_spectrum(capsys: pytest.CaptureFixture[str], tmp_path: Path, tiny_bundle: Any) -> None:
    code, out, _ = _run(["spectrum", TINY, "--json", "--plot", str(tmp_path / "s.png")], capsys)
    assert code == 0
    data = json.loads(out)
    P_i = tiny_bundle.model.visual.proj.detach().double().numpy().T
    P_t = tiny_bundle.model.text_projection.detach().double().numpy().T
    S = np.linalg.svd(P_i.T @ P_t, compute_uv=False)
    np.testing.assert_allclose(data["singular_values"], S, rtol=1e-9)
    assert data["rank"] == S.shape[0] and data["paper_band"] is None
    auto = data["auto_band"]
    assert auto["kept"] == data["rank"] - auto["k_top"] - auto["k_bottom"]
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = _run(["spectrum", TINY], capsys)
    assert code == 0 and "automatic band" in out and f"rank r = {S.shape[0]}" in out


def _sklearn_map(q: np.ndarray, g: np.ndarray, ql: np.ndarray, gl: np.ndarray,
                 same_split: bool) -> float:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    aps = []
    for i in range(len(q)):
        keep = np.ones(len(g), bool)
        if same_split:
            keep[i] = False
        rel = gl[keep] == ql[i]
        if rel.any():
            aps.append(average_precision_score(rel, (g[keep] @ q[i])))
    return 100.0 * float(np.mean(aps))


def test_evaluate_on_fake_datasets(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   isolated_cache: Any, tiny_bundle: Any) -> None:
    root = tmp_path / "data"
    make_fake_dataset("cub2011", root, n_classes=3, per_class=3, image_size=32)
    make_fake_dataset("flickr30k_text", root, n_classes=4, per_class=2, image_size=32)
    out_file = tmp_path / "run.json"
    code, out, _ = _run(["evaluate", TINY, "--dataset", "cub2011,flickr30k_text", "--data-root",
                         str(root), "--method", "clip,isoclip,oti", "--band", "0,0",
                         "--oti-steps", "2", "--oti-per-class", "1", "--out", str(out_file)],
                        capsys)
    assert code == 0, out
    assert "cub2011" in out and "flickr30k_text" in out and "clip mAP" in out
    result = json.loads(out_file.read_text())
    assert result["model"] == TINY and [r["dataset"] for r in result["results"]] == [
        "cub2011", "flickr30k_text"]
    from isoclip.data.registry import load_dataset
    from isoclip.models.features import image_features

    for r in result["results"]:
        m = r["metrics"]
        # band (0, 0): IsoCLIP is CLIP
        assert m["isoclip"]["mAP"] == pytest.approx(m["clip"]["mAP"], abs=1e-3)
        assert m["oti"]["n_queries"] >= 1 and 0.0 <= m["oti"]["mAP"] <= 100.0
    data = load_dataset("cub2011", "image", root)
    q = image_features(tiny_bundle, data.query, "projected", cache=False, progress=False)
    gal = q if data.same_split else image_features(tiny_bundle, data.gallery, "projected",
                                                   cache=False, progress=False)
    expected = _sklearn_map(q.double().numpy(), gal.double().numpy(),
                            np.asarray(data.query.labels), np.asarray(data.gallery.labels),
                            data.same_split)
    assert result["results"][0]["metrics"]["clip"]["mAP"] == pytest.approx(expected, abs=1e-6)


def test_export_command(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                        tiny_bundle: Any) -> None:
    path = tmp_path / "tiny.safetensors"
    code, out, _ = _run(["export", TINY, "--band", "2,3", "-o", str(path)], capsys)
    assert code == 0 and str(path) in out
    raw = load_file(str(path))
    W_i = tiny_bundle.model.visual.proj.detach().double().numpy().T
    W_t = tiny_bundle.model.text_projection.detach().double().numpy().T
    Wi_hat, Wt_hat = _reference_iso(W_i, W_t, 2, 3)
    np.testing.assert_allclose(raw["W_i"].astype(np.float64), Wi_hat, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(raw["W_t"].astype(np.float64), Wt_hat, rtol=1e-4, atol=1e-6)
    assert isoclip.load_projectors(path).metadata["model"] == TINY


def test_book_and_reproduce_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(["book", "--repo", str(ROOT), "--dry-run"], capsys)
    assert code == 0 and f"make -C {ROOT} book PARAMS=default" in out
    code, out, _ = _run(["reproduce", "fake-vit-b-32", "--data-root", str(tmp_path),
                         "--repo", str(ROOT), "--dry-run", "--only", "05"], capsys)
    assert code == 0 and "reproduce PARAMS=fake-vit-b-32" in out
    assert f"DATA_ROOT={tmp_path.resolve()}" in out and "REPRO_NOTEBOOKS=05" in out
    assert "DATASETS" not in out
    code, out, _ = _run(["reproduce", "fake-vit-b-32", "--data-root", str(tmp_path),
                         "--repo", str(ROOT), "--dry-run", "--datasets", "cub2011,dtd",
                         "--text-datasets", "coco_text"], capsys)
    assert code == 0 and " DATASETS=cub2011,dtd TEXT_DATASETS=coco_text" in out
    assert "REPRO_JOBS" not in out  # the Makefile's default (one chapter at a time)
    code, out, _ = _run(["reproduce", "fake-vit-b-32", "--data-root", str(tmp_path),
                         "--repo", str(ROOT), "--dry-run", "--jobs", "2"], capsys)
    assert code == 0 and out.rstrip().endswith(" REPRO_JOBS=2")


@pytest.mark.parametrize("args, code, message", [
    (["spectrum"], 2, "MODEL"),
    (["export", TINY, "--band", "best", "-o", "x.safetensors"], 2, "--band"),
    (["evaluate", TINY, "--dataset", "cub2011", "--method", "clip,knn"], 2, "unknown method"),
    (["evaluate", TINY, "--dataset", "no_such_set"], 2, "unknown dataset"),
    (["evaluate", TINY, "--dataset", "cub2011", "--data-root", "/nonexistent"], 1,
     "DatasetNotFoundError"),
    (["spectrum", TINY, "--pretrained", "no_such_tag"], 1, "error"),
    (["reproduce", "default", "--data-root", "/nonexistent", "--repo", str(ROOT)], 2,
     "--data-root"),
    (["book", "--repo", "/nonexistent", "--dry-run"], 1, "repository"),
    (["reproduce", "default", "--data-root", "/tmp", "--jobs", "0"], 2, "--jobs"),
    (["reproduce", "default", "--data-root", "/tmp", "--jobs", "two"], 2, "positive integer"),
])
def test_exit_codes(args: list[str], code: int, message: str,
                    capsys: pytest.CaptureFixture[str]) -> None:
    got, _, err = _run(args, capsys)
    assert got == code, err
    assert message in err


def test_help_as_a_real_command() -> None:
    exe = Path(sys.executable).parent / "isoclip"
    assert exe.exists(), f"{exe}: the console script is installed by `pip install -e .`"
    done = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    for command in ("spectrum", "evaluate", "export", "book", "reproduce"):
        assert command in done.stdout
    assert "Exit codes" in done.stdout
