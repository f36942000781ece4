"""Model loading, the tiny-model trainer and its cache."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import open_clip
import pytest
import torch

from isoclip.baselines.losses import clip_loss
from isoclip.common import cache as icache
from isoclip.data.base import ImageDataset
from isoclip.models.loading import (
    MissingWeightsError,
    load_model,
    register_configs,
    tiny_model_names,
)
from isoclip.training.trainer import (
    TrainConfig,
    image_tensor,
    load_or_train,
    lr_at,
    train_key_material,
)

COLOURS = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220], [230, 220, 20]], np.uint8)
NAMES = ["red", "green", "blue", "yellow"]


def toy_dataset(n: int = 128, seed: int = 0, name: str = "toy") -> ImageDataset:
    """Colour patches with noise; the caption names the colour (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    imgs = COLOURS[labels][:, None, None, :].astype(np.int16) + rng.integers(-20, 20, (n, 32, 32, 3))
    imgs = np.clip(imgs, 0, 255).astype(np.uint8)
    return ImageDataset(imgs, labels, NAMES, name,
                        captions=[f"a {NAMES[l]} picture" for l in labels])


FAST = TrainConfig(steps=6, batch_size=16, log_every=1, checkpoint_fracs=(0.0, 0.5, 1.0))


def test_tiny_configs_registered() -> None:
    names = register_configs()
    assert "isoclip-tiny-vit" in names
    assert set(tiny_model_names()) <= set(open_clip.list_models())
    b = load_model("isoclip-tiny-vit")
    cfg = open_clip.get_model_config("isoclip-tiny-vit")
    assert b.image_size == cfg["vision_cfg"]["image_size"]
    assert b.context_length == cfg["text_cfg"]["context_length"]
    assert b.tokenizer(["a red circle"]).shape == (1, b.context_length)
    out = b.model.encode_image(torch.zeros(2, 3, b.image_size, b.image_size))
    assert out.shape == (2, cfg["embed_dim"])


def test_load_model_seeded_and_fingerprinted() -> None:
    a, b, c = (load_model("isoclip-tiny-vit", seed=s) for s in (0, 0, 1))
    pa, pb, pc = (next(m.model.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(ValueError, match=r"ViT-B-32"):
        load_model("ViT-B-33")


def test_unknown_tag_lists_known_tags() -> None:
    with pytest.raises(ValueError, match=r"openai"):
        load_model("ViT-B-32", pretrained="no-such-tag")


def test_missing_checkpoint_file() -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_model("isoclip-tiny-vit", pretrained="/nonexistent/model.pt")


def test_missing_weights_offline_is_clear() -> None:
    # conftest sets HF_HUB_OFFLINE=1 and blocks sockets: the hub cannot be reached.
    with pytest.raises(MissingWeightsError) as e:
        load_model("RN50", pretrained="openai")
    msg = str(e.value)
    assert "RN50" in msg and "openai" in msg and "pretrained=" in msg


def test_local_checkpoint_round_trip(tmp_path) -> None:
    b = load_model("isoclip-tiny-vit", seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(b.model.state_dict(), path)
    c = load_model("isoclip-tiny-vit", pretrained=str(path), seed=0)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(b.model.encode_image(x), c.model.encode_image(x))
    assert c.fingerprint != load_model("isoclip-tiny-vit", seed=3).fingerprint


def test_fast_image_path_equals_preprocess() -> None:
    b = load_model("isoclip-tiny-vit")
    ds = toy_dataset(4)
    pcfg = b.model.visual.preprocess_cfg
    fast = image_tensor(ds.images, tuple(pcfg["mean"]), tuple(pcfg["std"]))
    slow = torch.stack([b.preprocess(ds.image(i)) for i in range(4)])
    assert torch.allclose(fast, slow, atol=1e-6)


def test_clip_loss_matches_naive() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s = torch.tensor(7.0)
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    L = s * xn @ yn.T
    naive = 0.0
    for i in range(5):
        naive += -torch.log_softmax(L[i], 0)[i] - torch.log_softmax(L[:, i], 0)[i]
    assert torch.allclose(clip_loss(x, y, s), naive / 10, atol=1e-6)


def test_clip_loss_equals_open_clip_clip_loss() -> None:
    """The training loss against open_clip's own ClipLoss (the loss open_clip trains CLIP
    with, open_clip/loss.py), which takes normalised features and a logit scale."""
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(4)
    for n, d, scale in ((8, 16, 100.0), (3, 5, 1.0), (32, 4, 14.3)):
        x = 3.0 * torch.randn(n, d, generator=g, dtype=torch.float64)  # unnormalised
        y = torch.randn(n, d, generator=g, dtype=torch.float64)
        s = torch.tensor(scale, dtype=torch.float64)
        xn, yn = torch.nn.functional.normalize(x, dim=-1), torch.nn.functional.normalize(y, dim=-1)
        ref = ClipLoss()(xn, yn, s)
        torch.testing.assert_close(clip_loss(x, y, s), ref, rtol=1e-12, atol=1e-12)
        # the gradients the trainer follows agree as well
        xg, yg = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        ours = torch.autograd.grad(clip_loss(xg, yg, s), (xg, yg))
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        theirs = torch.autograd.grad(ClipLoss()(torch.nn.functional.normalize(xr, dim=-1),
                                                torch.nn.functional.normalize(yr, dim=-1), s),
                                     (xr, yr))
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(steps=100, lr=1.0, warmup_frac=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] < 0.01


def test_train_config_validation() -> None:
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(temperature=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)


def test_training_lowers_the_loss_and_is_deterministic(isolated_cache) -> None:
    ds = toy_dataset(128)
    cfg = TrainConfig(steps=40, batch_size=32, lr=2e-3, log_every=1, checkpoint_fracs=(0.0, 1.0))
    a = load_or_train(ds, cfg, progress=False, cache=False)
    first, last = a.log["loss"].iloc[:3].mean(), a.log["loss"].iloc[-5:].mean()
    assert last < first - 0.3, (first, last)
    b = load_or_train(ds, cfg, progress=False, cache=False)
    for k, v in a.bundle.model.state_dict().items():
        assert torch.equal(v, b.bundle.model.state_dict()[k]), k
    assert sorted(a.checkpoints) == [0, 40]


def test_fixed_temperature_stays_fixed(isolated_cache) -> None:
    cfg = dataclasses.replace(FAST, temperature=0.5)
    t = load_or_train(toy_dataset(64), cfg, progress=False)
    assert np.allclose(t.log["temperature"], 0.5)


def test_cache_key_changes_with_every_input() -> None:
    ds = toy_dataset(64)
    base = icache.stable_hash(train_key_material(ds, FAST))
    variants = [
        train_key_material(toy_dataset(64, seed=1), FAST),
        train_key_material(toy_dataset(64, name="other"), FAST),
        *(train_key_material(ds, dataclasses.replace(FAST, **{f: v}))
          for f, v in [("steps", 7), ("seed", 1), ("lr", 1e-4), ("batch_size", 8),
                       ("temperature", 0.1), ("weight_decay", 0.0)]),
    ]
    keys = {icache.stable_hash(m) for m in variants}
    assert base not in keys and len(keys) == len(variants)


def test_cached_model_reused_and_corrupt_entry_rebuilt(isolated_cache, monkeypatch) -> None:
    import isoclip.training.trainer as tr

    calls = []
    real = tr.train_clip
    monkeypatch.setattr(tr, "train_clip", lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = toy_dataset(64)
    first = load_or_train(ds, FAST, progress=False)
    second = load_or_train(ds, FAST, progress=False)
    assert len(calls) == 1
    for k, v in first.bundle.model.state_dict().items():
        assert torch.equal(v, second.bundle.model.state_dict()[k])
    assert first.bundle.fingerprint == second.bundle.fingerprint
    # corrupt the payload: truncated file -> detected by the manifest hash, rebuilt
    (payload,) = (isolated_cache / "checkpoints").glob("*.pt")
    payload.write_bytes(payload.read_bytes()[:1000])
    third = load_or_train(ds, FAST, progress=False)
    assert len(calls) == 2
    for k, v in first.bundle.model.state_dict().items():
        assert torch.equal(v, third.bundle.model.state_dict()[k])


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    target = tmp_path / "x.pt"

    class Boom(Exception):
        pass

    def failing_save(obj, f):
        f.write(b"partial")
        raise Boom

    monkeypatch.setattr(icache.torch, "save", failing_save)
    with pytest.raises(Boom):
        icache.atomic_torch_save({"a": 1}, target)
    assert list(tmp_path.iterdir()) == []


def test_training_needs_captions() -> None:
    ds = toy_dataset(64)
    bare = ImageDataset(ds.images, ds.labels, ds.class_names, "bare")
    with pytest.raises(ValueError, match="captions"):
        load_or_train(bare, FAST, progress=False, cache=False)


def test_training_without_labels_and_with_several_captions(isolated_cache) -> None:
    """The CLIP loss never reads labels: a caption-only collection trains; with several
    captions per image one is drawn per step (seeded), and the single-caption path is
    unchanged."""
    ds = toy_dataset(64)
    plain = ImageDataset(ds.images, None, None, "toy-no-labels", captions=list(ds.captions))
    assert plain.labels is None and plain.class_names == [] and not plain.several_captions
    many = ImageDataset(ds.images, None, None, "toy-many",
                        captions=[[c, c.replace("picture", "patch")] for c in ds.captions])
    assert many.several_captions and many.first_captions() == list(ds.captions)
    a = load_or_train(plain, FAST, progress=False, cache=False)
    labelled = load_or_train(ImageDataset(ds.images, ds.labels, ds.class_names, "toy-no-labels",
                                          captions=list(ds.captions)), FAST, progress=False,
                             cache=False)
    for k, v in a.bundle.model.state_dict().items():  # labels change nothing but the key
        assert torch.equal(v, labelled.bundle.model.state_dict()[k]), k
    b1 = load_or_train(many, FAST, progress=False, cache=False)
    b2 = load_or_train(many, FAST, progress=False, cache=False)
    sd = b1.bundle.model.state_dict()
    assert all(torch.equal(v, b2.bundle.model.state_dict()[k]) for k, v in sd.items())
    assert not all(torch.equal(v, a.bundle.model.state_dict()[k]) for k, v in sd.items())
    assert plain.fingerprint() != many.fingerprint()
    with pytest.raises(TypeError, match="non-empty list of str"):
        ImageDataset(ds.images, None, None, "bad", captions=[[]] * 64)
