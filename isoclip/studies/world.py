"""Features and sanity metrics of an evaluation collection, shared by the studies of several
chapters.

A *collection* is anything with the splits of a synthetic world: ``train`` (pairs),
``query`` / ``gallery`` (labelled images with captions), ``text_query`` / ``text_gallery``
(labelled captions, optional) and ``prompts`` (zero-shot prompts, optional): a
:class:`~isoclip.data.world.synthetic.SyntheticWorld`, an :class:`~isoclip.data.emoji.EmojiData`,
or a :class:`~isoclip.data.base.Collection` of your own data or of any registered set
(:func:`isoclip.data.registry.load_collection`).

These functions only compose :mod:`isoclip.models.features` and :mod:`isoclip.evaluate`; the
definitions live there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import Tensor

from isoclip.data.base import Collection, ImageDataset, TextDataset
from isoclip.data.world.synthetic import SyntheticWorld

#: What the helpers take: a synthetic world, the emoji data or any :class:`Collection` (any
#: object with the same split attributes).
EvalData = SyntheticWorld | Collection | Any
from isoclip.evaluate.classification import evaluate_zero_shot
from isoclip.evaluate.gap import gap_report
from isoclip.evaluate.retrieval import evaluate
from isoclip.models.features import FeatureKind, image_features, text_features, zero_shot_weights
from isoclip.models.loading import ModelBundle


@dataclass
class WorldFeatures:
    """Features of every split of a synthetic world (unnormalised).

    Attributes:
        query_images, gallery_images: [Nq, D], [Ng, D] image features.
        query_captions, gallery_captions: [Nq, D], [Ng, D] features of the images' captions.
        text_query, text_gallery: [Tq, D], [Tg, D] held-out-template caption features (None:
            the collection has no text task).
        kind: ``"projected"`` (shared space, dimension d) or ``"preproj"`` (d_i / d_t).
    """

    query_images: Tensor
    gallery_images: Tensor
    query_captions: Tensor
    gallery_captions: Tensor
    text_query: Tensor | None
    text_gallery: Tensor | None
    kind: FeatureKind

    def text_task(self) -> tuple[Tensor, Tensor]:
        """``(text_query, text_gallery)`` [Tq, D], [Tg, D].

        Raises:
            ValueError: the collection has no text→text task (no held-out caption splits).
        """
        if self.text_query is None or self.text_gallery is None:
            raise ValueError("this collection has no text→text task (no held-out caption "
                             "query / gallery splits)")
        return self.text_query, self.text_gallery


def world_features(bundle: ModelBundle, world: EvalData, kind: FeatureKind = "projected",
                   *, progress: bool = False) -> WorldFeatures:
    """Extract (or load from the cache) the features of every evaluation split of ``world``
    (a synthetic world or any collection)."""
    def img(ds: ImageDataset) -> Tensor:
        return image_features(bundle, ds, kind, progress=progress)

    def txt(ds: ImageDataset | TextDataset) -> Tensor:
        return text_features(bundle, ds, kind, progress=progress)

    return WorldFeatures(query_images=img(world.query), gallery_images=img(world.gallery),
                         query_captions=txt(world.query), gallery_captions=txt(world.gallery),
                         text_query=None if world.text_query is None else txt(world.text_query),
                         text_gallery=(None if world.text_gallery is None
                                       else txt(world.text_gallery)),
                         kind=kind)


def calibration_indices(n_train: int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """[n] sorted row indices into ``world.train`` of :func:`calibration_pairs`' pairs."""
    return np.sort(np.random.default_rng(seed).choice(n_train, n, replace=False))


def calibration_pairs(bundle: ModelBundle, world: EvalData, n: int = 1000,
                      seed: int = 0) -> tuple[Tensor, Tensor]:
    """Pre-projection features ([n, d_i], [n, d_t]) of ``n`` seeded training pairs (an image
    and its own caption, the first one if it has several): the calibration data of
    ``select_band(P, "agreement", ...)``.

    Drawn from ``world.train`` only, never from the query or gallery splits; no labels used.

    Raises:
        ValueError: no training pairs, no captions, or ``n`` outside ``[3, len(train)]``.
    """
    train = world.train
    if train is None or train.captions is None:
        raise ValueError("world.train: expected training pairs (images with captions)")
    if not 3 <= n <= len(train):
        raise ValueError(f"n: expected 3 <= n <= {len(train)} (training pairs), got {n}")
    sub = train.subset(calibration_indices(len(train), n, seed),
                       f"{train.name}[calib {n}, seed {seed}]")
    return (image_features(bundle, sub, "preproj", progress=False),
            text_features(bundle, sub, "preproj", progress=False))


