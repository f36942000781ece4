"""Classification with intra-modal and inter-modal classifiers: zero-shot, NCM and
iso-NCM on the same images, with paired intervals (IsoCLIP's NCM table; Cross the
Gap's zero-shot through OTI).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from isoclip.data.world.synthetic import SyntheticWorld
from isoclip.evaluate.classification import cosine_logits
from isoclip.evaluate.stats import compare_accuracy, correct_top1
from isoclip.models.features import image_features, zero_shot_weights
from isoclip.models.loading import ModelBundle

__all__ = ["classification_study", "ncm_correct"]


def ncm_correct(train: Tensor, train_labels: Any, test: Tensor, test_labels: Any, *,
                project: Any = None, n_classes: int | None = None) -> Tensor:
    """Per-test-item correctness (percent) of the nearest class mean: prototypes are means of
    the **unnormalised** ``train`` features; ``project`` (e.g. ``iso.project_image`` for
    iso-NCM on pre-projection features) maps prototypes and test features before the cosine.
    Its mean equals :func:`isoclip.evaluate.classification.evaluate_ncm` (no ``project``) or
    ``evaluate_iso_ncm`` (with the projectors' ``project_image``)."""
    from isoclip.evaluate.classification import ncm_logits

    return correct_top1(ncm_logits(train, train_labels, test, n_classes, project), test_labels)


def classification_study(bundle: ModelBundle, world: SyntheticWorld, bands: dict[str, Any], *,
                         train_per_class: int | None = None, subset_seed: int = 0,
                         n_boot: int = 2000) -> dict[str, Any]:
    """Zero-shot, NCM and iso-NCM (one per band) on the query images of ``world``.

    Args:
        bundle, world: the model and the synthetic world.
        bands: label -> :class:`isoclip.method.bands.Band` of an iso-NCM row each.
        train_per_class: training images per class for the prototypes
            (:func:`isoclip.evaluate.stats.balanced_subset`; None: the whole train split).
        subset_seed: seed of that subset and of the bootstrap.
        n_boot: bootstrap resamples.

    Returns:
        ``{"table"``: :func:`compare_accuracy` against ``"NCM"`` with rows ``zero-shot``,
        ``NCM`` and ``iso-NCM (<label>)``; ``"correct"``: name -> [N] correctness;
        ``"n_train"``: prototypes' training images; ``"weights"``: zero-shot class weights}.
    """
    from isoclip.evaluate.stats import balanced_subset
    from isoclip.method.bands import iso_projectors
    from isoclip.method.projectors import get_projectors

    train_labels = np.array(world.train.labels)
    idx = balanced_subset(train_labels, train_per_class, subset_seed).numpy()
    tr_proj = image_features(bundle, world.train, "projected", progress=False)[idx]
    tr_pre = image_features(bundle, world.train, "preproj", progress=False)[idx]
    te_proj = image_features(bundle, world.query, "projected", progress=False)
    te_pre = image_features(bundle, world.query, "preproj", progress=False)
    ytr, yte = train_labels[idx], np.array(world.query.labels)
    c = len(world.class_names)
    weights = zero_shot_weights(bundle, world.prompts, progress=False)
    P = get_projectors(bundle.model)
    correct = {"zero-shot": correct_top1(cosine_logits(te_proj, weights), yte),
               "NCM": ncm_correct(tr_proj, ytr, te_proj, yte, n_classes=c)}
    for label, band in bands.items():
        iso = iso_projectors(P, band).to(te_pre.dtype)
        correct[f"iso-NCM ({label})"] = ncm_correct(tr_pre, ytr, te_pre, yte,
                                                    project=iso.project_image, n_classes=c)
    table = compare_accuracy(correct, baseline="NCM", n_boot=n_boot, seed=subset_seed)
    return {"table": table, "correct": correct, "n_train": len(idx), "weights": weights}
