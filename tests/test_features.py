"""Feature extraction and its on-disk cache (tiny random-init model, 32 px images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isoclip.common.cache import stable_hash
from isoclip.data import ImageDataset, TextDataset
from isoclip.models import features
from isoclip.models.features import feature_key_material, image_features, text_features
from isoclip.models.loading import load_model


@pytest.fixture(scope="module")
def bundle():
    return load_model("isoclip-tiny-vit")


def _images(n: int = 10, seed: int = 0, name: str = "toy/images") -> ImageDataset:
    rng = np.random.default_rng(seed)
    return ImageDataset(images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                        labels=np.arange(n) % 3, class_names=["a", "b", "c"], name=name,
                        captions=[f"caption {i}" for i in range(n)])


def _texts() -> TextDataset:
    return TextDataset(texts=[f"a photo of thing {i}" for i in range(7)],
                       labels=np.arange(7) % 2, name="toy/texts")


class CallCounter:
    """Wraps a callable and counts calls (to see whether the model ran)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *a, **k):
        self.calls += 1
        return self.fn(*a, **k)


def _count(monkeypatch, obj, attr) -> CallCounter:
    counter = CallCounter(getattr(obj, attr))
    monkeypatch.setattr(obj, attr, counter)
    return counter


def test_projected_features_match_the_model(bundle, isolated_cache):
    ds = _images(5)
    feats = image_features(bundle, ds, batch_size=2, progress=False)
    x = torch.stack([bundle.preprocess(ds.image(i)) for i in range(len(ds))])
    with torch.no_grad():
        ref = bundle.model.encode_image(x)
    assert feats.dtype == torch.float32 and feats.shape == ref.shape
    torch.testing.assert_close(feats, ref, atol=1e-5, rtol=1e-5)  # unnormalised
    # ordinary tensors (not inference tensors): usable as inputs of a trained probe
    w = torch.zeros(feats.shape[1], 2, requires_grad=True)
    (feats @ w).sum().backward()
    txt = text_features(bundle, _texts(), batch_size=3, progress=False)
    with torch.no_grad():
        ref_t = bundle.model.encode_text(bundle.tokenizer(_texts().texts))
    torch.testing.assert_close(txt, ref_t, atol=1e-5, rtol=1e-5)


def test_cache_hit_skips_the_model(bundle, isolated_cache, monkeypatch):
    ds = _images(6)
    enc = _count(monkeypatch, bundle.model, "encode_image")
    first = image_features(bundle, ds, batch_size=4, progress=False)
    assert enc.calls == 2
    again = image_features(bundle, ds, batch_size=4, progress=False)
    assert enc.calls == 2 and torch.equal(first, again)
    # cache=False always recomputes
    image_features(bundle, ds, batch_size=4, cache=False, progress=False)
    assert enc.calls == 4
    # text side, list of strings and ImageDataset captions share the content key
    enc_t = _count(monkeypatch, bundle.model, "encode_text")
    a = text_features(bundle, list(ds.captions), progress=False)
    b = text_features(bundle, ds, progress=False)
    assert enc_t.calls == 2 and torch.equal(a, b)
    assert enc_t.calls == 2 and torch.equal(text_features(bundle, ds, progress=False), b)
    assert enc_t.calls == 2


def test_cache_respects_env_var(bundle, tmp_path, monkeypatch):
    root = tmp_path / "elsewhere"
    monkeypatch.setenv("ISOCLIP_CACHE", str(root))
    image_features(bundle, _images(3), progress=False)
    files = sorted(p.suffix for p in (root / "features").iterdir())
    assert files == [".json", ".lock", ".pt"]  # payload, manifest, the fill's lock