def sanity_metrics(bundle: ModelBundle, world: EvalData) -> dict[str, float]:
    """Is it a CLIP? Zero-shot, cross-modal and intra-modal retrieval, gap and cone.

    Retrieval relevance is "same label" everywhere (for the synthetic world captions name the
    class, not the scene).

    Keys (percent for accuracies and mAP; NaN where the collection lacks the data):
        ``zero_shot_acc``, ``chance_acc``: zero-shot top-1 on the query images (prompt
        ensembles ``world.prompts``, classes ``world.zero_shot_labels`` if it has them, else
        the query labels) and the chance level.
        ``i2t_R1``, ``i2t_mAP``: query images -> gallery captions.
        ``t2i_R1``, ``t2i_mAP``: query captions -> gallery images.
        ``i2i_mAP``: query images -> gallery images (intra-modal).
        ``t2t_mAP``: held-out-template captions -> held-out-template captions (intra-modal).
        ``gap``, ``true_pair_cos``, ``cone_image``, ``cone_text``: on the gallery images and
        their captions (:func:`isoclip.evaluate.gap.gap_report`).
    """
    f = world_features(bundle, world)
    ql, gl = world.query.labels, world.gallery.labels
    nan = float("nan")
    zero_shot, chance = nan, nan
    if world.prompts is not None:
        zl = getattr(world, "zero_shot_labels", None)
        weights = zero_shot_weights(bundle, world.prompts, progress=False)
        zero_shot = evaluate_zero_shot(f.query_images, weights, ql if zl is None else zl)["top1"]
        chance = 100.0 / len(world.prompts)
    i2t = evaluate(f.query_images, f.gallery_captions, ql, gl)
    t2i = evaluate(f.query_captions, f.gallery_images, ql, gl)
    i2i = evaluate(f.query_images, f.gallery_images, ql, gl)
    t2t = nan
    if f.text_query is not None and world.text_query is not None and world.text_gallery is not None:
        t2t = evaluate(*f.text_task(), world.text_query.labels, world.text_gallery.labels)["mAP"]
    g = gap_report(f.gallery_images, f.gallery_captions)
    return {
        "zero_shot_acc": zero_shot,
        "chance_acc": chance,
        "i2t_R1": i2t["R@1"],
        "i2t_mAP": i2t["mAP"],
        "t2i_R1": t2i["R@1"],
        "t2i_mAP": t2i["mAP"],
        "i2i_mAP": i2i["mAP"],
        "t2t_mAP": t2t,
        "gap": g["gap"],
        "true_pair_cos": g["true_pair_cos"],
        "cone_image": g["intra_cos_image"],
        "cone_text": g["intra_cos_text"],
    }


_LABELS = {
    "zero_shot_acc": ("zero-shot top-1 accuracy (%)", "classification"),
    "chance_acc": ("chance level (%)", "classification"),
    "i2t_R1": ("image→text R@1 (%)", "cross-modal"),
    "i2t_mAP": ("image→text mAP", "cross-modal"),
    "t2i_mAP": ("text→image mAP", "cross-modal"),
    "i2i_mAP": ("image→image mAP", "intra-modal"),
    "t2t_mAP": ("text→text mAP", "intra-modal"),
    "gap": ("centroid gap ‖mean x − mean y‖", "geometry"),
    "true_pair_cos": ("mean true-pair cosine", "geometry"),
    "cone_image": ("mean image–image cosine (cone)", "geometry"),
    "cone_text": ("mean text–text cosine (cone)", "geometry"),
}


def sanity_table(metrics: dict[str, float]) -> pd.DataFrame:
    """:func:`sanity_metrics` as a readable two-level table."""
    rows = [{"group": _LABELS[k][1], "metric": _LABELS[k][0], "value": round(v, 3)}
            for k, v in metrics.items() if k in _LABELS]
    return pd.DataFrame(rows).set_index(["group", "metric"])
