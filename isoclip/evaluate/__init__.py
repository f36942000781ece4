"""Evaluators. Each returns a flat ``dict[str, float]`` (scores in percent, like the papers).

- :mod:`~isoclip.evaluate.retrieval`: mAP, mAP@R, P@R, P@k, R@k (same-split and
  query→gallery), cross-modal Recall@k, Revisited Oxford/Paris.
- :mod:`~isoclip.evaluate.classification`: zero-shot, NCM, iso-NCM, kNN.
- :mod:`~isoclip.evaluate.gap`: modality gap, true-pair and intra-modal cosine, alignment,
  uniformity, W2-uniformity, Liang's gap shift.
- :mod:`~isoclip.evaluate.clustering`: KMeans V-measure/ARI/NMI/homogeneity and kNN on
  mixed-modality embeddings.
- :mod:`~isoclip.evaluate.stats`: paired comparisons of methods on the same items with
  bootstrap intervals, class-balanced subsets.

Evaluators take features and labels, never a model: they serve any model and any dataset.

May import: :mod:`isoclip.common`, :mod:`isoclip.method` (types only).
"""

from isoclip.evaluate import classification, clustering, gap, retrieval, stats
from isoclip.evaluate.classification import (
    evaluate_iso_ncm,
    evaluate_knn,
    evaluate_ncm,
    evaluate_zero_shot,
    fill_templates,
)
from isoclip.evaluate.clustering import evaluate_clustering, evaluate_mixed_knn
from isoclip.evaluate.gap import gap_report, shift_gap
from isoclip.evaluate.retrieval import (
    evaluate,
    evaluate_cross_modal,
    evaluate_revisited,
    evaluate_revisited_scores,
    evaluate_scores,
)

__all__ = [
    "classification",
    "clustering",
    "evaluate",
    "evaluate_clustering",
    "evaluate_cross_modal",
    "evaluate_iso_ncm",
    "evaluate_knn",
    "evaluate_mixed_knn",
    "evaluate_ncm",
    "evaluate_revisited",
    "evaluate_revisited_scores",
    "evaluate_scores",
    "evaluate_zero_shot",
    "fill_templates",
    "gap",
    "gap_report",
    "retrieval",
    "shift_gap",
    "stats",
]
