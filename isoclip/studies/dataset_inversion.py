"""Modality inversion of one retrieval dataset's queries, at a query budget.

Cross the Gap inverts every query of a dataset: OTI turns each query *image* into a text
feature, OVI each query *caption* into an image feature (Sec. 4; the query split of the
official ``RETRIEVAL_SPLTS``). At about 1.9 s per query on a GPU (IsoCLIP's latency
comparison) that is hours per dataset, so the real path inverts a **class-balanced subset**
of at most ``queries`` queries per dataset (:func:`query_budget`; :data:`DEFAULT_QUERIES`,
``"all"`` for the full protocol) and compares every method on that same subset.

:func:`invert_dataset` picks the subset, extracts the targets (projected features of the
query split, :mod:`isoclip.models.features`) and runs :func:`isoclip.studies.inversion.invert`
(batched, resumable, cached, sharded over torchrun ranks:
:mod:`isoclip.baselines.inversion_runner`). Chapters and the multi-process entry point
(``torchrun ... -m isoclip.distributed invert``) call this same function, so a run done on
several GPUs fills exactly the cache entries the chapters read.

Hyper-parameters default to the official configs (``configs/oti/*.yaml``,
``configs/ovi/*.yaml`` of Cross the Gap): 150 OTI / 1000 OVI steps, R = 1, AdamW lr 2e-2,
weight decay 0.01, seed 42, batch 64; the number P of OVI pseudo-patches per backbone is
:data:`OVI_PSEUDO_PATCHES` (1 where the official configs give none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from isoclip.baselines import inversion
from isoclip.data.base import ImageDataset, TextDataset
from isoclip.data.paper_datasets import RetrievalData
from isoclip.evaluate.stats import balanced_subset, integer_labels
from isoclip.models.features import image_features, text_features
from isoclip.models.loading import ModelBundle
from isoclip.studies.inversion import DEFAULT_BATCH_SIZE, Inverted, invert

__all__ = ["DEFAULT_QUERIES", "OVI_PSEUDO_PATCHES", "DatasetInversion", "Queries",
           "check_queries", "invert_dataset", "ovi_pseudo_patches", "query_budget"]

#: Default query budget per dataset: at most 1000 queries (class-balanced). On one GPU at
#: the paper's ~1.9 s per OTI query that is about half an hour per image set; ``"all"``
#: inverts the whole query split as the paper does.
DEFAULT_QUERIES = 1000

Queries = int | Literal["all"] | None

#: P, OVI pseudo-patches per text, by (open_clip model name, pretrained tag): the official
#: ``configs/ovi/*.yaml`` ``num_pseudo_tokens`` (CLIP ViT-B/32 1, CLIP ViT-L/14 4, OpenCLIP
#: DataComp ViT-B/32 1, ViT-L/14 2). Other backbones (ViT-B/16, which Cross the Gap does not
#: configure) use 1, the value of the official B/32 and SLIP B/16 configs.
OVI_PSEUDO_PATCHES: dict[tuple[str, str], int] = {
    ("ViT-B-32", "openai"): 1,
    ("ViT-L-14", "openai"): 4,
    ("ViT-B-32", "datacomp_xl_s13b_b90k"): 1,
    ("ViT-L-14", "datacomp_xl_s13b_b90k"): 2,
}


def ovi_pseudo_patches(model: str, pretrained: str | None) -> int:
    """P for a backbone: :data:`OVI_PSEUDO_PATCHES`, else 1."""
    return OVI_PSEUDO_PATCHES.get((model, pretrained or ""), inversion.OVI_NUM_PSEUDO_PATCHES)


def check_queries(queries: Queries) -> int | None:
    """The budget as an int, or None for every query (``"all"`` / None).

    Raises:
        ValueError: neither ``"all"``, None nor an int >= 1.
    """
    if queries is None or queries == "all":
        return None
    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise ValueError(f"inversion_queries: expected an int >= 1 or 'all', got {queries!r}")
    return queries


def query_budget(labels: object, queries: Queries, seed: int) -> Tensor:
    """A seeded class-balanced subset of at most ``queries`` of the items labelled ``labels``.

    With C classes, ``floor(queries / C)`` items of every class
    (:func:`isoclip.evaluate.stats.balanced_subset`; a smaller class gives all of its items);
    when there are more classes than ``queries`` (caption sets: one query caption per image),
    one item of each of ``queries`` classes drawn at random. ``"all"``, None or a budget of
    at least N give every index.

    Args:
        labels: [N] integer labels (class, or source image for captions).
        queries: the budget (see :func:`check_queries`).
        seed: seed of the draw (numpy ``default_rng``).

    Returns:
        Sorted LongTensor of indices into ``labels``.
    """
    budget = check_queries(queries)
    y = integer_labels(labels)
    n = int(y.shape[0])
    if n == 0:
        raise ValueError("labels: expected at least one label")
    if budget is None or budget >= n:
        return torch.arange(n)
    n_classes = int(torch.unique(y).numel())
    idx = balanced_subset(y, max(1, budget // n_classes), seed)
    if len(idx) > budget:  # more classes than the budget: one item of `budget` classes
        rng = np.random.default_rng(seed)
        idx = torch.as_tensor(np.sort(rng.choice(idx.numpy(), budget, replace=False)))
    return idx


@dataclass(frozen=True, eq=False)
class DatasetInversion:
    """The inversion of a dataset's query subset.

    Attributes:
        dataset: registry name.
        method: ``"OTI"`` (image sets) or ``"OVI"`` (caption sets).
        subset: [Q] indices into the query split of the inverted queries.
        n_queries: size of the whole query split.
        targets: [Q, d] the projected query features that were inverted.
        inverted: the :class:`~isoclip.studies.inversion.Inverted` run (``features`` [Q, d]
            live in the other modality's embedding space).
    """

    dataset: str
    method: str
    subset: Tensor
    n_queries: int
    targets: Tensor
    inverted: Inverted


def invert_dataset(
    bundle: ModelBundle,
    data: RetrievalData,
    *,
    queries: Queries = DEFAULT_QUERIES,
    subset_seed: int = 0,
    steps: int | None = None,
    num_pseudo: int | None = None,
    seed: int = inversion.SEED,
    batch_size: int = DEFAULT_BATCH_SIZE,
    snapshot_steps: tuple[int, ...] = (),
    feature_batch_size: int = 64,
    num_threads: int | None = 1,
    cache: bool = True,
    progress: bool = False,
) -> DatasetInversion:
    """OTI of an image set's query images, or OVI of a caption set's query captions.

    Args:
        bundle: the model.
        data: a retrieval set (:func:`isoclip.data.registry.load_retrieval_dataset`); its
            query split decides the method (images: OTI, captions: OVI).
        queries: query budget (:func:`query_budget`), ``"all"`` for every query.
        subset_seed: seed of the subset.
        steps: optimisation steps (None: 150 OTI, 1000 OVI).
        num_pseudo: R (OTI, None: 1) or P (OVI, None: :func:`ovi_pseudo_patches`).
        seed, batch_size, snapshot_steps, num_threads, cache, progress: as in
            :func:`isoclip.studies.inversion.invert` (batch k is seeded ``seed + k``).
        feature_batch_size: batch size of the feature extraction.

    Returns:
        :class:`DatasetInversion`. Under torchrun: a collective (every rank calls it), with
        the same result on every rank.
    """
    query = data.query
    if isinstance(query, ImageDataset):
        method: Literal["OTI", "OVI"] = "OTI"
        feats = image_features(bundle, query, "projected", batch_size=feature_batch_size,
                               cache=cache, progress=progress)
        pseudo = inversion.OTI_NUM_PSEUDO_TOKENS if num_pseudo is None else num_pseudo
    elif isinstance(query, TextDataset):
        method = "OVI"
        feats = text_features(bundle, query, "projected", batch_size=max(feature_batch_size, 1),
                              cache=cache, progress=progress)
        pseudo = ovi_pseudo_patches(bundle.name, bundle.pretrained) if num_pseudo is None \
            else num_pseudo
    else:
        raise TypeError(f"data.query: expected an ImageDataset or a TextDataset, got "
                        f"{type(query).__name__}")
    subset = query_budget(query.labels, queries, subset_seed)
    targets = feats[subset]
    run = invert(bundle, targets, method, steps=steps,
                 snapshot_steps=snapshot_steps, num_pseudo=pseudo, seed=seed,
                 batch_size=batch_size, num_threads=num_threads, cache=cache,
                 progress=progress)
    return DatasetInversion(dataset=data.name, method=method, subset=subset,
                            n_queries=len(query), targets=targets, inverted=run)