def test_corrupt_or_truncated_payload_is_rebuilt(bundle, isolated_cache, monkeypatch):
    ds = _images(4)
    enc = _count(monkeypatch, bundle.model, "encode_image")
    ref = image_features(bundle, ds, progress=False)
    (pt,) = (isolated_cache / "features").glob("*.pt")
    data = pt.read_bytes()
    pt.write_bytes(data[: len(data) // 2])  # truncated
    assert torch.equal(image_features(bundle, ds, progress=False), ref)
    assert enc.calls == 2
    corrupted = bytearray(pt.read_bytes())
    corrupted[-20] ^= 0xFF  # same size, one flipped byte
    pt.write_bytes(bytes(corrupted))
    assert torch.equal(image_features(bundle, ds, progress=False), ref)
    assert enc.calls == 3
    assert torch.equal(image_features(bundle, ds, progress=False), ref)
    assert enc.calls == 3  # the rebuilt entry is intact


def test_key_changes_with_every_input(bundle, monkeypatch):
    ds, other = _images(4), _images(4, seed=1)

    def key(b=bundle, d=ds, modality="image", kind="projected"):
        return stable_hash(feature_key_material(b, d.fingerprint(), d.name, modality, kind))

    base = key()
    assert key() == base
    assert key(d=other) != base  # pixels
    assert key(d=_images(4, name="toy/renamed")) != base  # dataset id
    assert key(kind="preproj") != base
    assert key(modality="text") != base
    other_model = load_model("isoclip-tiny-vit", seed=1)
    assert key(b=other_model) != base  # weights
    monkeypatch.setattr(features, "EXTRACTION_VERSION", features.EXTRACTION_VERSION + 1)
    assert key() != base  # extraction code
    monkeypatch.undo()
    assert key() == base
    double = load_model("isoclip-tiny-vit")
    double.model.double()
    assert key(b=double) != base  # model dtype


def test_bad_arguments(bundle, isolated_cache):
    with pytest.raises(ValueError, match="kind"):
        image_features(bundle, _images(2), kind="normalised", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        image_features(bundle, _images(2), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="captions"):
        text_features(bundle, ImageDataset(np.zeros((1, 32, 32, 3), np.uint8), np.zeros(1, int),
                                           ["a"], "nocap"), progress=False)
    with pytest.raises(TypeError, match="texts"):
        text_features(bundle, "a single string", progress=False)


def test_model_mode_is_restored(bundle, isolated_cache):
    bundle.model.train()
    try:
        image_features(bundle, _images(2), cache=False, progress=False)
        assert bundle.model.training
    finally:
        bundle.model.eval()


def test_preproj_features_project_to_projected(bundle, isolated_cache, monkeypatch):
    """Pre-projection features through the model's projectors give the projected features."""
    projectors = pytest.importorskip("isoclip.method.projectors")
    ds = _images(5)
    calls = _count(monkeypatch, projectors, "encode_image_preproj")
    f = image_features(bundle, ds, kind="preproj", progress=False)
    image_features(bundle, ds, kind="preproj", progress=False)
    assert calls.calls == 1
    P = projectors.get_projectors(bundle.model)
    torch.testing.assert_close(P.project_image(f), image_features(bundle, ds, progress=False),
                               atol=1e-5, rtol=1e-5)
    g = text_features(bundle, _texts(), kind="preproj", progress=False)
    torch.testing.assert_close(P.project_text(g), text_features(bundle, _texts(), progress=False),
                               atol=1e-5, rtol=1e-5)
    assert f.shape[1] == P.d_i and g.shape[1] == P.d_t


@pytest.mark.slow
def test_real_architecture_vit_b_32(isolated_cache):
    """One real open_clip architecture (random init, 224 px): shapes and unit-norm-ability."""
    b = load_model("ViT-B-32")
    ds = ImageDataset(np.random.default_rng(0).integers(0, 256, (2, 40, 50, 3), dtype=np.uint8),
                      np.zeros(2, int), ["x"], "vitb32/toy")
    x = image_features(b, ds, progress=False)
    assert x.shape == (2, 512) and torch.isfinite(F.normalize(x, dim=1)).all()
