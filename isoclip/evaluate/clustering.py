"""Group-wise semantics of mixed-modality embeddings (Closing the Modality Gap, Grassucci et al.,
ICLR 2026, official ``ispamm/ModGap``; book notation page, eq-v-measure).

ModGap ``compute_clustering_metrics`` (metrics.py:73-246): stack the L2-normalised
``[text; image]`` embeddings (2N rows, labels duplicated), run KMeans, and score the clusters
against the labels with V-measure, ARI, NMI and homogeneity; then a kNN (k = 5) classifier on
a random 80/20 split of the same 2N embeddings.

Differences from the released code, all deliberate and switchable:

- ``n_clusters`` defaults to the number of classes; ModGap hard-codes 10 even for COCO's
  single-object subset (pass ``n_clusters=10`` for that behaviour).
- The 80/20 split is seeded (``seed``); ModGap's ``random_split`` uses the global RNG.
- kNN votes by cosine (:func:`isoclip.evaluate.classification.knn_predict`), which on
  unit vectors ranks neighbours exactly like ModGap's Euclidean ``KNeighborsClassifier``.

KMeans is scikit-learn's with ``random_state=seed`` and ``n_init="auto"`` (the scikit-learn
1.8 default that ModGap pins). Scores are in percent, as on ModGap's project page.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.metrics import (
    adjusted_rand_score,
    homogeneity_score,
    normalized_mutual_info_score,
    v_measure_score,
)
from torch import Tensor

from isoclip.evaluate.classification import knn_predict
from isoclip.evaluate.retrieval import as_features, as_labels

__all__ = ["evaluate_clustering", "evaluate_mixed_knn", "mixed_embeddings"]


def mixed_embeddings(image_features: Any, text_features: Any, labels: Any
                     ) -> tuple[Tensor, Tensor]:
    """``([text; image]`` L2-normalised, float32 [2N, d]; labels duplicated, int64 [2N]).

    image_features, text_features: paired [N, d]; labels: [N].
    """
    img = as_features("image_features", image_features)
    txt = as_features("text_features", text_features)
    if img.shape != txt.shape:
        raise ValueError(f"image_features and text_features: expected paired rows of the same "
                         f"shape, got {tuple(img.shape)} and {tuple(txt.shape)}")
    y = as_labels("labels", labels, img.shape[0], "image_features")
    z = torch.cat([F.normalize(txt.float(), dim=1), F.normalize(img.float(), dim=1)])
    return z, torch.cat([y, y])


def evaluate_clustering(image_features: Any, text_features: Any, labels: Any,
                        n_clusters: int | None = None, seed: int = 0,
                        n_init: int | str = "auto") -> dict[str, float]:
    """KMeans on ``[text; image]`` scored against the labels.

    Args:
        image_features, text_features: paired [N, d]. labels: [N] (any integers).
        n_clusters: default the number of distinct labels; ModGap uses 10.
        seed: KMeans ``random_state``.
        n_init: KMeans restarts.

    Returns:
        ``v_measure``, ``ari``, ``nmi``, ``homogeneity`` in percent, and ``n_clusters``.
    """
    z, y = mixed_embeddings(image_features, text_features, labels)
    k = len(torch.unique(y)) if n_clusters is None else n_clusters
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= z.shape[0]:
        raise ValueError(f"n_clusters: expected an int in [1, {z.shape[0]}], got {k!r}")
    pred = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit_predict(
        z.numpy().astype(np.float64))
    truth = y.numpy()
    return {
        "v_measure": 100.0 * float(v_measure_score(truth, pred)),
        "ari": 100.0 * float(adjusted_rand_score(truth, pred)),
        "nmi": 100.0 * float(normalized_mutual_info_score(truth, pred)),
        "homogeneity": 100.0 * float(homogeneity_score(truth, pred)),
        "n_clusters": float(k),
    }


def evaluate_mixed_knn(image_features: Any, text_features: Any, labels: Any, k: int = 5,
                       train_fraction: float = 0.8, seed: int = 0) -> dict[str, float]:
    """kNN accuracy on a seeded random split of the 2N mixed embeddings (ModGap l.177-233).

    Args:
        image_features, text_features: paired [N, d]. labels: [N] (any integers).
        k: neighbours. train_fraction: share of the 2N rows used as the kNN memory
            (``int(train_fraction * 2N)`` rows, as ModGap). seed: permutation seed.

    Returns:
        ``{"knn_acc": ...}`` in percent, plus ``n_train`` and ``n_test``.
    """
    z, y = mixed_embeddings(image_features, text_features, labels)
    n = z.shape[0]
    n_train = int(train_fraction * n)
    if not 1 <= n_train < n:
        raise ValueError(f"train_fraction: {train_fraction} leaves an empty train or test set "
                         f"of {n} rows")
    _, codes = torch.unique(y, return_inverse=True)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:n_train], perm[n_train:]
    pred = knn_predict(z[tr], codes[tr], z[te], k=k)
    return {"knn_acc": 100.0 * float((pred == codes[te]).double().mean()),
            "n_train": float(n_train), "n_test": float(n - n_train)}
