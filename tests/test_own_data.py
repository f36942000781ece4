"""Bring your own data: the whole pipeline on a non-synthetic (image, caption, label) collection.

scikit-learn ships the UCI handwritten digits (1,797 scanned 8x8 images) inside the package, so
this runs offline. The collection goes through the same containers, trainer, feature cache,
projector decomposition, band selection and evaluators as the embedded default.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from isoclip.data.base import ImageDataset, TextDataset
from isoclip.evaluate.retrieval import evaluate
from isoclip.method.bands import iso_projectors
from isoclip.method.projectors import get_projectors
from isoclip.models.features import image_features, text_features
from isoclip.selection.rules import select_band
from isoclip.training.trainer import TrainConfig, load_or_train

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEMPLATES = ["a handwritten {}", "the digit {}", "a scan of the number {}", "{} written by hand"]


def digits_collection(first: int, n: int) -> ImageDataset:
    """Images 8x8 grey (0..16) -> 32x32 RGB uint8, with a caption naming the digit."""
    d = load_digits()
    x = d.images[first:first + n]
    y = d.target[first:first + n].astype(np.int64)
    grey = np.clip(x * 16, 0, 255).astype(np.uint8)
    big = grey.repeat(4, axis=1).repeat(4, axis=2)
    rgb = np.repeat(big[..., None], 3, axis=3)
    caps = [TEMPLATES[i % len(TEMPLATES)].format(NAMES[c]) for i, c in enumerate(y)]
    return ImageDataset(images=rgb, labels=y, class_names=NAMES, name=f"digits/{first}+{n}",
                        captions=caps)


def test_own_collection_end_to_end(isolated_cache, one_thread) -> None:
    train, query = digits_collection(0, 1200), digits_collection(1200, 300)
    cfg = TrainConfig(steps=30, batch_size=64, lr=2e-3, log_every=5,
                      checkpoint_fracs=(0.0, 1.0))
    trained = load_or_train(train, cfg, progress=False)
    assert trained.log["loss"].iloc[-1] < trained.log["loss"].iloc[0]
    bundle = trained.bundle

    pre = image_features(bundle, query, "preproj", progress=False)
    proj = image_features(bundle, query, "projected", progress=False)
    P = get_projectors(bundle.model)
    torch.testing.assert_close(pre @ P.W_i.T, proj, rtol=1e-4, atol=1e-5)

    same = evaluate(proj, proj, query.labels, query.labels, same_split=True)
    rand = evaluate(torch.randn_like(proj), torch.randn_like(proj), query.labels, query.labels,
                    same_split=True)
    assert same["mAP"] > rand["mAP"] + 5  # 30 steps already learn something about digits

    band = select_band(P)
    iso = iso_projectors(P, band)
    m = evaluate(iso.project_image(pre), iso.project_image(pre), query.labels, query.labels,
                 same_split=True)
    assert 0 < m["mAP"] <= 100

    caps = TextDataset(texts=list(query.captions), labels=query.labels, name="digits/captions")
    t = text_features(bundle, caps, "projected", progress=False)
    assert t.shape == (len(query), P.W_t.shape[0])
    # a second extraction comes from the cache and is bit-identical
    assert torch.equal(image_features(bundle, query, "projected", progress=False), proj)


def test_own_collection_bad_input_is_named() -> None:
    d = digits_collection(0, 20)
    with pytest.raises(ValueError, match="captions"):
        ImageDataset(images=d.images, labels=d.labels, class_names=NAMES, name="x",
                     captions=list(d.captions)[:-1])
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(images=d.images, labels=d.labels + 10, class_names=NAMES, name="x")
